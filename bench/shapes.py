"""DAG shapes shared by the benchmarks: each is a list of (node, dependencies), in order."""

from __future__ import annotations

import random

Shape = list[tuple[int, list[int]]]


def fan_out(width: int) -> Shape:
    """One source, `width` parallel tasks that read it, one sink that reads them all."""
    nodes: Shape = [(0, [])]
    nodes += [(i, [0]) for i in range(1, width + 1)]
    nodes.append((width + 1, list(range(1, width + 1))))
    return nodes


def chain(length: int) -> Shape:
    """Each task reads the one before it."""
    return [(i, [i - 1] if i else []) for i in range(length)]


def layered(size: int, *, width: int = 100, seed: int = 7) -> Shape:
    """A seeded random DAG in layers of `width`; each task reads 1-3 tasks of earlier layers.

    Edges mostly go to the layer just before (so layers matter) and sometimes
    further back (so a level-by-level schedule waits on stragglers).
    """
    rng = random.Random(seed)
    nodes: Shape = []
    for i in range(size):
        layer = i // width
        if layer == 0:
            nodes.append((i, []))
            continue
        deps = set()
        for _ in range(rng.randint(1, 3)):
            back = 1 if rng.random() < 0.8 else rng.randint(1, layer)
            start = (layer - back) * width
            deps.add(rng.randrange(start, start + width))
        nodes.append((i, sorted(deps)))
    return nodes


def random_dag(size: int, *, seed: int = 7, window: int = 40) -> Shape:
    """A seeded random DAG with varied fan-in and fan-out, and no layers.

    Each task reads 1-5 earlier tasks: mostly among the last `window` (so chains
    run deep), sometimes one that is already read a lot (so a few hubs have
    many dependents), and about one task in twenty is a new source.
    """
    rng = random.Random(seed)
    nodes: Shape = []
    read: list[int] = []  # every dependency edge's source, so popular tasks get picked more
    for i in range(size):
        if i == 0 or rng.random() < 0.05:
            nodes.append((i, []))
            continue
        deps = set()
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 5))):
            if read and rng.random() < 0.2:
                deps.add(rng.choice(read))
            else:
                deps.add(rng.randrange(max(0, i - window), i))
        read += deps
        nodes.append((i, sorted(deps)))
    return nodes


def layers_of(shape: Shape) -> list[list[tuple[int, list[int]]]]:
    """Group nodes by depth (longest distance from a source), for level-by-level engines."""
    depth: dict[int, int] = {}
    for node, deps in shape:
        depth[node] = 1 + max((depth[d] for d in deps), default=-1)
    levels: list[list[tuple[int, list[int]]]] = [[] for _ in range(max(depth.values()) + 1)]
    for node, deps in shape:
        levels[depth[node]].append((node, deps))
    return levels


SHAPES = {
    "fan-out 1,000": lambda: fan_out(1_000),
    "fan-out 10,000": lambda: fan_out(10_000),
    "chain 1,000": lambda: chain(1_000),
    "layered DAG 10,000": lambda: layered(10_000),
}
