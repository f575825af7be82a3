"""Labels of the two subset-valued components: tunable groups and per-group strategy sets.

Choices are plain strings so that spaces, samples and summaries stay JSON keys and table cells:

- tunable groups: group names joined by "+", e.g. ``"G1+G3"`` (1-based, input side first);
- strategy sets: short codes A (adapter), P (prefix), B (bitfit), L (lora) in that canonical
  order, joined by "+", e.g. ``"A+P+B"`` (the paper writes G3 = (A, P, B)).

Every label has exactly one spelling (members in canonical order), so equality of labels is
equality of sets. Enumeration order is by size, then by member positions: singletons first, the
full set last.

>>> strategy_subsets()[:5]
('A', 'P', 'B', 'L', 'A+P')
>>> parse_strategies("A+L")
('adapter', 'lora')
>>> group_subsets(2)
('G1', 'G2', 'G1+G2')
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from itertools import combinations

from experiments.space.errors import SpaceError
from tasks.peft.budget import STRATEGIES
from tasks.peft.budget import STRATEGY_CODES as CODE_OF_STRATEGY

# Short code -> contract strategy name, in the contract's canonical order (A, P, B, L).
STRATEGY_CODES: dict[str, str] = {CODE_OF_STRATEGY[name]: name for name in STRATEGIES}


def _subsets(members: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(
        "+".join(combo)
        for size in range(1, len(members) + 1)
        for combo in combinations(members, size)
    )


def group_names(num_groups: int) -> tuple[str, ...]:
    """``("G1", ..., "G<num_groups>")``."""
    return tuple(f"G{k}" for k in range(1, num_groups + 1))


@cache  # spaces are validated against these on every construction
def group_subsets(num_groups: int) -> tuple[str, ...]:
    """Every non-empty subset of the groups, as labels, in canonical order."""
    return _subsets(group_names(num_groups))


@cache
def strategy_subsets() -> tuple[str, ...]:
    """The 15 non-empty subsets of A, P, B, L, as labels, in canonical order."""
    return _subsets(tuple(STRATEGY_CODES))


def _parse(label: str, members: tuple[str, ...], field: str, what: str) -> tuple[str, ...]:
    if not isinstance(label, str) or not label:
        raise SpaceError(
            field, f"expected a non-empty {what} label such as {members[0]!r}, got {label!r}"
        )
    parts = label.split("+")
    unknown = [p for p in parts if p not in members]
    if unknown:
        raise SpaceError(
            field, f"unknown {what} {unknown[0]!r} in {label!r}; expected members of {members}"
        )
    canonical = tuple(m for m in members if m in parts)
    if canonical != tuple(parts):
        raise SpaceError(
            field,
            f"{label!r} must list each {what} once in canonical order: {'+'.join(canonical)!r}",
        )
    return canonical


def parse_groups(label: str, num_groups: int, *, field: str = "groups") -> tuple[int, ...]:
    """0-based group indices of a tunable-groups label; ``"G1+G3"`` -> ``(0, 2)``."""
    names = _parse(label, group_names(num_groups), field, "group")
    return tuple(int(name[1:]) - 1 for name in names)


def groups_label(indices: Iterable[int]) -> str:
    """Label of a set of 0-based group indices; ``{2, 0}`` -> ``"G1+G3"``."""
    return "+".join(f"G{k + 1}" for k in sorted(set(indices)))


def parse_strategies(label: str, *, field: str = "strategies") -> tuple[str, ...]:
    """Contract strategy names of a strategy-set label; ``"A+L"`` -> ``("adapter", "lora")``."""
    return tuple(
        STRATEGY_CODES[c] for c in _parse(label, tuple(STRATEGY_CODES), field, "strategy code")
    )


def strategies_label(strategies: Iterable[str]) -> str:
    """Label of a set of strategy names or codes; ``["lora", "adapter"]`` -> ``"A+L"``."""
    codes = {CODE_OF_STRATEGY.get(s, s) for s in strategies}
    unknown = codes - set(STRATEGY_CODES)
    if unknown:
        raise SpaceError("strategies", f"unknown strategy {sorted(unknown)[0]!r}")
    return "+".join(c for c in STRATEGY_CODES if c in codes)
