"""The paper's result (PAPER.md, T5-base): the S4-model's choices, used as a known design."""

from __future__ import annotations

from experiments.space.space import DesignSpace
from experiments.space.stages import refine

PAPER_S4 = {
    "grouping": "spindle",
    "allocation": "uniform",
    "groups": "G1+G2+G3+G4",
    "assignment.G1": "A+L",
    "assignment.G2": "A+P",
    "assignment.G3": "A+P+B",
    "assignment.G4": "P+B+L",
}


def paper_space() -> DesignSpace:
    """The fully decided space of the paper's S4-model, reached by refining S0 in stage order."""
    space = DesignSpace.initial(num_groups=4)
    for component, choice in PAPER_S4.items():
        space, _ = refine(space, component, choice, decided_by="user:test")
    return space
