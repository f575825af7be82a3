"""Formatting for PEFS pages: numbers, scores, durations, local times, design strips.

Times are rendered as <time datetime="ISO"> in UTC and rewritten by pefs.js into the reader's
locale, so the server never guesses a time zone. Strategy letters, labels and colours come from
the strategy registry (``tasks.peft.strategies``); ``{% pefs_strategies %}`` (in base.html) hands
them to the page's CSS and JavaScript.
"""
from __future__ import annotations

import datetime as dt
import math

from django import template
from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join, json_script
from django.utils.safestring import mark_safe

from experiments.rungs import rung_label
from tasks.peft.strategies import registered as registered_strategies
from tasks.peft.strategies import ui_description

register = template.Library()

STRATEGIES_JSON_ID = "pefs-strategies"
DASH = "—"


@register.filter
def compact(value) -> str:
    """22713216 -> "22.7M", 113568 -> "114k", 950 -> "950"."""
    if value is None or value == "":
        return DASH
    number = float(value)
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= threshold:
            scaled = number / threshold
            return f"{scaled:.1f}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    return f"{number:.0f}"


@register.filter
def score(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{float(value):.{int(digits)}f}"


@register.filter
def rate(value) -> str:
    """A learning rate as people write it: 0.003 -> "0.003", 5e-05 -> "5e-05"."""
    if value is None or value == "":
        return DASH
    return f"{float(value):g}"


@register.filter
def percent(fraction, digits: int = 2) -> str:
    """0.005 -> "0.50%"."""
    if fraction is None:
        return DASH
    return f"{float(fraction) * 100:.{int(digits)}f}%"


@register.filter
def duration(seconds) -> str:
    """83 -> "1m 23s", 7500 -> "2h 05m"."""
    if seconds is None:
        return DASH
    if isinstance(seconds, dt.timedelta):
        seconds = seconds.total_seconds()
    seconds = max(0, int(round(float(seconds))))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


PARAMS_TITLE = ("stored: PEFT parameters the design keeps, the budget's count; trains: every parameter the "
                "optimiser updates, the task head and a prefix's reparameterisation included")


@register.simple_tag
def param_counts(stored, optimised=None):
    """Both parameter counts, labelled: "stored 112,827 · trains 261,437" (trains: "—" until the
    trial has trained). pefs.js's PEFS.formatParams writes the same markup for live rows."""
    def number(value):
        return DASH if value is None or value == "" else f"{int(value):,}"
    return format_html('<span class="param-counts" title="{}"><span data-count="stored">stored {}</span> · '
                       '<span data-count="trains">trains {}</span></span>', PARAMS_TITLE, number(stored),
                       number(optimised))


@register.simple_tag
def elapsed(start, end=None) -> str:
    """Duration from start to end (or now, for something still running)."""
    if start is None:
        return DASH
    return duration(((end or timezone.now()) - start).total_seconds())


@register.filter
def localtime(value, style: str = "datetime"):
    """<time> element that pefs.js formats in the reader's locale; UTC text without JavaScript."""
    if value is None:
        return DASH
    value = timezone.localtime(value, dt.UTC)
    return format_html('<time datetime="{}" data-style="{}">{} UTC</time>',
                       value.isoformat(), style, value.strftime("%Y-%m-%d %H:%M"))


@register.filter(name="rung_label")
def rung_label_filter(trial) -> str:
    """Successive halving: 'rung 2 of 2 (3 epochs)', 'halted after rung 1 of 2 (1 epoch)', or ''."""
    return rung_label(trial)


@register.filter
def status_badge(status: str):
    labels = {"awaiting": "waiting for approval", "waiting": "waiting for approval"}
    return format_html('<span class="badge s-{}">{}</span>', status, labels.get(status, status))


def design_codes(design: dict | None) -> list[str]:
    """Per layer, the strategy codes it carries: ["AL", "", "PB", ...]."""
    layers = (design or {}).get("layers") or []
    strategies = registered_strategies()
    return ["".join(s.code for s in strategies if layer.get(s.name)) for layer in layers]


@register.filter
def design_strip(design: dict | None):
    """A compact layer x strategy strip: one column per layer, one row per strategy (A, P, B, L)."""
    codes = design_codes(design)
    if not codes:
        return DASH
    strategies = registered_strategies()
    # One escape per strategy code, not per cell: the table draws a strip in every row (issue 14).
    cell = {s.code: f'<i class="{escape(s.code)}"></i>' for s in strategies}
    empty = '<i class=""></i>'
    cells = "".join(cell[s.code] if s.code in layer else empty for layer in codes for s in strategies)
    title = escape(" ".join(f"L{i + 1}:{c or '-'}" for i, c in enumerate(codes)))
    return mark_safe(f'<span class="strip" style="grid-template-rows:repeat({len(strategies)},5px)" '  # noqa: S308
                     f'title="{title}" aria-label="design {title}">{cells}</span>')


@register.simple_tag
def pefs_strategies():
    """Every strategy's code, label and colour for the page: JSON for the charts (read by
    charts.js from #pefs-strategies) and CSS variables ``--c-<name>`` plus strip cell colours."""
    strategies = registered_strategies()
    variables = format_html_join("", "--c-{}:{};", ((s.name, s.colour) for s in strategies))
    cells = format_html_join("", ".strip i.{}{{background:var(--c-{})}}",
                             ((s.code, s.name) for s in strategies))
    return format_html("{}<style>:root{{{}}}{}</style>", json_script(ui_description(), STRATEGIES_JSON_ID),
                       variables, cells)


@register.simple_tag
def strategy_legend():
    """The strategy colour legend: one swatch and label per strategy."""
    return format_html_join("", '<span style="--c:var(--c-{})">{}</span>',
                            ((s.name, s.label) for s in registered_strategies()))


@register.filter
def get_item(mapping, key):
    if mapping is None:
        return None
    try:
        return mapping.get(key)
    except AttributeError:
        return None
