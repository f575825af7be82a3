"""Layer grouping patterns: split L consecutive layers into G groups.

PAPER.md fixes the G = 4 shapes; PEFS generalises them to any 1 <= G <= L as follows, with
k = 1..G the group position from the input side and ``t(k) = 1 + min(k - 1, G - k)`` the "tent"
(distance to the nearer end, plus one):

==========  ===============================  =====================  ==================
pattern     weight of group k                G = 4 (paper)          G = 5
==========  ===============================  =====================  ==================
uniform     1                                (1, 1, 1, 1)           (1, 1, 1, 1, 1)
increasing  k                                (1, 2, 3, 4)           (1, 2, 3, 4, 5)
decreasing  G + 1 - k                        (4, 3, 2, 1)           (5, 4, 3, 2, 1)
spindle     t(k)                             (1, 2, 2, 1)           (1, 2, 3, 2, 1)
bottleneck  max(t) + 1 - t(k)                (2, 1, 1, 2)           (3, 2, 1, 2, 3)
==========  ===============================  =====================  ==================

Small G degenerates by construction: with G = 1 every pattern is the single group of all layers;
with G = 2 spindle and bottleneck both equal uniform (a two-group shape has no middle). The
patterns stay distinct *choices* of the space (a search may still compare them), they just compile
to the same layer split.

Sizes are the weights scaled to L and rounded by largest remainder with a floor of one layer per
group (PAPER.md: every group is non-empty):

1. quota q_k = L * w_k / sum(w); size s_k = max(1, floor(q_k));
2. while sum(s) < L: add a layer to the group with the largest q_k - s_k;
3. while sum(s) > L (only when floors of 1 were forced): take a layer from the group with
   s_k > 1 and the smallest q_k - s_k.

Ties go to the group nearer the input (lower k), so the result is deterministic; this is why a
symmetric pattern can round asymmetrically (spindle, L = 7: (1, 3, 2, 1)).

>>> group_sizes("spindle", num_layers=12, num_groups=4)
(2, 4, 4, 2)
>>> group_layers("increasing", num_layers=6, num_groups=4)
((0,), (1,), (2, 3), (4, 5))
"""

from __future__ import annotations

import math
from fractions import Fraction

from experiments.space.errors import SpaceError

GROUPING_PATTERNS: tuple[str, ...] = (
    "increasing",
    "uniform",
    "decreasing",
    "spindle",
    "bottleneck",
)


def grouping_weights(pattern: str, num_groups: int) -> tuple[int, ...]:
    """Integer weights of the ``num_groups`` groups for ``pattern`` (see the module table)."""
    if pattern not in GROUPING_PATTERNS:
        raise SpaceError(
            "grouping", f"unknown pattern {pattern!r}; expected one of {GROUPING_PATTERNS}"
        )
    if num_groups < 1:
        raise SpaceError("num_groups", f"must be at least 1, got {num_groups}")
    positions = range(1, num_groups + 1)
    tent = [1 + min(k - 1, num_groups - k) for k in positions]
    if pattern == "uniform":
        return tuple(1 for _ in positions)
    if pattern == "increasing":
        return tuple(positions)
    if pattern == "decreasing":
        return tuple(num_groups + 1 - k for k in positions)
    if pattern == "spindle":
        return tuple(tent)
    return tuple(max(tent) + 1 - t for t in tent)


def group_sizes(pattern: str, *, num_layers: int, num_groups: int) -> tuple[int, ...]:
    """Number of layers in each group, input side first; always sums to ``num_layers``."""
    if num_layers < 1:
        raise SpaceError("num_layers", f"must be at least 1, got {num_layers}")
    if not 1 <= num_groups <= num_layers:
        raise SpaceError(
            "num_groups",
            f"must be between 1 and the number of layers ({num_layers}), got {num_groups}",
        )
    weights = grouping_weights(pattern, num_groups)
    total_weight = sum(weights)
    # Exact rationals: float quotas can tie-break differently on different inputs of equal value.
    quotas = [Fraction(num_layers * w, total_weight) for w in weights]
    sizes = [max(1, math.floor(q)) for q in quotas]
    order = range(num_groups)
    while sum(sizes) < num_layers:
        k = min(order, key=lambda i: (-(quotas[i] - sizes[i]), i))
        sizes[k] += 1
    while sum(sizes) > num_layers:
        k = min((i for i in order if sizes[i] > 1), key=lambda i: (quotas[i] - sizes[i], i))
        sizes[k] -= 1
    return tuple(sizes)


def group_layers(pattern: str, *, num_layers: int, num_groups: int) -> tuple[tuple[int, ...], ...]:
    """0-based layer indices of each group: consecutive runs in forward order."""
    runs: list[tuple[int, ...]] = []
    start = 0
    for size in group_sizes(pattern, num_layers=num_layers, num_groups=num_groups):
        runs.append(tuple(range(start, start + size)))
        start += size
    return tuple(runs)
