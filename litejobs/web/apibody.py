"""Reading the HTTP API's request bodies: JSON objects under a byte cap, typed fields, and
the errors they give (``ApiError``: a status and a message that says what to do)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from litejobs.errors import StorageError
from litejobs.serialization import PayloadTooLarge

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["ENVELOPE", "ApiError", "guarded", "key_of", "only_fields", "read_json", "run_at_of",
           "too_large", "typed"]

#: Bytes a body may hold beyond max_payload: the fields around the arguments.
ENVELOPE = 16 * 1024


class ApiError(Exception):
    """An answer other than success: ``status`` and a message that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def too_large(cap: int) -> str:
    return (f"request body over {cap} bytes (the app's max_payload plus {ENVELOPE} for the "
            "other fields): store large data elsewhere (a file, a table) and pass its name")


async def read_json(request: Request, cap: int) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``), counting bytes as they come: a
    chunked body gets no Content-Length to check beforehand."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap:
            raise ApiError(413, too_large(cap))
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc) or "too deep"
        raise ApiError(400, f"the body is not valid JSON ({detail}); send a JSON object with "
                            "Content-Type: application/json") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"the body must be a JSON object, not {type(value).__name__}; "
                            'e.g. {"task": "send_email", "args": [1]}')
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def only_fields(body: Mapping[str, Any], known: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(map(repr, unknown))} in {what}; "
                            f"known: {', '.join(known)}")


def typed(body: Mapping[str, Any], name: str, kinds: tuple[type, ...], hint: str) -> Any:
    """``body[name]`` (None when absent or null) if it is of ``kinds``, else 400."""
    value = body.get(name)
    if value is None:
        return None
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise ApiError(400, f"{name!r} must be {hint}, not {kind_of(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ApiError(400, f"{name!r} must be a finite number")
    return value


def kind_of(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def run_at_of(value: Any) -> datetime | float | None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            return when
    raise ApiError(400, "'run_at' must be Unix seconds or an ISO 8601 time with its offset, "
                        "e.g. 2026-12-05T03:00:00Z")


def key_of(request: Request, body: Mapping[str, Any]) -> str | None:
    """The job's key: the ``Idempotency-Key`` header, or the body's ``key``."""
    header = request.headers.get("idempotency-key")
    key = typed(body, "key", (str,), "a string")
    if header is not None and key is not None and header != key:
        raise ApiError(400, "the Idempotency-Key header and the body's 'key' differ; send one "
                            "of them (both are the job's key)")
    return header if header is not None else key


def guarded(call: Callable[[], Any]) -> Any:
    """``call()``, its refusals as answers: too large 413, bad values 400, storage 503."""
    try:
        return call()
    except PayloadTooLarge as exc:
        raise ApiError(413, str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise ApiError(400, str(exc)) from None
    except StorageError as exc:
        raise ApiError(503, f"the database cannot take writes now ({exc}); retry later",
                       ) from None
