"""The final report of a search, as JSON (for tools) and Markdown (for people)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .models import Search, Stage, Task, Trial
from .selectors import search_role_results, search_tasks, selected_design, stage_example_sets

# Fewer evaluation examples than this cannot separate designs: one example moves an accuracy by
# more than a point (issue 12: 3 held-out rows, and every design and baseline tied at 66.67).
SMALL_EVALUATION = 100
# Metrics on which one example moves the score by 100/n points: accuracy exactly, F1-and-accuracy
# (their mean) by about as much. Correlations (Matthews, Pearson/Spearman) move in other steps.
ACCURACY_LIKE = ("accuracy", "f1_accuracy")
# Means closer than this are equal (float noise).
TIE_TOLERANCE = 1e-6



def task_usage(task: Task, *, max_length: int) -> dict[str, Any]:
    """How a task's weights are used: its problem, text fields in order, the token limit it was trained
    with and its label map (output index -> label name; empty for regression, or for a hub task whose
    labels were read from the hub at training time). A three-field task also records
    ``text_template``: how training joined its first two fields into the text (the third is the pair,
    tasks.data.text_segments), so the usage snippet joins them the same way."""
    spec = task.spec or {}
    labels = list(spec.get("labels") or task.labels or [])
    names = list(spec.get("label_names") or [])
    names = names if len(names) == len(labels) else labels
    columns = list(spec.get("text_columns") or task.text_columns)
    usage = {"problem": task.problem, "text_columns": columns, "max_length": max_length,
             "labels": {str(index): str(name) for index, name in enumerate(names)}}
    if spec.get("text_template"):  # TaskSpec sets it for every three-field task
        usage["text_template"] = spec["text_template"]
    return usage


def design_document(search: Search) -> dict[str, Any] | None:
    """The selected design as downloaded: the design, with ``provenance.tasks`` for using it."""
    design = selected_design(search)
    if design is None:
        return None
    max_length = int((search.config or {}).get("max_length", 128))
    tasks = {task.name: task_usage(task, max_length=max_length) for task in search_tasks(search)}
    return {**design, "provenance": {**design.get("provenance", {}), "tasks": tasks}}


def one_example_points(examples: int | None, metric: str) -> float | None:
    """The smallest score difference an evaluation set of ``examples`` can resolve: one example is
    100/n points of an accuracy-like metric; None for other metrics or an unknown size.

    >>> one_example_points(3, "accuracy"), one_example_points(872, "accuracy")
    (33.333333333333336, 0.11467889908256881)
    """
    if metric not in ACCURACY_LIKE or not isinstance(examples, int) or examples < 1:
        return None
    return 100 / examples


def _examples(result: Any) -> int | None:
    """The evaluation set's size in a trial's stored per-task result or a stage's example sets."""
    if not isinstance(result, Mapping):
        return None
    described = result.get("eval_set") or result.get("eval")
    count = described.get("count") if isinstance(described, Mapping) else None
    count = count if isinstance(count, int) else result.get("eval_examples")
    return count if isinstance(count, int) else None


def evaluation_resolution(results: Mapping[str, Any], metrics: Mapping[str, str]) -> dict[str, Any]:
    """Per task, how many examples its scores were computed on, what one example is worth
    (``points``) and whether the set is too small to separate designs; and ``average``: one example's
    worth in the mean over the tasks (the finest task's points over the number of tasks; None when a
    task's metric has no such step); ``too_small``: the tasks whose set is too small.

    ``results``: per task, a trial's stored result (``eval_set``/``eval_examples``) or a stage's
    example sets (``eval``), as selectors.search_role_results and stage_example_sets give them.
    """
    tasks = []
    for task, result in results.items():
        examples = _examples(result)
        tasks.append({"task": task, "examples": examples, "points": one_example_points(examples, metrics.get(task, "")),
                      "too_small": examples is not None and examples < SMALL_EVALUATION})
    points = [t["points"] for t in tasks]
    average = min(points) / len(points) if points and None not in points else None
    return {"tasks": tasks, "by_task": {t["task"]: t for t in tasks}, "average": average,
            "too_small": [t for t in tasks if t["too_small"]]}


