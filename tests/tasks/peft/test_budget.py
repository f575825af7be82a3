"""Closed-form counts and the budget solver (pure Python, hypothesis property tests)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tasks.peft.budget import (
    STRATEGIES,
    BackboneShape,
    BudgetError,
    InfeasibleBudget,
    layer_params,
    solve_sizes,
    strategy_params,
)
from tests.tasks.peft.shapes import bert_like_shape, t5_like_shape

BERT = bert_like_shape()
T5 = t5_like_shape()


def test_closed_forms_per_strategy():
    layer = BERT.layers[0]
    assert strategy_params("adapter", 8, layer) == 2 * 384 * 8 + 8 + 384
    assert strategy_params("prefix", 5, layer) == 2 * 5 * 384
    assert strategy_params("bitfit", 1, layer) == 7 * 384 + 1536
    assert strategy_params("lora", 4, layer) == 4 * (384 + 384) * 2
    assert (
        strategy_params("lora", 4, layer, lora_targets=("query", "key", "value", "output"))
        == 4 * 768 * 4
    )
    t5_layer = T5.layers[0]
    assert strategy_params("prefix", 3, t5_layer) == 2 * 3 * 48
    assert strategy_params("lora", 2, t5_layer, lora_targets=("output",)) == 2 * (48 + 32)
    assert layer_params({"adapter": 8, "bitfit": True}, layer) == (
        strategy_params("adapter", 8, layer) + layer.bitfit_params
    )


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "3"])
def test_bad_sizes_name_the_field(size):
    with pytest.raises(BudgetError) as err:
        strategy_params("adapter", size, BERT.layers[0])
    assert err.value.field == "size"


def test_unknown_strategy_and_target():
    with pytest.raises(BudgetError) as err:
        strategy_params("ia3", 1, BERT.layers[0])
    assert err.value.field == "strategy"
    with pytest.raises(BudgetError) as err:
        strategy_params("lora", 1, BERT.layers[0], lora_targets=("gate",))
    assert err.value.field == "lora_targets"


def test_shape_round_trips_through_json():
    import json

    for shape in (BERT, T5):
        assert BackboneShape.from_dict(json.loads(json.dumps(shape.to_dict()))) == shape


def test_budget_module_never_imports_torch():
    code = (
        "import sys, tasks.peft.budget, tasks.peft.design, tasks.peft; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bitfit_only_leftover_is_redistributed_in_proportion():
    # Layer 0 carries only BitFit; its unspent budget goes to layers 1 and 2 (1:3 by budget).
    budgets = {0: 20_000.0, 1: 10_000.0, 2: 30_000.0}
    solved = solve_sizes(budgets, {0: {"bitfit"}, 1: {"lora"}, 2: {"lora"}}, BERT)
    spare = 20_000 - BERT.layers[0].bitfit_params
    assert solved.sizes[0] == {"bitfit": 1}
    assert solved.sizes[1]["lora"] == pytest.approx((10_000 + spare / 4) / 1536, abs=1)
    assert solved.sizes[2]["lora"] == pytest.approx((30_000 + spare * 3 / 4) / 1536, abs=1)
    assert abs(solved.total - 60_000) <= 0.02 * 60_000


def test_equal_split_between_strategies_on_a_layer():
    solved = solve_sizes({0: 60_000.0}, {0: {"adapter", "lora", "bitfit"}}, BERT)
    share = (60_000 - BERT.layers[0].bitfit_params) / 2
    assert solved.sizes[0]["adapter"] == pytest.approx((share - 384) / 769, abs=1)
    assert solved.sizes[0]["lora"] == pytest.approx(share / 1536, abs=1)


def test_infeasible_names_the_strategy_field():
    with pytest.raises(InfeasibleBudget) as err:
        solve_sizes({0: 20_000.0, 3: 500.0}, {0: {"adapter"}, 3: {"lora", "prefix"}}, BERT)
    assert err.value.field in ("layers[3].prefix", "layers[3].lora")


def test_infeasible_total_names_budget():
    # Only BitFit: the total is fixed by the architecture and far from this target.
    with pytest.raises(InfeasibleBudget) as err:
        solve_sizes({0: 100_000.0}, {0: {"bitfit"}}, BERT)
    assert err.value.field == "budget"


def test_out_of_range_layer_is_rejected():
    with pytest.raises(BudgetError) as err:
        solve_sizes({6: 1000.0}, {6: {"lora"}}, BERT)
    assert err.value.field == "layer_budgets[6]"
    with pytest.raises(BudgetError) as err:
        solve_sizes({0: 1000.0}, {0: {"dora"}}, BERT)
    assert err.value.field == "layers[0]"


strategy_sets = st.sets(st.sampled_from(STRATEGIES), min_size=0, max_size=4)


@settings(max_examples=200, deadline=None)
@given(
    fraction=st.floats(min_value=0.0005, max_value=0.05),
    assignment=st.lists(strategy_sets, min_size=6, max_size=6),
    weights=st.lists(st.floats(min_value=0.2, max_value=5.0), min_size=6, max_size=6),
)
def test_solver_properties(fraction, assignment, weights):
    """Sizes are positive integers, the total lands within 2% -- or InfeasibleBudget is raised."""
    tuned = [i for i, s in enumerate(assignment) if s]
    assume(tuned)
    target = fraction * BERT.total_params
    weight_sum = sum(weights[i] for i in tuned)
    budgets = {i: target * weights[i] / weight_sum for i in tuned}
    strategies = {i: assignment[i] for i in tuned}
    # With every strategy's share worth >= 25 units, rounding cannot miss 2%: must be feasible.
    units = {"adapter": 769, "prefix": 768, "lora": 1536}
    comfortable = all(
        (budgets[i] - BERT.layers[i].bitfit_params * ("bitfit" in s)) / len(s - {"bitfit"})
        >= 25 * max(units[x] for x in s - {"bitfit"})
        for i, s in strategies.items()
        if s - {"bitfit"}
    ) and all(s - {"bitfit"} for s in strategies.values())
    try:
        solved = solve_sizes(budgets, strategies, BERT)
    except InfeasibleBudget as exc:
        assert exc.field == "budget" or exc.field.startswith("layers[")
        assert not comfortable
        return
    assert abs(solved.total - solved.target) <= 0.02 * solved.target
    for i, layer_sizes in solved.sizes.items():
        assert set(layer_sizes) == set(strategies[i])
        for s, v in layer_sizes.items():
            assert isinstance(v, int) and v >= 1
            if s == "bitfit":
                assert v == 1
        assert solved.per_layer[i] == layer_params(layer_sizes, BERT.layers[i])
    assert solved.total == sum(solved.per_layer.values())


@settings(max_examples=100, deadline=None)
@given(
    assignment=st.lists(strategy_sets.filter(lambda s: s - {"bitfit"}), min_size=4, max_size=4),
    scale=st.floats(min_value=0.01, max_value=0.45),
)
def test_targets_below_the_minimum_are_rejected(assignment, scale):
    """A target below what size 1 of every chosen strategy costs is always infeasible."""
    minimum = sum(layer_params({s: 1 for s in a}, T5.layers[i]) for i, a in enumerate(assignment))
    target = scale * minimum
    budgets = {i: target / 4 for i in range(4)}
    with pytest.raises(InfeasibleBudget):
        solve_sizes(budgets, dict(enumerate(assignment)), T5)


@settings(max_examples=100, deadline=None)
@given(fraction=st.floats(min_value=0.003, max_value=0.02))
def test_paper_s4_assignment_is_feasible_at_half_a_percent(fraction):
    """The paper's S4 pattern (A+L, A+P, A+P+B, P+B+L over spindle groups) solves within 2%."""
    groups = [
        {"adapter", "lora"},
        {"adapter", "prefix"},
        {"adapter", "prefix", "bitfit"},
        {"prefix", "bitfit", "lora"},
    ]
    layer_groups = [0, 1, 1, 2, 2, 3]
    target = fraction * BERT.total_params
    solved = solve_sizes(
        {i: target / 6 for i in range(6)}, {i: groups[g] for i, g in enumerate(layer_groups)}, BERT
    )
    assert abs(solved.total - solved.target) <= 0.02 * solved.target
