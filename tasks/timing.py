"""Where a trial's time goes: the engine's phases, measured as it runs and reported as they end.

The runner (:func:`tasks.runner.run_design`) times each task's run in these phases, in seconds:

- ``data``: loading and tokenising the task (the tokenizer's loading counts to the first task);
- ``model``: the backbone from the cache (a load or a copy), the design applied, a rung
  checkpoint read back;
- ``first_step``: from the start of training to the end of the first optimiser step (batching
  the data, building the optimiser, and the first step's own warm-up);
- ``training``: every later optimiser step, the pure step time;
- ``evaluation``: the evaluations (at the end of each epoch, and every ``eval_every`` steps);
- ``recording``: time spent in the caller's ``on_step`` / ``on_eval`` callbacks (a worker stores
  and publishes metric points there);
- ``artifacts``: trained weights and rung checkpoints written.

Each phase is reported as it ends to the callbacks' optional ``on_phase(task, phase, seconds)``
(a phase may be reported several times per task: add them up) and summed in
``DesignOutcome.timing`` (and per task in ``per_task[name]["timing"]``). The worker adds
``queued`` (the wait from queueing to its claim), its own ``artifacts`` (the PEFT export) and
``finish`` (recording the last points), and the database fills ``other`` (the rest of the
trial's duration: claiming, setting up, bookkeeping). :data:`PHASES` is their display order.

Example:
    >>> timer = PhaseTimer(None)
    >>> with timer.measure("sst2", "data"):
    ...     pass
    >>> sorted(timer.totals)
    ['data']
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

#: Every phase a trial's timing may hold, in the order a trial goes through them.
PHASES = ("queued", "data", "model", "first_step", "training", "evaluation", "recording", "artifacts",
          "finish", "other")
#: The phases that lie within a trial's duration (``queued`` comes before it starts).
RUNNING_PHASES = PHASES[1:]


def add_phases(total: Mapping[str, float] | None, more: Mapping[str, float] | None) -> dict[str, float]:
    """Phase-wise sum of two timing dicts (a survivor's rung runs add up)."""
    summed = dict(total or {})
    for phase, seconds in (more or {}).items():
        summed[phase] = summed.get(phase, 0.0) + seconds
    return summed


def rounded(timing: Mapping[str, float], digits: int = 4) -> dict[str, float]:
    """The dict as stored: non-negative seconds, rounded, in :data:`PHASES` order."""
    order = {phase: i for i, phase in enumerate(PHASES)}
    return {phase: round(max(0.0, float(seconds)), digits)
            for phase, seconds in sorted(timing.items(), key=lambda item: order.get(item[0], len(order)))}


class PhaseTimer:
    """Sums phase durations per task and overall, and reports each to ``on_phase``."""

    def __init__(self, callbacks: Any) -> None:
        self.totals: dict[str, float] = {}
        self.per_task: dict[str, dict[str, float]] = {}
        self._on_phase = getattr(callbacks, "on_phase", None)

    def add(self, task: str, phase: str, seconds: float) -> None:
        seconds = max(0.0, seconds)
        own = self.per_task.setdefault(task, {})
        own[phase] = own.get(phase, 0.0) + seconds
        self.totals[phase] = self.totals.get(phase, 0.0) + seconds
        if self._on_phase is not None:
            self._on_phase(task, phase, seconds)

    @contextmanager
    def measure(self, task: str, phase: str) -> Iterator[None]:
        """Time the block as ``phase`` of ``task`` (also when it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(task, phase, time.perf_counter() - started)

    def training(self, task: str, callbacks: Any) -> TimedTraining:
        """Callbacks for one ``tasks.train.train`` call that split its time into phases."""
        return TimedTraining(self, task, callbacks)


class TimedTraining:
    """Wraps the caller's ``on_step`` / ``on_eval`` for one training run.

    The training loop calls ``on_step`` right after each step and ``on_eval`` right after each
    evaluation, so the time since the previous callback returned is that step's or that
    evaluation's; the time inside the caller's callbacks is ``recording``. Create it just before
    ``train`` and call :meth:`close` when ``train`` returns.
    """

    def __init__(self, timer: PhaseTimer, task: str, callbacks: Any) -> None:
        self.timer, self.task = timer, task
        self._on_step = getattr(callbacks, "on_step", None)
        self._on_eval = getattr(callbacks, "on_eval", None)
        self.steps = 0
        self.mark = time.perf_counter()

    def on_step(self, task: str, step: int, values: dict[str, float]) -> None:
        now = time.perf_counter()
        self.timer.add(self.task, "first_step" if self.steps == 0 else "training", now - self.mark)
        self.steps += 1
        self._forward(self._on_step, now, task, step, values)

    def on_eval(self, task: str, step: int, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        self.timer.add(self.task, "evaluation", now - self.mark)
        self._forward(self._on_eval, now, task, step, metrics)

    def close(self) -> None:
        """What followed the last callback (packing the resumable state) counts as training."""
        self.timer.add(self.task, "training", time.perf_counter() - self.mark)
        self.mark = time.perf_counter()

    def _forward(self, callback: Any, now: float, *args: Any) -> None:
        if callback is not None:
            callback(*args)
        self.mark = time.perf_counter()
        if callback is not None:
            self.timer.add(self.task, "recording", self.mark - now)
