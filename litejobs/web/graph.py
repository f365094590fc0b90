"""A workflow run drawn on the server: steps in columns by depth (the longest path of edges
from a step with no upstream step), arrows from each upstream step to its downstream ones,
each step a link coloured by its state. Plain SVG: no JavaScript, no inline style (the
Content-Security-Policy allows none; colours come from classes in jobs.css)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from litejobs.store.schema import TOKEN_TASK

__all__ = ["Graph", "layout"]

NODE_W = 170
NODE_H = 34
GAP_X = 60
GAP_Y = 14
PAD = 10


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    label: str
    state: str
    x: int
    y: int
    current: bool


@dataclass(frozen=True, slots=True)
class Edge:
    path: str  # an SVG path from the upstream step's right side to the step's left side
    dashed: bool  # a continuation (litejobs.then), not an edge of the graph


@dataclass(frozen=True, slots=True)
class Graph:
    width: int
    height: int
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)


def _label(row: Mapping[str, Any]) -> str:
    if row["task"] == TOKEN_TASK:
        return f"token #{row['id']}"
    name = str(row["task"]).rsplit(".", 1)[-1]
    text = f"#{row['id']} {name}"
    return text if len(text) <= 22 else text[:21] + "…"


def layout(steps: Sequence[Mapping[str, Any]], edges: Sequence[tuple[int, int]],
           current: int | None = None) -> Graph:
    """Place ``steps`` (rows with id, task, state, continuation) joined by ``edges``
    ((upstream, step)); ``current`` is drawn highlighted."""
    ids = [int(s["id"]) for s in steps]
    known = set(ids)
    ups: dict[int, list[int]] = {i: [] for i in ids}
    links = [(u, d, False) for u, d in edges if u in known and d in known]
    for s in steps:
        nxt = s.get("continuation")
        if nxt is not None and int(nxt) in known:
            links.append((int(s["id"]), int(nxt), True))
    for u, d, _ in links:
        ups[d].append(u)
    depth: dict[int, int] = {}
    for i in ids:  # iterative: a deep chain must not hit the recursion limit
        stack = [i]
        while stack:
            top = stack[-1]
            if top in depth:
                stack.pop()
                continue
            todo = [u for u in ups[top] if u not in depth and u not in stack]
            if todo:
                stack.extend(todo)
                continue
            depth[top] = 1 + max((depth.get(u, 0) for u in ups[top]), default=-1)
            stack.pop()
    columns: dict[int, list[int]] = {}
    for i in ids:
        columns.setdefault(depth[i], []).append(i)
    # Each step at the mean row of its upstream steps, pushed down past the step above it in
    # its column: a step after a fan-in sits level with it, and an edge that skips a column
    # runs where that column holds nothing, not under another step's box.
    row_of: dict[int, float] = {}
    for d in sorted(columns):
        wanted = {i: sum(row_of[u] for u in ups[i]) / len(ups[i]) if ups[i] else 0.0
                  for i in columns[d]}
        col = sorted(columns[d], key=lambda i: (wanted[i], i))
        columns[d] = col
        last = -1.0
        for i in col:
            last = row_of[i] = max(wanted[i], last + 1)
    pos = {i: (PAD + d * (NODE_W + GAP_X), PAD + round(row_of[i] * (NODE_H + GAP_Y)))
           for d, col in columns.items() for i in col}
    by_id = {int(s["id"]): s for s in steps}
    nodes = [Node(i, _label(by_id[i]), str(by_id[i]["state"]), *pos[i], i == current)
             for i in ids]
    out_edges = []
    for u, d, dashed in links:
        x1, y1 = pos[u][0] + NODE_W, pos[u][1] + NODE_H // 2
        x2, y2 = pos[d][0] - 4, pos[d][1] + NODE_H // 2
        mid = (x1 + x2) // 2
        out_edges.append(Edge(f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}", dashed))
    width = PAD * 2 + (max(columns, default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max((y for _, y in pos.values()), default=0) + NODE_H
    return Graph(width, height, nodes, out_edges)
