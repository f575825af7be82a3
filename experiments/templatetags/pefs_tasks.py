"""Tasks on the new-search form: which cannot run here, and why (issue 12: MNLI and QQP were offered
offline, and the search failed when its first trial loaded them).

    {% load pefs_tasks %}
    {% with reason=box.data.value.instance|task_unavailable %}{% if reason %}...{% endif %}{% endwith %}
"""
from __future__ import annotations

from django import template

from experiments.models import Task
from experiments.services.catalog import task_unavailable_reason

register = template.Library()


@register.filter
def task_unavailable(task: Task | None) -> str:
    """Why a search cannot use the task here ("" when it can)."""
    if not isinstance(task, Task):
        return ""
    return task_unavailable_reason(task) or ""
