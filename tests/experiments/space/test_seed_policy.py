"""Common random numbers: a stage's designs share one data seed; each keeps its own PEFT seed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experiments.space.compiling import Budget
from experiments.space.errors import SpaceError
from experiments.space.final import final_plan
from experiments.space.sampling import sample, stage_data_seed
from experiments.space.space import DesignSpace
from experiments.space.stages import stage_seed
from tests.experiments.space.paper import PAPER_S4
from tests.experiments.space.shapes import minilm_shape


def test_every_design_of_a_stage_shares_the_data_seed_and_keeps_its_own_seed() -> None:
    space = DesignSpace.initial(num_groups=4, num_layers=6)
    seed = stage_seed(3, "S1")
    batch = sample(space, 8, seed=seed, shape=minilm_shape(), balance="grouping")
    data_seeds = {d.data_seed for d in batch.designs}
    assert data_seeds == {stage_data_seed(seed)}
    assert len({d.seed for d in batch.designs}) == 8  # PEFT init differs per design
    assert stage_data_seed(seed) not in {d.seed for d in batch.designs}
    for d in batch.designs:
        assert d.design["seed"] == d.seed
        assert d.design["provenance"]["sample"]["data_seed"] == d.data_seed
        assert d.to_dict()["data_seed"] == d.data_seed


def test_stages_get_different_data_seeds_and_reruns_the_same() -> None:
    space = DesignSpace.initial(num_groups=4, num_layers=6)

    def data_seed(search_seed: int, stage: str) -> int:
        batch = sample(space, 2, seed=stage_seed(search_seed, stage), shape=minilm_shape())
        return batch.designs[0].data_seed

    assert data_seed(0, "S1") == data_seed(0, "S1")
    assert len({data_seed(0, "S1"), data_seed(0, "S2"), data_seed(1, "S1")}) == 3


def test_repeats_share_the_data_seed_with_a_new_design_seed() -> None:
    space = DesignSpace.initial(num_groups=4)
    for component, choice in list(PAPER_S4.items())[:-1]:
        space = space.restrict(component, [choice])
    batch = sample(space, 20, seed=4, shape=minilm_shape())
    repeat = batch.designs[15]
    original = batch.designs[repeat.repeat_of]
    assert repeat.data_seed == original.data_seed and repeat.seed != original.seed


def test_an_explicit_data_seed_is_carried_and_checked() -> None:
    space = DesignSpace.initial(num_groups=2)
    batch = sample(space, 3, seed=0, shape=minilm_shape(), data_seed=42)
    assert {d.data_seed for d in batch.designs} == {42}
    with pytest.raises(SpaceError) as info:
        sample(space, 3, seed=0, shape=minilm_shape(), data_seed=-1)
    assert info.value.field == "data_seed"


def test_the_data_seed_is_stable_across_processes() -> None:
    # str hashing is salted per process; the derivation must not depend on it.
    code = "from experiments.space.sampling import stage_data_seed; print(stage_data_seed(12345))"
    env = {**os.environ, "PYTHONHASHSEED": "987"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
        cwd=os.getcwd(),
    )
    assert int(out.stdout) == stage_data_seed(12345)


def test_final_arms_of_a_replicate_share_the_data_seed() -> None:
    space = DesignSpace.initial(num_groups=4)
    for component, choice in PAPER_S4.items():
        space = space.restrict(component, [choice])
    plan = final_plan(space, shape=minilm_shape(), budget=Budget(), tasks=["sst2"], seeds=2)
    by_seed: dict[int, set[int]] = {}
    for run in plan.runs:
        by_seed.setdefault(run.seed, set()).add(run.data_seed)
        assert run.to_dict()["data_seed"] == run.data_seed
    assert by_seed == {0: {0}, 1: {1}}
