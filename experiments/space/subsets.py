"""Labels of the two subset-valued components: tunable groups and per-group strategy sets.

Choices are plain strings so that spaces, samples and summaries stay JSON keys and table cells:

- tunable groups: group names joined by "+", e.g. ``"G1+G3"`` (1-based, input side first);
- strategy sets: the strategies' letter codes A (adapter), P (prefix), B (bitfit), L (lora) in
  their canonical order, joined by "+", e.g. ``"A+P+B"`` (the paper writes G3 = (A, P, B)).
  Codes and order come from the strategy registry, ``tasks.peft.strategies``.

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
from tasks.peft.strategies import code_by_name, name_by_code

@cache  # spaces are validated against these on every construction
def _subsets(members: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(
        "+".join(combo)
        for size in range(1, len(members) + 1)
        for combo in combinations(members, size)
    )


def group_names(num_groups: int) -> tuple[str, ...]:
    """``("G1", ..., "G<num_groups>")``."""
    return tuple(f"G{k}" for k in range(1, num_groups + 1))


def group_subsets(num_groups: int) -> tuple[str, ...]:
    """Every non-empty subset of the groups, as labels, in canonical order."""
    return _subsets(group_names(num_groups))


def strategy_subsets() -> tuple[str, ...]:
    """The non-empty subsets of the strategy codes (15 for A, P, B, L), in canonical order."""
    return _subsets(tuple(name_by_code()))


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
    names = name_by_code()
    return tuple(names[c] for c in _parse(label, tuple(names), field, "strategy code"))


def strategies_label(strategies: Iterable[str]) -> str:
    """Label of a set of strategy names or codes; ``["lora", "adapter"]`` -> ``"A+L"``."""
    codes_of = code_by_name()
    codes = {codes_of.get(s, s) for s in strategies}
    known = tuple(codes_of.values())
    unknown = codes - set(known)
    if unknown:
        raise SpaceError("strategies", f"unknown strategy {sorted(unknown)[0]!r}")
    return "+".join(c for c in known if c in codes)