def search_resolution(search: Search, *, role: str = Trial.Role.REPORT) -> dict[str, Any]:
    """evaluation_resolution of the search's latest scores in ``role`` (the final table's: report)."""
    metrics = {task.name: task.metric for task in search_tasks(search)}
    return evaluation_resolution(search_role_results(search=search).get(role) or {}, metrics)


def stage_resolution(stage: Stage) -> dict[str, Any]:
    """evaluation_resolution of the examples a stage's trials were scored on (the selection set)."""
    metrics = {task.name: task.metric for task in search_tasks(stage.search)}
    return evaluation_resolution(stage_example_sets(stage=stage), metrics)


def final_separation(rows: list[Mapping[str, Any]], *, resolution: float | None) -> dict[str, Any]:
    """Whether one arm of the final table is best, by its average: ``{"best": arm or None,
    "tied_best": [arms], "separation": "best" | "tie" | "not_separable" | None}``.

    An arm is best only when every other average is lower by at least ``resolution`` (one example
    of the evaluation set, evaluation_resolution's ``average``): arms with the same mean are a
    "tie"; arms closer than one example are "not_separable". Either way none is badged best.

    >>> rows = [{"arm": "selected", "average": {"mean": 66.7}}, {"arm": "lora", "average": {"mean": 55.6}}]
    >>> final_separation(rows, resolution=33.3)["separation"], final_separation(rows, resolution=1.0)["best"]
    ('not_separable', 'selected')
    """
    means = {row["arm"]: row["average"]["mean"] for row in rows if row["average"]["mean"] is not None}
    if not means:
        return {"best": None, "tied_best": [], "separation": None}
    top = max(means.values())
    margin = max(resolution or 0.0, TIE_TOLERANCE)
    close = [arm for arm, mean in means.items() if top - mean < margin]
    if len(close) == 1:
        return {"best": close[0], "tied_best": [], "separation": "best"}
    equal = all(top - means[arm] < TIE_TOLERANCE for arm in close)
    return {"best": None, "tied_best": close, "separation": "tie" if equal else "not_separable"}


