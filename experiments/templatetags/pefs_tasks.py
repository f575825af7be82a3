"""Tasks on the new-search form: which cannot run here, and why (issue 12: MNLI and QQP were offered
offline, and the search failed when its first trial loaded them).

    {% load pefs_tasks %}
    {% with reason=box.data.value.instance|task_unavailable %}{% if reason %}...{% endif %}{% endwith %}
    {% task_evaluation task as evaluation %}  (reads the task's files: for the upload's answer only)
"""
from __future__ import annotations

from typing import Any

from django import template

from experiments.models import Task
from experiments.reports import SMALL_EVALUATION, one_example_points
from experiments.services.catalog import task_evaluation_sizes, task_unavailable_reason

register = template.Library()


@register.filter
def task_unavailable(task: Task | None) -> str:
    """Why a search cannot use the task here ("" when it can)."""
    if not isinstance(task, Task):
        return ""
    return task_unavailable_reason(task) or ""


@register.simple_tag
def task_evaluation(task: Task) -> dict[str, list[dict[str, Any]]]:
    """``{"sets": [...], "too_small": [...]}``: each evaluation role of the task with its examples
    and what one example is worth; those under SMALL_EVALUATION examples cannot separate designs."""
    sets = [{"role": role, "examples": examples, "points": one_example_points(examples, task.metric),
             "too_small": examples < SMALL_EVALUATION}
            for role, examples in task_evaluation_sizes(task).items()]
    return {"sets": sets, "too_small": [entry for entry in sets if entry["too_small"]]}
