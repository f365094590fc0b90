"""The jobs page's filter: read from a query string (and a form), written back into links.

A text search may hold argument values (an e-mail address, an order number), which must not
reach a URL, a browser's history or a proxy's log: the form posts it, the server keeps it
under a random id for an hour (``Searches``) and the links carry that id instead.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from litejobs.job import State, iso
from litejobs.moments import parse_moment
from litejobs.store.views import JobFilter
from litejobs.validate import INT64_MAX

__all__ = ["FIELDS", "FilterForm", "Searches", "parse_form"]

#: The fields of the filter form, as they appear in the query string (``text`` never does).
FIELDS = ("state", "task", "queue", "tag", "workflow", "since", "until")
#: How long a text search stays known to the server, and how many it keeps at most.
SEARCH_TTL = 3600.0
MAX_SEARCHES = 1000
#: Longest text a search takes (a filter, not a document).
MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class FilterForm:
    """The filter as the form shows it (strings as typed) and as the store reads it."""

    values: Mapping[str, str | list[str]]
    filter: JobFilter
    search: str | None = None  # the id of the text search, when there is one

    def pairs(self) -> list[tuple[str, str]]:
        """The filter's fields as (name, value), the text by its search id."""
        out: list[tuple[str, str]] = []
        for name in FIELDS:
            value = self.values.get(name)
            out.extend((name, v) for v in (value if isinstance(value, list) else [value or ""])
                       if v)
        if self.search:
            out.append(("search", self.search))
        return out

    def query(self, **extra: str | int | None) -> str:
        """The query string of this filter plus ``extra`` (those not None)."""
        return urlencode(self.pairs() + [(k, str(v)) for k, v in extra.items()
                                          if v is not None])

    def hidden(self, pinned: bool = False) -> list[tuple[str, str]]:
        """The filter as a form's hidden fields; ``pinned``: the times as the instants they
        stood for now (a confirmed action acts on what was counted, not on "2h" later)."""
        if not pinned:
            return self.pairs()
        f = self.filter
        return [(k, (iso(f.since) if k == "since" else iso(f.until) if k == "until" else v)
                 or "") for k, v in self.pairs()]

    @property
    def empty(self) -> bool:
        return self.filter == JobFilter()


class Searches:
    """Text searches by random id, kept in this process for ``SEARCH_TTL`` seconds."""

    def __init__(self) -> None:
        self._texts: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def keep(self, text: str) -> str:
        now = time.monotonic()
        with self._lock:
            for key, (expires, _) in list(self._texts.items()):
                if expires < now:
                    del self._texts[key]
            while len(self._texts) >= MAX_SEARCHES:
                del self._texts[next(iter(self._texts))]
            key = secrets.token_urlsafe(9)
            self._texts[key] = (now + SEARCH_TTL, text)
        return key

    def text(self, key: str) -> str | None:
        with self._lock:
            found = self._texts.get(key)
        return None if found is None or found[0] < time.monotonic() else found[1]


def parse_form(params: Mapping[str, Sequence[str]], searches: Searches,
               text: str | None = None, now: float | None = None) -> FilterForm:
    """The filter of a query string or form (``params``: each name's values); ``text``: a
    text just posted (else the one behind ``search``). Raises ValueError with one line."""
    now = time.time() if now is None else now

    def one(name: str) -> str:
        values = [v.strip() for v in params.get(name, ()) if v.strip()]
        return values[-1] if values else ""

    states = [s for s in dict.fromkeys(v.strip() for v in params.get("state", ())) if s]
    known = [s.value for s in State]
    for s in states:
        if s not in known:
            raise ValueError(f"unknown state {s!r}; the states are {', '.join(known)}")
    values: dict[str, str | list[str]] = {"state": states}
    for name in FIELDS[1:]:
        values[name] = one(name)
    workflow = None
    if values["workflow"]:
        raw = str(values["workflow"]).lstrip("#")
        if not raw.isdigit() or not 0 < int(raw) <= INT64_MAX:
            raise ValueError(f"workflow {values['workflow']!r} is not a run id (a number; "
                             "see the job page of one of its steps)")
        workflow = int(raw)
    since = parse_moment(str(values["since"]), "since", now) if values["since"] else None
    until = parse_moment(str(values["until"]), "until", now) if values["until"] else None
    search = one("search") or None
    if text is None and search is not None:
        text = searches.text(search)
        if text is None:
            raise ValueError("this text search has expired (searches are kept an hour, by "
                             "the server that made them): enter the text again")
    text = (text or "").strip() or None
    if text is not None and len(text) > MAX_TEXT:
        raise ValueError(f"the text to search is {len(text)} characters long; give at most "
                         f"{MAX_TEXT}")
    if text is None:
        search = None
    elif search is None:
        search = searches.keep(text)
    f = JobFilter(tuple(states), str(values["task"]) or None, str(values["queue"]) or None,
                  str(values["tag"]) or None, workflow, text, since, until)
    return FilterForm(values, f, search)
