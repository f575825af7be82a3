"""The final report of a search, as JSON (for tools) and Markdown (for people)."""
from __future__ import annotations

from typing import Any

from .models import Search, Trial
from .selectors import search_tasks, selected_design


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
            }
            for s in stages
        ],
        "untrained_decisions": list(search.untrained_decisions or []),
        "final": {"plan": final.plan, "results": final.summary} if final else None,
        "design": selected_design(search),
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


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
        lines.append("| arm | parameters | " + " | ".join(table["tasks"]) + " | average |")
        lines.append("| --- | ---: | " + " | ".join("---:" for _ in table["tasks"]) + " | ---: |")
        for row in table["rows"]:
            cells = []
            for task in table["tasks"]:
                cell = row["per_task"][task]
                cells.append(f"{_fmt(cell['mean'])} ± {_fmt(cell['std'])}" + (f" ({cell['failed']} failed)"
                                                                           if cell["failed"] else ""))
            avg = row["average"]
            params = f"{row['parameters']:,}" if row.get("parameters") is not None else "-"
            marker = " **best**" if row["arm"] == table.get("best") else ""
            lines.append(f"| {row['arm']}{marker} | {params} | " + " | ".join(cells)
                         + f" | {_fmt(avg['mean'])} ± {_fmt(avg['std'])} |")
        for note in final["plan"].get("notes", []):
            lines += ["", f"Note: {note}"]
    design = report.get("design")
    if design:
        lines += ["", "## Selected design", "", "| layer | strategies |", "| ---: | --- |"]
        for i, layer in enumerate(design["layers"]):
            text = ", ".join(f"{k}={v}" if k != "bitfit" else "bitfit" for k, v in layer.items()) or "-"
            lines.append(f"| {i} | {text} |")
        lines += ["", f"Trainable PEFT parameters: {design['trainable_parameters']['peft_total']:,} "
                      "(task head excluded)."]
    return "\n".join(lines) + "\n"
