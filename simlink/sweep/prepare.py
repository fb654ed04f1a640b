"""Before a sweep: load or train the receiver's task model, then train (or load) every method.

Shared by ``simlink run`` (which trains what is missing) and ``simlink train`` (which only trains).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from simlink.learned.context import TrainingContext
from simlink.methods.base import Method
from simlink.scenario import Scenario


def training_context(scenario: Scenario, device: str, log: Callable[[str], None],
                     cache_root: str | Path | None = None) -> TrainingContext:
    """A :class:`TrainingContext` for ``scenario`` with its task model loaded (or trained)."""
    ctx = TrainingContext(dataset=scenario.dataset, seed=scenario.seed, device=device, cache_root=cache_root, log=log)
    if scenario.task is not None:
        from simlink.tasks import load_task_model

        t = scenario.task
        ctx.task = load_task_model(t.model, t.weights, train=t.train, ctx=ctx, kind=t.kind)
    return ctx


def fit_methods(methods: list[Method], ctx: TrainingContext) -> None:
    """``method.fit(ctx)`` for each method (learned methods train or load from the cache)."""
    for m in methods:
        m.fit(ctx)
