"""Sampling concrete designs from a design space.

``sample(space, n, seed=..., shape=..., budget=...)`` draws designs the way the paper judges a
space: at random, each component's choice drawn uniformly and independently from its open choices
(an untuned group's assignment is not drawn: it would not change the design). Then:

- **reproducible**: the same space, n, seed, shape, budget and balance give the same designs;
- **no duplicates while possible**: a draw equal to an earlier one (same effective choices) is
  drawn again. When the space runs out of distinct designs ``shortfall`` says so, and the
  batch is filled by repeating the distinct designs in order with new seeds (``repeat_of``), so
  a late stage with few designs (S4.GG: 15) still gives each choice several seed replicates;
  ``repeats=False`` returns the shorter batch instead.
  Redrawing keeps a component's marginal uniform when each of its choices leads to equally many
  designs (grouping, allocation, assignments). Tunable-groups choices do not (one tuned group:
  225 designs in S0, all four: 759,375), so in draws large enough to saturate the small ones they
  fall below 1/15; the S3 stage that decides them samples balanced, which restores exact shares;
- **compiled**: each draw is compiled (compiling.compile_choices); one whose budget cannot be met
  (``InfeasibleBudget``) is redrawn and counted in ``redraws``; after ``max_redraws`` the batch
  stops short and says so; when nothing at all is feasible ``InfeasibleSpace`` is raised;
- **balanced** (optional): ``balance="grouping"`` cycles the choices of the component a stage
  decides through a freshly shuffled order, so every choice gets n / k designs (±1) instead of a
  multinomial count. Its marginal is still uniform;
- **stratified** (what a stage uses, planning.stage_plan): ``min_per_choice=k`` with
  ``stratify`` (default: ``balance``) draws k designs of every open choice of that component
  first, in k shuffled rounds, then the rest balanced (``balance``) or uniformly. A choice with
  fewer than k distinct feasible designs repeats its own with new seeds; one with none is
  listed in ``untried`` with the reason (``infeasible_choices``: no design meets the budget), so
  no choice is ever left out silently. ``n`` must be at least k x open choices.

Seed policy (common random numbers). Within a stage the designs should differ by their design,
not by the shuffle, so there are two seeds per trial:

- the *design seed* ``design_seed(seed, index)`` = ``seed * 1_000_003 + index`` mod 2**31, one
  per design (``SampledDesign.seed``, the design document's ``seed``): the initialisation of the
  PEFT modules only (the engine seeds them with it alone). It does not depend on how many draws
  were rejected before the design; a repeat of a design gets a new one;
- the *stage data seed* ``stage_data_seed(seed)``, the same for every design of a batch
  (``SampledDesign.data_seed``, also in the design's ``provenance.sample.data_seed``): the order
  of the training examples, the task head's initialisation and dropout. The runner takes it as
  ``TrainConfig.seed`` (which seeds the head, the example order and dropout), while PEFT
  initialisation keeps the design seed.

``seed`` here is the stage's sampling seed, ``stages.stage_seed(search seed, stage name)``, so
both derive from the search seed and the stage: stages differ, reruns agree. The final stage
follows the same rule by construction: every arm of replicate s uses seed s (final.py).

>>> stage_data_seed(7) == stage_data_seed(7) != stage_data_seed(8)
True
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from experiments.space.compiling import Budget, CompiledDesign, compile_choices
from experiments.space.errors import SpaceError
from experiments.space.space import DesignSpace, assignment_component
from experiments.space.subsets import parse_groups
from tasks.peft.budget import BackboneShape, InfeasibleBudget
from tasks.peft.design import DesignOptions

# Consecutive duplicate draws after which a (balanced) choice counts as exhausted. Only reached
# when nearly every distinct design has been drawn; exhaustion is detected exactly before that
# by counting distinct designs.
MAX_DUPLICATE_DRAWS = 20_000


# Why a stratified choice has no design in a batch (SampleBatch.untried).
NO_FEASIBLE_DESIGN = "no design of this choice meets the budget"
STOPPED_SHORT = "sampling stopped (infeasible redraws) before reaching it"


class InfeasibleSpace(SpaceError):
    """No design of the space meets the budget on this backbone."""


@dataclass(frozen=True)
class SampledDesign:
    """One sampled design: its abstract choices and the concrete design they compile to."""

    index: int  # position in the batch, 0-based
    seed: int  # PEFT-initialisation seed, also the design document's seed
    choices: Mapping[str, str | None]  # every component; None = group not tuned
    design: dict[str, Any]  # the pefs.design/1 document
    parameters: int  # exact stored PEFT parameters
    target: int  # the budget it was solved for
    redraws: int  # infeasible draws rejected just before this one
    repeat_of: int | None = None  # with repeats=True: index of the design this one repeats
    data_seed: int | None = None  # the stage's shared data/head/dropout seed (module docstring)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "choices": dict(self.choices),
            "design": self.design,
            "parameters": self.parameters,
            "target": self.target,
            "redraws": self.redraws,
            "repeat_of": self.repeat_of,
            "data_seed": self.data_seed,
        }


@dataclass(frozen=True)
class SampleBatch:
    """The result of ``sample``: the designs and an account of how they were drawn."""

    designs: tuple[SampledDesign, ...]
    requested: int
    seed: int
    distinct_available: int  # distinct designs of the space, before the budget is checked
    redraws: int  # infeasible draws rejected in total
    duplicates: int  # draws rejected because an equal design was already drawn
    infeasible_fields: Mapping[str, int]  # InfeasibleBudget.field -> how many draws it rejected
    shortfall: str | None  # why there are fewer distinct designs than requested; None if none
    # Open choices of the stratified component without a design in the batch -> why (never
    # silently: a stage cannot compare a choice it did not train).
    untried: Mapping[str, str] = field(default_factory=dict)

    @property
    def infeasible_choices(self) -> tuple[str, ...]:
        """Untried choices of which no design meets the budget (``summarise(infeasible=...)``)."""
        return tuple(c for c, why in self.untried.items() if why == NO_FEASIBLE_DESIGN)

    @property
    def distinct(self) -> int:
        return sum(1 for d in self.designs if d.repeat_of is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "seed": self.seed,
            "distinct_available": self.distinct_available,
            "distinct": self.distinct,
            "redraws": self.redraws,
            "duplicates": self.duplicates,
            "infeasible_fields": dict(self.infeasible_fields),
            "shortfall": self.shortfall,
            "untried": dict(self.untried),
            "designs": [d.to_dict() for d in self.designs],
        }


def design_seed(seed: int, index: int) -> int:
    """PEFT-initialisation seed of design ``index`` of a batch drawn with ``seed``."""
    return (seed * 1_000_003 + index) % 2**31


def stage_data_seed(seed: int) -> int:
    """Data-order, head and dropout seed shared by every design of a batch drawn with ``seed``.

    A separate stream from the design seeds (a hash, not an index offset), so it never equals
    the design seed of one of the batch's own designs by construction.
    """
    return zlib.crc32(f"pefs-stage-data/{seed}".encode()) % 2**31


class _Drawer:
    """Draws effective choices uniformly per component, never returning one already seen.

    ``component`` (the balanced or stratified one) is fixed to ``want`` by ``next(want)``;
    ``want`` None draws it uniformly like every other component.
    """

    def __init__(self, space: DesignSpace, rng: random.Random, component: str | None) -> None:
        self.space = space
        self.rng = rng
        self.component = component
        self.seen: set[tuple[str | None, ...]] = set()
        self.seen_per_choice: Counter[str | None] = Counter()
        self.duplicates = 0
        if component is None:
            self.available = {None: space.count_designs()}
        else:
            self.available = {
                c: space.count_designs(fixing=(component, c)) for c in space.open(component)
            }
        self.available_total = sum(self.available.values())

    def exhausted(self, want: str | None) -> bool:
        """Has every distinct design (of choice ``want``; None: of the space) been drawn?"""
        if want is None:
            return len(self.seen) >= self.available_total
        return self.seen_per_choice[want] >= self.available[want]

    def _draw(self, want: str | None) -> dict[str, str | None]:
        def pick(component: str) -> str:
            if component == self.component and want is not None:
                return want
            return self.rng.choice(self.space.open(component))

        choices: dict[str, str | None] = {
            "grouping": pick("grouping"),
            "allocation": pick("allocation"),
            "groups": pick("groups"),
        }
        tuned = parse_groups(choices["groups"], self.space.num_groups)
        for g in range(self.space.num_groups):
            name = assignment_component(g)
            choices[name] = pick(name) if g in tuned else None
        return choices

    def next(self, want: str | None) -> dict[str, str | None] | None:
        """A new effective design (``component`` at ``want``); None when exhausted."""
        for _ in range(MAX_DUPLICATE_DRAWS):
            if self.exhausted(want):
                return None
            choices = self._draw(want)
            key = tuple(choices.values())
            if key in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(key)
            self.seen_per_choice[choices[self.component] if self.component else None] += 1
            return choices
        return None


def _check_balance(space: DesignSpace, balance: str | None, field: str = "balance") -> None:
    if balance is None:
        return
    space.open(balance)  # unknown component -> SpaceError
    if balance.startswith("assignment."):
        group = int(balance.removeprefix("assignment.G")) - 1
        if not space.always_tuned(group):
            raise SpaceError(
                field,
                f"cannot {field} {balance}: some open tunable-groups choices "
                f"leave G{group + 1} untuned",
            )


def _check_stratify(
    space: DesignSpace, n: int, balance: str | None, stratify: str | None, min_per_choice: int
) -> str | None:
    """The stratified component (``stratify``, else ``balance``) after checking the arguments."""
    per_choice = min_per_choice
    if isinstance(per_choice, bool) or not isinstance(per_choice, int) or per_choice < 0:
        raise SpaceError(
            "min_per_choice", f"must be a non-negative integer, got {min_per_choice!r}"
        )
    if stratify is not None and balance is not None and stratify != balance:
        raise SpaceError("stratify", f"differs from balance ({stratify!r} vs {balance!r})")
    stratify = stratify or (balance if min_per_choice else None)
    if min_per_choice and stratify is None:
        raise SpaceError(
            "stratify", "min_per_choice needs the component whose choices it covers"
        )
    _check_balance(space, stratify, "stratify")
    if stratify is not None:
        needed = min_per_choice * len(space.open(stratify))
        if n < needed:
            raise SpaceError(
                "n",
                f"{len(space.open(stratify))} open {stratify} choices x {min_per_choice} designs "
                f"need at least {needed} designs, got {n} (planning.stage_plan raises the count)",
            )
    return stratify


def sample(
    space: DesignSpace,
    n: int,
    *,
    seed: int,
    shape: BackboneShape,
    budget: Budget | None = None,
    balance: str | None = None,
    repeats: bool = True,
    max_redraws: int | None = None,
    options: DesignOptions | Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    min_per_choice: int = 0,
    stratify: str | None = None,
    data_seed: int | None = None,
) -> SampleBatch:
    """Draw ``n`` compiled designs from ``space`` (see the module docstring).

    ``provenance`` (e.g. search and stage ids) is copied into every design's provenance, next to
    the choices and ``{"sample": {"seed": seed, "index": i, "data_seed": ...}}``. ``data_seed``
    (default ``stage_data_seed(seed)``) is shared by every design. ``max_redraws`` defaults to
    ``max(100, 10 * n)`` infeasible draws. ``min_per_choice`` designs go to every open choice of
    ``stratify`` (default: ``balance``) before any other draw; ``n`` must leave room for them.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpaceError("n", f"must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpaceError("seed", f"must be a non-negative integer, got {seed!r}")
    if max_redraws is None:
        max_redraws = max(100, 10 * n)
    elif isinstance(max_redraws, bool) or not isinstance(max_redraws, int) or max_redraws < 0:
        raise SpaceError("max_redraws", f"must be a non-negative integer, got {max_redraws!r}")
    if data_seed is None:
        data_seed = stage_data_seed(seed)
    elif isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
        raise SpaceError("data_seed", f"must be a non-negative integer, got {data_seed!r}")
    budget = budget or Budget()
    _check_balance(space, balance)
    stratify = _check_stratify(space, n, balance, stratify, min_per_choice)
    if space.num_layers is not None and space.num_layers != shape.num_layers:
        # Its aliases were merged for another layer count: choices it merged may differ here.
        raise SpaceError(
            "shape",
            f"the space was built for {space.num_layers} layers; "
            f"{shape.name_or_path} has {shape.num_layers}",
        )

    def compile_at(choices: Mapping[str, str | None], index: int) -> CompiledDesign:
        return compile_choices(
            choices,
            shape=shape,
            budget=budget,
            num_groups=space.num_groups,
            seed=design_seed(seed, index),
            options=options,
            provenance={
                **dict(provenance or {}),
                "sample": {"seed": seed, "index": index, "data_seed": data_seed},
            },
        )

    rng = random.Random(seed)
    component = balance or stratify
    drawer = _Drawer(space, rng, component)
    found: list[CompiledDesign] = []
    found_per_choice: Counter[str | None] = Counter()
    redraws_before: list[int] = []
    infeasible: Counter[str] = Counter()
    last_error: InfeasibleBudget | None = None
    redraws = pending = rounds = 0
    wants: list[str | None] = []
    shortfall: str | None = None
    want: str | None = None
    retry = False

    def reserved() -> int:
        """Slots kept for repeats of stratified choices that ran out of distinct designs."""
        if stratify is None or not repeats:
            return 0
        return sum(
            min_per_choice - found_per_choice[c]
            for c in space.open(stratify)
            if 0 < found_per_choice[c] < min_per_choice and drawer.exhausted(c)
        )

    while len(found) + reserved() < n:
        if not retry:
            if not wants:
                # Balanced: every round cycles the choices. Stratified: the first min_per_choice
                # rounds do, then draws are uniform over the space.
                if component is None or (balance is None and rounds >= min_per_choice):
                    wants = [None]
                else:
                    wants = list(space.open(component))
                    rng.shuffle(wants)
                    rounds += 1
            want = wants.pop()
            if drawer.exhausted(want):
                if drawer.exhausted(None):
                    break
                continue
        retry = False
        choices = drawer.next(want)
        if choices is None:
            if drawer.exhausted(None):
                break
            continue
        try:
            compiled = compile_at(choices, len(found))
        except InfeasibleBudget as exc:
            redraws += 1
            pending += 1
            infeasible[exc.field] += 1
            last_error = exc
            if redraws > max_redraws:
                shortfall = (
                    f"stopped after {max_redraws} infeasible redraws (budget {budget.to_dict()} on "
                    f"{shape.name_or_path}); most frequent cause: {_top_cause(infeasible)}"
                )
                break
            retry = True  # keep the balanced choice for the next draw
            continue
        found.append(compiled)
        found_per_choice[choices[component] if component else None] += 1
        redraws_before.append(pending)
        pending = 0

    if not found:
        detail = f"; last error: {last_error}" if last_error else ""
        raise InfeasibleSpace(
            "budget",
            f"no design of this space meets budget {budget.to_dict()} on {shape.name_or_path} "
            f"after {redraws} infeasible draws{detail}",
        )
    designs = [_sampled(i, c, redraws_before[i], None, data_seed) for i, c in enumerate(found)]

    def repeat(of: int) -> SampledDesign:
        index = len(designs)
        return _sampled(index, compile_at(found[of].choices, index), 0, of, data_seed)

    untried: dict[str, str] = {}
    if stratify is not None:
        for c in space.open(stratify):
            own = [i for i, d in enumerate(found) if d.choices[stratify] == c]
            if not own:
                untried[c] = NO_FEASIBLE_DESIGN if drawer.exhausted(c) else STOPPED_SHORT
            # A choice with fewer distinct designs than its quota repeats them with new seeds.
            quota = min_per_choice if repeats and own and drawer.exhausted(c) else 0
            for k in range(len(own), quota):
                designs.append(repeat(own[k % len(own)]))
    if shortfall is None and len(found) < n:
        shortfall = (
            f"the space has {drawer.available_total} distinct designs, "
            f"{len(found)} of them feasible "
            f"at this budget ({redraws} infeasible); {n} were requested"
        )
    if repeats and redraws <= max_redraws:
        # The space is exhausted: cycle through its feasible designs again, each with a new seed.
        while len(designs) < n:
            designs.append(repeat(len(designs) % len(found)))
    if len(designs) > len(found):
        shortfall = f"{shortfall}; the batch repeats them with new seeds"
    return SampleBatch(
        designs=tuple(designs),
        requested=n,
        seed=seed,
        distinct_available=drawer.available_total,
        redraws=redraws,
        duplicates=drawer.duplicates,
        infeasible_fields=dict(infeasible),
        shortfall=shortfall,
        untried=untried,
    )


def _sampled(
    index: int, compiled: CompiledDesign, redraws: int, repeat_of: int | None, data_seed: int
) -> SampledDesign:
    return SampledDesign(
        index=index,
        seed=compiled.design.seed,
        choices=dict(compiled.choices),
        design=compiled.design.to_dict(),
        parameters=compiled.parameters,
        target=compiled.target,
        redraws=redraws,
        repeat_of=repeat_of,
        data_seed=data_seed,
    )


def _top_cause(infeasible: Counter[str]) -> str:
    field, count = infeasible.most_common(1)[0]
    return f"{field} ({count} draws)"
