"""The app of ``tests/test_tracing.py``. On import, with opentelemetry's SDK installed and
``LITEJOBS_TEST_DB`` set, it sets a tracer provider that appends each ended span as a JSON
line to ``<LITEJOBS_TEST_DB>.spans`` (every process that imports it: the producer, the
supervisor's workers), unless ``LITEJOBS_TEST_NO_TRACING`` is set. Task names are
``trace.*``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import litejobs
from tests.apps import append_record, lazy_app


def _setup(path: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class JsonLines(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            for span in spans:
                ctx = span.get_span_context()
                assert ctx is not None
                append_record(path, {
                    "name": span.name, "trace_id": f"{ctx.trace_id:032x}",
                    "span_id": f"{ctx.span_id:016x}",
                    "parent": None if span.parent is None else f"{span.parent.span_id:016x}",
                    "kind": span.kind.name, "attributes": dict(span.attributes or {}),
                    "status": span.status.status_code.name,
                    "events": [e.name for e in span.events], "pid": os.getpid()})
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines()))
    trace.set_tracer_provider(provider)


if os.environ.get("LITEJOBS_TEST_DB") and not os.environ.get("LITEJOBS_TEST_NO_TRACING"):
    _setup(os.environ["LITEJOBS_TEST_DB"] + ".spans")


def ok(x: Any) -> Any:
    return x


def fails() -> None:
    raise ValueError("traced boom")


def make_app(path: str | os.PathLike[str]) -> litejobs.App:
    app = litejobs.App(path)
    app.task(name="trace.ok")(ok)
    app.task(name="trace.fails", retries=0)(fails)
    return app


__getattr__ = lazy_app(__name__, make_app)
