from __future__ import annotations

import pytest

from experiments.space.compiling import Budget
from experiments.space.errors import SpaceError
from experiments.space.final import FinalResult, final_plan, results_table
from experiments.space.space import DesignSpace
from experiments.space.transfer import transfer
from tests.experiments.space.paper import paper_space
from tests.experiments.space.shapes import bert_base_shape, minilm_shape


def test_final_plan_compares_selected_with_baselines_at_the_same_budget() -> None:
    shape = minilm_shape()
    plan = final_plan(paper_space(), shape=shape, budget=Budget(), tasks=["rte", "sst2"], seeds=3)
    assert plan.arms == ("selected", "adapter", "prefix", "bitfit", "lora", "full")
    assert len(plan.runs) == 6 * 2 * 3
    for arm in ("selected", "adapter", "prefix", "lora"):
        assert abs(plan.parameters[arm] - plan.target) <= 0.02 * plan.target, arm
    assert plan.parameters["bitfit"] == 6 * (7 * 384 + 1536)
    assert plan.parameters["full"] == shape.total_params
    assert any("bitfit" in note for note in plan.notes)
    adapter_run = next(r for r in plan.runs if r.arm == "adapter")
    assert all(set(layer) == {"adapter"} for layer in adapter_run.design["layers"])
    assert next(r for r in plan.runs if r.arm == "full").design is None
    assert {r.seed for r in plan.runs if r.arm == "selected" and r.task == "rte"} == {0, 1, 2}


def test_final_plan_needs_a_decided_space_and_tasks() -> None:
    with pytest.raises(SpaceError) as info:
        final_plan(DesignSpace.initial(), shape=minilm_shape(), budget=Budget(), tasks=["rte"])
    assert info.value.field == "space"
    with pytest.raises(SpaceError) as info:
        final_plan(paper_space(), shape=minilm_shape(), budget=Budget(), tasks=[])
    assert info.value.field == "tasks"


def test_results_table_by_hand() -> None:
    results = [
        FinalResult("selected", "rte", 0, 70.0),
        FinalResult("selected", "rte", 1, 72.0),
        FinalResult("selected", "sst2", 0, 90.0),
        FinalResult("selected", "sst2", 1, 92.0),
        FinalResult("lora", "rte", 0, 60.0),
        FinalResult("lora", "rte", 1, None),
        FinalResult("lora", "sst2", 0, 88.0),
        FinalResult("lora", "sst2", 1, 86.0),
    ]
    table = results_table(results, parameters={"selected": 100, "lora": 99})
    selected, lora = table["rows"]
    assert selected["per_task"]["rte"] == {
        "mean": 71.0,
        "std": pytest.approx(2**0.5),
        "n": 2,
        "failed": 0,
    }
    # per-seed averages 80 and 82 -> mean 81, std sqrt(2)
    assert selected["average"] == {"mean": 81.0, "std": pytest.approx(2**0.5), "seeds": 2}
    assert lora["per_task"]["rte"] == {"mean": 60.0, "std": None, "n": 1, "failed": 1}
    assert lora["average"] == {"mean": 73.5, "std": None, "seeds": 1}
    assert table["best"] == "selected" and selected["parameters"] == 100


def test_transfer_to_a_deeper_backbone_re_solves_sizes() -> None:
    space = paper_space()
    small = transfer(space, shape=minilm_shape(), budget=Budget())
    large = transfer(space, shape=bert_base_shape(), budget=Budget())
    assert len(large.design.layers) == 12 and len(small.design.layers) == 6
    assert large.design.provenance["group_layers"] == [[0, 1], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]
    assert abs(large.parameters - round(0.005 * 109_482_240)) <= 0.02 * large.target
    # a design document carries its choices, so it transfers on its own
    again = transfer(small.design.to_dict(), shape=bert_base_shape(), budget=Budget())
    assert again.design.layers == large.design.layers
    assert again.design.provenance["transfer"] == {"from": "sentence-transformers/all-MiniLM-L6-v2"}


def test_transfer_rejects_too_few_layers() -> None:
    # Given choices over 8 groups, when compiled on a 6-layer backbone, then G > L is named
    choices = {"grouping": "uniform", "allocation": "uniform", "groups": "G1", "assignment.G1": "A"}
    with pytest.raises(SpaceError) as info:
        transfer(choices, num_groups=8, shape=minilm_shape(), budget=Budget())
    assert info.value.field == "num_groups"
    with pytest.raises(SpaceError) as info:
        transfer(choices, shape=minilm_shape(), budget=Budget())
    assert info.value.field == "num_groups"
