"""The space's labels, the template tags and the page's JSON all read the strategy registry.

Registering a temporary fifth strategy (the way a real one is added: one descriptor in
``tasks.peft.strategies``) must reach every consumer with no other change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from experiments.space.subsets import (
    parse_strategies,
    strategies_label,
    strategy_subsets,
)
from experiments.templatetags.pefs_format import (
    STRATEGIES_JSON_ID,
    design_codes,
    design_strip,
    pefs_strategies,
    strategy_legend,
)
from tasks.peft import strategies
from tasks.peft.strategies import Strategy, StrategyOptions

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True, kw_only=True)
class _ScaleOptions(StrategyOptions):
    pass


@pytest.fixture
def fifth_strategy():
    scale = strategies.register(
        Strategy(
            name="scale",
            code="S",
            label="Scale",
            colour="#123456",
            options_class=_ScaleOptions,
            cost=lambda layer, targets: (0, layer.hidden_size),
            implementation="nowhere",
            sized=False,
        )
    )
    try:
        yield scale
    finally:
        strategies.unregister("scale")


def _embedded_json(html: str) -> dict:
    match = re.search(rf'<script id="{STRATEGIES_JSON_ID}" type="application/json">(.*?)</script>', html)
    assert match, html
    return json.loads(match.group(1))


def test_every_consumer_lists_the_registered_strategies():
    codes = [s.code for s in strategies.registered()]
    assert strategy_subsets()[: len(codes)] == tuple(codes)
    assert len(strategy_subsets()) == 2 ** len(codes) - 1
    assert parse_strategies("+".join(codes)) == strategies.names()
    html = str(pefs_strategies())
    assert _embedded_json(html) == strategies.ui_description()
    for s in strategies.registered():
        assert f"--c-{s.name}:{s.colour};" in html and f".strip i.{s.code}{{" in html
        assert f">{s.label}</span>" in str(strategy_legend())


def test_a_fifth_strategy_reaches_space_tags_and_json(fifth_strategy):
    assert len(strategy_subsets()) == 31 and strategy_subsets()[4] == "S"
    assert parse_strategies("A+S") == ("adapter", "scale")
    assert strategies_label(["scale", "lora"]) == "L+S"
    design = {"layers": [{"adapter": 2, "scale": True}, {}]}
    assert design_codes(design) == ["AS", ""]
    strip = str(design_strip(design))
    assert strip.count("<i") == 10 and "repeat(5,5px)" in strip
    assert _embedded_json(str(pefs_strategies()))["scale"] == {
        "code": "S", "label": "Scale", "colour": "#123456",
    }
    assert "Scale" in str(strategy_legend())


def test_after_unregistering_the_space_has_fifteen_subsets_again(fifth_strategy):
    strategies.unregister("scale")
    try:
        assert len(strategy_subsets()) == 15
    finally:
        strategies.register(fifth_strategy)


def test_charts_take_strategy_colours_from_the_page():
    charts = (ROOT / "static/pefs/js/charts.js").read_text()
    assert 'getElementById("pefs-strategies")' in charts
    for s in strategies.registered():
        assert not re.search(rf"\b{s.name}\s*:", charts), f"charts.js maps {s.name} itself again"
    base = (ROOT / "templates/base.html").read_text()
    assert "{% pefs_strategies %}" in base
