"""Directed-graph helpers for the lock-order and wait-for graphs: components and short cycles.

Iterative (no recursion limit on large graphs). Cycles are found per strongly connected
component, shortest first (a two-lock inversion is reported as A→B→A, not buried in a longer
loop), and de-duplicated by rotation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

N = TypeVar("N", bound=Hashable)


def strongly_connected(graph: Mapping[N, Iterable[N]]) -> list[list[N]]:
    """Tarjan's strongly connected components (each a list of nodes), iteratively."""
    index: dict[N, int] = {}
    low: dict[N, int] = {}
    on_stack: set[N] = set()
    stack: list[N] = []
    out: list[list[N]] = []
    counter = 0
    nodes = set(graph)
    for targets in graph.values():
        nodes.update(targets)
    adj = {n: list(graph.get(n, ())) for n in nodes}
    for root in sorted(nodes, key=repr):
        if root in index:
            continue
        work: list[tuple[N, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            succ = adj[node]
            while i < len(succ):
                w = succ[i]
                i += 1
                if w not in index:
                    work.append((node, i))
                    work.append((w, 0))
                    recurse = True
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            if recurse:
                continue
            if low[node] == index[node]:
                comp: list[N] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def _shortest_path(adj: Mapping[N, Iterable[N]], src: N, dst: N, allowed: set[N]) -> list[N]:
    prev: dict[N, N] = {}
    seen = {src}
    q: deque[N] = deque([src])
    while q:
        n = q.popleft()
        if n == dst:
            path = [n]
            while path[-1] != src:
                path.append(prev[path[-1]])
            return path[::-1]
        for m in adj.get(n, ()):
            if m in allowed and m not in seen:
                seen.add(m)
                prev[m] = n
                q.append(m)
    return []


def cycles(graph: Mapping[N, Iterable[N]], limit: int = 50) -> list[list[N]]:
    """Short cycles of ``graph`` (self-loops excluded), each as a node list without repeat.

    For every edge u→v inside a component, the shortest path back v→…→u closes a cycle;
    rotations of the same cycle are reported once. At most ``limit`` cycles.
    """
    out: list[list[N]] = []
    seen: set[tuple[N, ...]] = set()
    for comp in strongly_connected(graph):
        if len(comp) < 2:
            continue
        members = set(comp)
        for u in sorted(comp, key=repr):
            for v in sorted(graph.get(u, ()), key=repr):
                if v == u or v not in members:
                    continue
                back = _shortest_path(graph, v, u, members)
                if not back:
                    continue
                cyc = [u, *back[:-1]]
                k = cyc.index(min(cyc, key=repr))
                canon = tuple(cyc[k:] + cyc[:k])
                if canon in seen:
                    continue
                seen.add(canon)
                out.append(list(canon))
                if len(out) >= limit:
                    return out
    out.sort(key=lambda c: (len(c), repr(c)))
    return out
