"""Trainable-parameter allocation patterns: how a budget is spread over the tuned layers.

Each tuned layer gets a share of the budget proportional to a weight of its *rank among the tuned
layers* (r = 1 for the tuned layer nearest the input, m for the deepest of m tuned layers):

==========  =================
pattern     weight of rank r
==========  =================
uniform     1
increasing  r
decreasing  m + 1 - r
==========  =================

Ranks rather than absolute depths, because the pattern should shape the budget the same way
whichever groups are tuned: with absolute depths, tuning only the top group would make
"increasing" nearly indistinguishable from "uniform".

>>> layer_budgets("increasing", tuned_layers=[4, 5, 7], total=600)
{4: 100.0, 5: 200.0, 7: 300.0}
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.space.errors import SpaceError

ALLOCATION_PATTERNS: tuple[str, ...] = ("increasing", "uniform", "decreasing")


def allocation_weights(pattern: str, num_tuned: int) -> tuple[int, ...]:
    """Integer weights of ``num_tuned`` tuned layers in depth order (see the module table)."""
    if pattern not in ALLOCATION_PATTERNS:
        raise SpaceError(
            "allocation", f"unknown pattern {pattern!r}; expected one of {ALLOCATION_PATTERNS}"
        )
    if num_tuned < 1:
        raise SpaceError("tuned_layers", "at least one layer must be tuned")
    ranks = range(1, num_tuned + 1)
    if pattern == "uniform":
        return tuple(1 for _ in ranks)
    if pattern == "increasing":
        return tuple(ranks)
    return tuple(num_tuned + 1 - r for r in ranks)


def layer_budgets(pattern: str, *, tuned_layers: Sequence[int], total: float) -> dict[int, float]:
    """Budget (parameters, real-valued) of each tuned layer; the values sum to ``total``."""
    if total <= 0:
        raise SpaceError("budget", f"must be positive, got {total}")
    layers = sorted(set(tuned_layers))
    if len(layers) != len(tuned_layers):
        raise SpaceError("tuned_layers", f"layers repeat: {list(tuned_layers)}")
    weights = allocation_weights(pattern, len(layers))
    scale = total / sum(weights)
    return {layer: w * scale for layer, w in zip(layers, weights, strict=True)}
