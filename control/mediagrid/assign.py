"""Strategies that pick a storage group for a new (app, user) pair.

A strategy takes the writable groups (at least one ACTIVE node, free space above the
reserve) and the user, and returns a group name. Configure with ``ASSIGN_STRATEGY``:
a name registered here or a ``module:function`` path for your own.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence

from .nodes import Group

Strategy = Callable[[Sequence[Group], str, str], str]


# Groups whose free space is within this fraction of the best count as equally free.
FREE_TOLERANCE = 0.05


def most_free(groups: Sequence[Group], app: str, user: str) -> str:
    """The group with the most usable free space.

    Groups within 5% of the best are taken as equal and the user is spread over them by
    hash: a fresh cluster (every group as free as the others) fills evenly instead of
    sending every new user to the same group until it is 5% fuller.
    """
    best = max(g.free for g in groups)
    near = [g for g in groups if g.free >= best * (1 - FREE_TOLERANCE)]
    return hashed(near, app, user)


def hashed(groups: Sequence[Group], app: str, user: str) -> str:
    """A stable spread by hashing the user over the writable groups."""
    names = sorted(g.name for g in groups)
    digest = hashlib.sha256(f"{app}\0{user}".encode()).digest()
    return names[int.from_bytes(digest[:8], "big") % len(names)]


STRATEGIES: dict[str, Strategy] = {"most_free": most_free, "hashed": hashed}


def resolve(name: str) -> Strategy:
    if name in STRATEGIES:
        return STRATEGIES[name]
    if ":" in name:
        module, func = name.split(":", 1)
        return getattr(importlib.import_module(module), func)
    raise ValueError(f"unknown assignment strategy {name!r}; known: {sorted(STRATEGIES)}")
