"""A whole search, S0 to final, against a synthetic score with a planted best design.

No training: each design's "score" is a seeded function of its choices, with failed trials mixed
in. The greedy stages must find the planted design (the paper's S4-model) in the stage order
S0, S1, S2, S3, S4.G1..S4.G4.
"""

from __future__ import annotations

import random
from collections import Counter

from experiments.space import (
    FINAL,
    REFERENCE,
    DesignSpace,
    TrialOutcome,
    diff,
    final_choices,
    next_stage,
    preset,
    refine,
    sample,
    stage_plan,
    stage_seed,
    summarise,
)
from tests.experiments.space.paper import PAPER_S4
from tests.experiments.space.shapes import minilm_shape

PLANTED = PAPER_S4


# Effects are lexicographic (each exceeds the sum of all later ones), so every stage's planted
# choice wins whatever the still-open components happened to draw: the test checks the stage
# machinery, not statistical power.
EFFECTS = {
    "grouping": 1000,
    "allocation": 500,
    "groups": 200,
    "assignment.G1": 40,
    "assignment.G2": 20,
    "assignment.G3": 10,
    "assignment.G4": 5,
}


def synthetic_score(choices: dict, rng: random.Random) -> float | None:
    if rng.random() < 0.05:
        return None  # a failed trial
    noise = rng.gauss(0, 1)
    return 50.0 + noise + sum(effect for c, effect in EFFECTS.items() if choices[c] == PLANTED[c])


def test_greedy_search_finds_the_planted_design() -> None:
    config = preset("quick", designs_per_stage=45, reference_stage=True, bootstrap_resamples=200)
    shape = minilm_shape()
    space = DesignSpace.initial(num_groups=config.num_groups)
    rng = random.Random(0)
    visited, decisions, failed = [], [], 0

    # Reference stage: the unconstrained space, nothing decided.
    batch = sample(
        space,
        config.designs_per_stage,
        seed=stage_seed(config.seed, REFERENCE.name),
        shape=shape,
        budget=config.budget,
    )
    reference = summarise(
        [TrialOutcome(d.choices, synthetic_score(d.choices, rng)) for d in batch.designs],
        component=None,
        stage=REFERENCE.name,
    )
    visited.append(REFERENCE.name)
    assert reference.overall.edf[-1][1] == 1.0

    while (stage := next_stage(space)) is not FINAL:
        visited.append(stage.name)
        batch = sample(
            space,
            config.designs_per_stage,
            seed=stage_seed(config.seed, stage.name),
            shape=shape,
            budget=config.budget,
            balance=stage.component,
        )
        outcomes = [
            TrialOutcome(d.choices, synthetic_score(d.choices, rng), d.index) for d in batch.designs
        ]
        summary = summarise(
            outcomes,
            component=stage.component,
            open_choices=space.open(stage.component),
            stage=stage.name,
            seed=config.seed,
            resamples=config.bootstrap_resamples,
            min_successes=config.min_successes,
        )
        failed += summary.failed
        recommended = summary.recommendation.choice
        assert recommended == PLANTED[stage.component], summary.to_dict()["recommendation"]
        before = space
        space, decision = refine(
            space, stage.component, recommended, decided_by="auto", recommended=recommended
        )
        assert [c.component for c in diff(before, space)] == [stage.component]
        decisions.append(decision.to_dict())

    assert visited == ["S0", "S1", "S2", "S3", "S4.G1", "S4.G2", "S4.G3", "S4.G4"]
    assert final_choices(space) == PLANTED
    assert [d["stage"] for d in decisions] == visited[1:]
    assert failed > 0  # failures happened and were excluded, not averaged


def test_quick_preset_trains_every_choice_and_reaches_the_final_stage() -> None:
    # Each stage trains min_successes designs per open choice (planning.stage_plan raises the
    # quick preset's 8 to 30 for 15 choices), so every choice is compared and an auto-approved
    # quick search runs to the end without discarding any choice untried.
    config = preset("quick")
    shape = minilm_shape()
    space = DesignSpace.initial(num_groups=config.num_groups, num_layers=shape.num_layers)
    rng = random.Random(1)
    statuses = []
    while (stage := next_stage(space)) is not FINAL:
        plan = stage_plan(config, space)
        batch = sample(
            space,
            plan.designs,
            seed=stage_seed(config.seed, stage.name),
            shape=shape,
            budget=config.budget,
            balance=plan.balance,
            stratify=plan.stratify,
            min_per_choice=plan.min_per_choice,
        )
        assert len(batch.designs) == plan.designs >= config.designs_per_stage
        counts = Counter(d.choices[stage.component] for d in batch.designs)
        trainable = [c for c in space.open(stage.component) if c not in batch.untried]
        assert all(counts[c] >= config.min_successes for c in trainable), counts
        assert batch.infeasible_choices == tuple(batch.untried)
        outcomes = [
            TrialOutcome(d.choices, 50.0 + rng.gauss(0, 5)) for d in batch.designs
        ]  # no failures here: this checks coverage, not robustness
        summary = summarise(
            outcomes,
            component=stage.component,
            open_choices=space.open(stage.component),
            min_successes=config.min_successes,
            resamples=config.bootstrap_resamples,
            aliases=space.aliases(stage.component),
            infeasible=batch.infeasible_choices,
        )
        rec = summary.recommendation
        statuses.append(rec.status)
        assert rec.auto_approvable, rec.reason
        space, _ = refine(
            space, stage.component, rec.choice, decided_by="auto", recommended=rec.choice
        )
    # S1, S2, S3, then one S4 stage per group S3 chose to tune
    tuned = len(space.open("groups")[0].split("+"))
    assert len(statuses) == 3 + tuned and "insufficient" not in statuses