def report_json(search: Search) -> dict[str, Any]:
    """Everything a reader needs to trust the result: settings, every decision, the final table."""
    stages = list(search.stages.order_by("order"))
    final = next((s for s in stages if s.key == "final"), None)
    return {
        "search": {
            "id": search.pk, "name": search.name, "owner": search.owner.get_username(),
            "status": search.status, "created_at": search.created_at.isoformat(),
            "finished_at": search.finished_at.isoformat() if search.finished_at else None,
            "backbone": {"name_or_path": search.backbone.name_or_path, "layers": search.backbone.num_layers,
                         "parameters": search.backbone.total_params},
            "tasks": [t.name for t in search_tasks(search)],
            "budget": {"kind": search.budget_kind, "value": search.budget_value, "parameters": search.budget_params},
            "groups": search.groups, "preset": search.preset, "config": search.config,
        },
        "stages": [
            {
                "key": s.key, "component": s.component or None, "status": s.status,
                "trials": s.trials.count(),
                "stage_plan": (s.plan or {}).get("stage_plan"),
                "succeeded": s.trials.filter(status=Trial.Status.SUCCEEDED).count(),
                "recommendation": s.recommendation, "decision": s.decision,
                "decided_by": ("auto" if s.decided_automatically else
                               s.decided_by.get_username() if s.decided_by else None),
                "decided_at": s.decided_at.isoformat() if s.decided_at else None,
                "override_reason": s.override_reason or None,
                "summary": s.summary if s.key != "final" else None,
                "scored_on": stage_example_sets(stage=s, role=Trial.Role.SELECTION),
            }
            for s in stages
        ],
        "untrained_decisions": list(search.untrained_decisions or []),
        "final": {"plan": final.plan, "results": final.summary,
                  "scored_on": stage_example_sets(stage=final, role=Trial.Role.REPORT),
                  "resolution": search_resolution(search)} if final else None,
        "design": selected_design(search),
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _scored_on_lines(report: dict[str, Any]) -> list[str]:
    """Which examples each number was scored on: stages and tuning on the selection set, the final
    comparison on the report set, disjoint from it and from the training examples."""
    described = [(st["key"] if st["key"] != "final" else "final (learning-rate tuning)", task, sets)
                 for st in report["stages"] for task, sets in (st.get("scored_on") or {}).items()]
    final = report.get("final") or {}
    described += [("final (report runs)", task, sets) for task, sets in (final.get("scored_on") or {}).items()]
    if not described:
        return []
    lines = ["", "## What each number was scored on", ""]
    for where, task, sets in described:
        evaluation = (sets.get("eval") or {}).get("description") or "unknown"
        training = (sets.get("train") or {}).get("description")
        lines.append(f"- {where}, {task}: {evaluation}" + (f"; trained on {training}" if training else ""))
    return lines


def _resolution_lines(resolution: Mapping[str, Any], separation: Mapping[str, Any]) -> list[str]:
    """What one example of the report set is worth, a set too small to separate designs, and arms
    that no example separates."""
    lines = [f"- {t['task']}: {t['examples']:,} report examples; one example = {t['points']:.2f} points"
             + (" (too small to separate designs)" if t["too_small"] else "")
             for t in resolution.get("tasks") or [] if t["examples"] is not None and t["points"] is not None]
    if separation.get("tied_best"):
        how = "the same average" if separation["separation"] == "tie" else "averages less than one example apart"
        lines.append(f"- No best arm: {', '.join(separation['tied_best'])} have {how}.")
    return ["", *lines] if lines else []


def _learning_rate_lines(plan: dict[str, Any]) -> list[str]:
    """Each arm's learning-rate grid, its mean selection score per rate and the rate it kept."""
    tuning = plan.get("tuning")
    if not tuning:
        rates = plan.get("learning_rates") or {}
        shown = ", ".join(f"{arm} {rate:g}" for arm, rate in rates.items() if rate)
        return ["", f"Learning rates (not tuned): {shown}."] if shown else []
    lines = ["", "## Learning rate per arm (chosen on the selection set, then used on the report set)", "",
             "| arm | grid | mean selection score per rate | chosen |", "| --- | --- | --- | ---: |"]
    for arm, entry in tuning.items():
        scores = ", ".join(f"{float(rate):g}: {_fmt(score)}" for rate, score in entry["scores"].items())
        lines.append(f"| {arm} | {', '.join(f'{r:g}' for r in entry['grid'])} | {scores} | {entry['chosen']:g} |")
    return lines


def report_markdown(report: dict[str, Any]) -> str:
    s = report["search"]
    lines = [
        f"# PEFS search #{s['id']}: {s['name']}",
        "",
        f"- Backbone: `{s['backbone']['name_or_path']}` ({s['backbone']['layers']} layers, "
        f"{s['backbone']['parameters']:,} parameters)",
        f"- Tasks: {', '.join(s['tasks'])}",
        f"- Budget: {s['budget']['parameters']:,} trainable PEFT parameters "
        f"({s['budget']['parameters'] / s['backbone']['parameters']:.3%} of the backbone)",
        f"- Groups: {s['groups']}; preset: {s['preset']}; designs per stage: {s['config'].get('designs_per_stage')}, "
        f"epochs: {s['config'].get('epochs')}",
        f"- Status: {s['status']}; created {s['created_at']}; finished {s['finished_at'] or '-'}",
        "",
        "## Decisions",
        "",
        "| stage | decides | trials ok | recommended | chosen | by | reason |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for decision in report.get("untrained_decisions") or []:
        lines.append(f"| {decision['stage']} | {decision['component']} | not trained | - | "
                     f"{decision.get('label', decision['choice'])} | auto | {decision['reason'].replace('|', '/')} |")
    for st in report["stages"]:
        if st["key"] == "final":
            continue
        rec = (st["recommendation"] or {})
        rec_text = rec.get("choice") or "-"
        if rec.get("status") == "not_separable":
            rec_text += " (not separable)"
        elif rec.get("status") == "insufficient" and rec.get("leader"):
            rec_text = f"- (too few successes; leading: {rec['leader']})"
        decision = st["decision"] or {}
        lines.append(f"| {st['key']} | {st['component'] or 'reference'} | {st['succeeded']}/{st['trials']} | "
                     f"{rec_text} | {decision.get('label') or decision.get('choice', '-')} | {st['decided_by'] or '-'} | "
                     f"{(st['override_reason'] or '').replace('|', '/')} |")
    raised = [st for st in report["stages"] if (st.get("stage_plan") or {}).get("raised_from")]
    if raised:
        lines.append("")
        lines += [f"- {st['key']}: {st['stage_plan']['note']}" for st in raised]
    final = report.get("final")
    if final and final.get("results"):
        table = final["results"]
        lines += ["", "## Final comparison (score 0-100, mean ± std over seeds)", ""]
        lines.append("| arm | stored parameters | optimised parameters | learning rate | "
                     + " | ".join(table["tasks"]) + " | average |")
        lines.append("| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in table["tasks"]) + " | ---: |")
        resolution = final.get("resolution") or {}
        separation = final_separation(table["rows"], resolution=resolution.get("average"))
        for row in table["rows"]:
            cells = []
            for task in table["tasks"]:
                cell = row["per_task"][task]
                cells.append(f"{_fmt(cell['mean'])} ± {_fmt(cell['std'])}" + (f" ({cell['failed']} failed)"
                                                                           if cell["failed"] else ""))
            avg = row["average"]
            params = f"{row['parameters']:,}" if row.get("parameters") is not None else "-"
            optimised = f"{row['optimised_parameters']:,}" if row.get("optimised_parameters") is not None else "-"
            rate = f"{row['learning_rate']:g}" if row.get("learning_rate") else "-"
            if row.get("strategy_learning_rates"):  # each strategy's own rate, the head's first
                rate += " (" + ", ".join(f"{k} {v:g}" for k, v in row["strategy_learning_rates"].items()) + ")"
            marker = (" **best**" if row["arm"] == separation["best"] else
                      f" ({separation['separation'].replace('_', ' ')})" if row["arm"] in separation["tied_best"] else "")
            lines.append(f"| {row['arm']}{marker} | {params} | {optimised} | {rate} | " + " | ".join(cells)
                         + f" | {_fmt(avg['mean'])} ± {_fmt(avg['std'])} |")
        lines += _resolution_lines(resolution, separation)
        lines += _learning_rate_lines(final["plan"])
        for note in final["plan"].get("notes", []):
            lines += ["", f"Note: {note}"]
    lines += _scored_on_lines(report)
    design = report.get("design")
    if design:
        lines += ["", "## Selected design", "", "| layer | strategies |", "| ---: | --- |"]
        for i, layer in enumerate(design["layers"]):
            text = ", ".join(f"{k}={v}" if k != "bitfit" else "bitfit" for k, v in layer.items()) or "-"
            lines.append(f"| {i} | {text} |")
        lines += ["", f"Stored PEFT parameters (the budget): {design['trainable_parameters']['peft_total']:,}; "
                      "the optimised count above adds the task head and, for prefixes, the reparameterisation "
                      "that trains but is not stored."]
    return "\n".join(lines) + "\n"
