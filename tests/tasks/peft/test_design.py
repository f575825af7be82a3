"""The pefs.design/1 document: validation naming fields, exact round trips (pure Python)."""

from __future__ import annotations

import copy
import json

import pytest

from tasks.peft.budget import layer_params, solve_sizes
from tasks.peft.design import (
    SCHEMA,
    Design,
    DesignError,
    DesignOptions,
    HeadSpec,
    design_from_sizes,
)
from tests.tasks.peft.shapes import bert_like_shape, t5_like_shape

BERT = bert_like_shape()


def s4_design() -> Design:
    groups = [
        {"adapter", "lora"},
        {"adapter", "prefix"},
        {"adapter", "prefix", "bitfit"},
        {"prefix", "bitfit", "lora"},
    ]
    layer_groups = [0, 1, 1, 2, 2, 3]
    target = 0.005 * BERT.total_params
    solved = solve_sizes(
        {i: target / 6 for i in range(6)}, {i: groups[g] for i, g in enumerate(layer_groups)}, BERT
    )
    return design_from_sizes(
        BERT,
        solved.sizes,
        seed=7,
        provenance={"trial": 3, "groups": [1, 2, 2, 1]},
        head=HeadSpec("classification", 2),
    )


def test_design_from_sizes_fills_exact_counts():
    design = s4_design()
    for i, layer in enumerate(design.layers):
        assert design.trainable_parameters.per_layer[i] == layer_params(layer, BERT.layers[i])
    assert design.trainable_parameters.peft_total == sum(design.trainable_parameters.per_layer)
    design.check_against(BERT)


def test_round_trip_is_exact_through_json():
    design = s4_design()
    d = design.to_dict()
    assert d["schema"] == SCHEMA
    again = Design.from_json(json.dumps(d))
    assert again == design
    assert again.to_dict() == d
    assert json.loads(design.to_json()) == d


def test_defaults_for_missing_options_and_head():
    d = s4_design().to_dict()
    del d["options"], d["head"], d["provenance"]
    design = Design.from_dict(d)
    assert design.options == DesignOptions()
    assert design.head is None
    assert design.to_dict()["options"] == {
        "adapter": {"activation": "relu"},
        # mlp_hidden absent: the MLP is sized by the rule (a prefix trains no more than it stores)
        "prefix": {"reparameterize": True},
        "lora": {"alpha": 16, "dropout": 0.0, "targets": ["query", "value"]},
    }


def _mutated(path_fn):
    d = s4_design().to_dict()
    path_fn(d)
    return d


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["layers"][1].update(ia3=4), "layers[1].ia3"),
        (lambda d: d["layers"][0].update(adapter=0), "layers[0].adapter"),
        (lambda d: d["layers"][0].update(lora=-2), "layers[0].lora"),
        (lambda d: d["layers"][0].update(lora=2.5), "layers[0].lora"),
        (lambda d: d["layers"][3].update(bitfit=False), "layers[3].bitfit"),
        (lambda d: d["layers"].append({}), "layers"),
        (lambda d: d.update(schema="pefs.design/2"), "schema"),
        (lambda d: d.update(seed=-1), "seed"),
        (lambda d: d.pop("backbone"), "backbone"),
        (lambda d: d["backbone"].update(num_layers=0), "backbone.num_layers"),
        (lambda d: d.update(head={"problem": "ranking", "num_labels": 2}), "head.problem"),
        (lambda d: d.update(head={"problem": "regression", "num_labels": 3}), "head.num_labels"),
        (lambda d: d["options"]["lora"].update(alpha=0), "options.lora.alpha"),
        (lambda d: d["options"]["lora"].update(targets=["gate"]), "options.lora.targets"),
        (lambda d: d["options"]["lora"].update(dropout=1.0), "options.lora.dropout"),
        (
            lambda d: d["options"]["adapter"].update(activation="swish2"),
            "options.adapter.activation",
        ),
        (lambda d: d["options"]["prefix"].update(mlp_hidden=0), "options.prefix.mlp_hidden"),
        (lambda d: d["options"].update(ia3={}), "options.ia3"),
        (
            lambda d: d["trainable_parameters"].update(peft_total=1),
            "trainable_parameters.peft_total",
        ),
        (
            lambda d: d["trainable_parameters"]["per_layer"].__setitem__(0, 0),
            "trainable_parameters.per_layer[0]",
        ),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_bad_documents_name_the_field(mutate, field):
    with pytest.raises(DesignError) as err:
        Design.from_dict(_mutated(mutate))
    assert err.value.field == field
    assert field in str(err.value)


def test_check_against_catches_wrong_counts_and_backbones():
    d = s4_design().to_dict()
    d["trainable_parameters"]["per_layer"][2] += 1
    d["trainable_parameters"]["peft_total"] += 1
    with pytest.raises(DesignError) as err:
        Design.from_dict(d).check_against(BERT)
    assert err.value.field == "trainable_parameters.per_layer[2]"
    with pytest.raises(DesignError) as err:
        s4_design().check_against(t5_like_shape())
    assert err.value.field == "backbone.num_layers"


def test_design_from_sizes_rejects_out_of_range_layer():
    with pytest.raises(DesignError) as err:
        design_from_sizes(BERT, {6: {"lora": 2}}, seed=0)
    assert err.value.field == "layers[6]"


def test_accessors():
    design = s4_design()
    assert design.strategies_at(0) == ("adapter", "lora")
    assert design.size(3, "bitfit") == 1 and design.size(0, "prefix") == 0
    assert design.strategies_used == ("adapter", "prefix", "bitfit", "lora")
    # Frozen and hashable-free dict content is not shared with the caller's input.
    d = s4_design().to_dict()
    before = copy.deepcopy(d)
    Design.from_dict(d)
    assert d == before


def test_old_documents_with_every_option_written_still_load():
    """pefs.design/1 as written before per-strategy rates: fixed MLP width, no bitfit group."""
    d = s4_design().to_dict()
    d["options"] = {
        "adapter": {"activation": "relu"},
        "prefix": {"reparameterize": True, "mlp_hidden": 512},
        "lora": {"alpha": 16, "dropout": 0.0, "targets": ["query", "value"]},
    }
    design = Design.from_dict(d)
    assert design.options.prefix.mlp_hidden == 512  # an explicit width is honoured
    assert design.options.bitfit.learning_rate is None
    assert design.to_dict()["options"] == d["options"]


def test_per_strategy_learning_rates_round_trip_and_are_checked():
    d = s4_design().to_dict()
    d["options"]["prefix"]["learning_rate"] = 0.01
    d["options"]["bitfit"] = {"learning_rate": 0.003}
    design = Design.from_dict(d)
    assert design.options.prefix.learning_rate == 0.01
    assert design.options.bitfit.learning_rate == 0.003
    assert design.options.adapter.learning_rate is None
    assert Design.from_dict(design.to_dict()) == design
    assert design.to_dict()["options"]["bitfit"] == {"learning_rate": 0.003}
    for bad in (0, -1e-3, 2.0, "fast", True):
        d["options"]["lora"]["learning_rate"] = bad
        with pytest.raises(DesignError) as err:
            Design.from_dict(d)
        assert err.value.field == "options.lora.learning_rate"
