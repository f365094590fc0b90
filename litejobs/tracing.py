"""OpenTelemetry (``pip install 'litejobs[otel]'``): an "enqueue TASK" span where a job is
enqueued, a "run TASK" span where a worker runs it, the second a child of the first.

The link is the W3C ``traceparent`` of the enqueue span, stored with the job (``jobs.trace``)
and handed to the worker with it. Nothing here is imported from opentelemetry until it is in
use:

- a producer decides once, at its first enqueue: tracing is on when the app has imported
  ``opentelemetry.trace`` and set a tracer provider (anything but the default proxy or no-op
  one). Set the provider before the first enqueue; until then, and for good if it never is,
  an enqueue costs one comparison more (``active``) and stores no trace;
- a worker imports opentelemetry only for a job that has a trace, and only if installed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litejobs.newjob import NewJob
    from litejobs.protocol import JobMessage

__all__ = ["RunSpan", "active", "run_span", "stamp"]

#: Whether enqueues in this process make spans: None until the first enqueue decides.
active: bool | None = None
_tracer: Any = None  # the producer's tracer, once active
_propagator: Any = None
#: Whether a worker can make run spans: None until its first traced job.
_consumer: bool | None = None


def _decide() -> bool:
    global _tracer, _propagator
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return False  # the app never imported it: not in use, and not imported here either
    from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if isinstance(api.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider):
        return False
    _tracer = api.get_tracer("litejobs")
    _propagator = TraceContextTextMapPropagator()
    return True


def stamp(job: NewJob) -> None:
    """Record an "enqueue TASK" span (a child of the current span, if any) and give ``job``
    its traceparent, when tracing is on (see the module's docstring)."""
    global active
    if active is None:
        active = _decide()
    if not active:
        return
    from opentelemetry.trace import SpanKind

    carrier: dict[str, str] = {}
    with _tracer.start_as_current_span(
            f"enqueue {job.task}", kind=SpanKind.PRODUCER,
            attributes={"litejobs.task": job.task, "litejobs.queue": job.queue}):
        _propagator.inject(carrier)
    job.trace = carrier.get("traceparent")


class RunSpan:
    """The "run TASK" span of a job's attempt, current while the task runs."""

    def __init__(self, span: Any, token: Any) -> None:
        self.span = span
        self.token = token

    def fail(self, exc: BaseException) -> None:
        """The attempt failed with ``exc``: recorded on the span, which gets status ERROR."""
        from opentelemetry.trace import Status, StatusCode

        self.span.record_exception(exc)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"))

    def end(self) -> None:
        from opentelemetry import context

        context.detach(self.token)
        self.span.end()


def run_span(msg: JobMessage) -> RunSpan | None:
    """Start the "run TASK" span of ``msg`` (which has a trace) as a child of the span that
    enqueued it; None when opentelemetry is not installed here."""
    global _consumer
    if _consumer is False:
        return None
    try:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import (
            TraceContextTextMapPropagator,
        )
    except ImportError:
        _consumer = False
        return None
    _consumer = True
    parent = TraceContextTextMapPropagator().extract({"traceparent": msg.trace or ""})
    span = trace.get_tracer("litejobs").start_span(
        f"run {msg.task}", context=parent, kind=SpanKind.CONSUMER,
        attributes={"litejobs.job_id": msg.id, "litejobs.task": msg.task,
                    "litejobs.queue": msg.queue, "litejobs.attempt": msg.attempt})
    return RunSpan(span, context.attach(trace.set_span_in_context(span)))
