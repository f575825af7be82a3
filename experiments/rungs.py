"""How a trial's successive-halving rung reads (services.halving): for the table, the API and the trial page.

>>> from types import SimpleNamespace as S
>>> stage = S(plan={"halving": {"eta": 3, "rungs": [1, 3]}}, rung=1)
>>> rung_label(S(stage=stage, rung=0, halted=True, status="succeeded"))
'halted after rung 1 of 2 (1 epoch)'
>>> rung_label(S(stage=stage, rung=1, halted=False, status="running"))
'rung 2 of 2 (to epoch 3)'
>>> rung_label(S(stage=S(plan={}, rung=0), rung=0, halted=False, status="queued"))
''
"""
from __future__ import annotations

from typing import Any


def rungs_of(stage: Any) -> list[int]:
    """The epochs each rung of ``stage`` ends at; [] when the stage trains every design in full."""
    return list(((getattr(stage, "plan", None) or {}).get("halving") or {}).get("rungs") or [])


def rung_label(trial: Any) -> str:
    """'' without halving; else where the trial stands: its rung, or the rung it was halted after."""
    rungs = rungs_of(trial.stage)
    if not rungs:
        return ""
    rung = min(trial.rung, len(rungs) - 1)
    epochs = rungs[rung]
    if trial.halted:
        return f"halted after rung {rung + 1} of {len(rungs)} ({epochs} epoch{'s' if epochs != 1 else ''})"
    if trial.status in ("queued", "running"):
        return f"rung {rung + 1} of {len(rungs)} (to epoch {epochs})"
    return f"rung {rung + 1} of {len(rungs)} ({epochs} epoch{'s' if epochs != 1 else ''})"
