"""What the store's rows and a claim's queues look like to its callers, and the few helpers
that read rows off a cursor. No apsw at run time: ``protocols`` imports this, not ``tx``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import apsw

__all__ = ["QueueLimits", "Row"]

Row = dict[str, Any]


def _scalar(target: apsw.Connection | apsw.Cursor, sql: str, params: Sequence[Any] = ()) -> Any:
    row = target.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _dicts(cursor: apsw.Cursor) -> Iterator[Row]:
    names: list[str] | None = None
    for values in cursor:
        if names is None:
            names = [d[0] for d in cursor.get_description()]
        yield dict(zip(names, values, strict=True))


def _id_list(ids: Iterable[int]) -> str:
    """Job ids as a JSON array, for ``json_each``."""
    return "[" + ",".join(map(str, ids)) + "]"


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A queue as a claim sees it: its name and the limits its config sets."""

    name: str
    concurrency: int | None = None
    rate: tuple[int, float] | None = None  # (N, period in seconds): N starts per period
