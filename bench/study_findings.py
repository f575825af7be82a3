"""The study's findings as Markdown, read from a finished search's report.json (issue 11).

Reads what `pefs_search --out DIR` wrote (DIR/report.json) and prints, from those numbers only:
each stage's decision with every choice's mean, 95% CI and n on the selection set, what successive
halving spent and saved, how the decisions compare with the paper's (spindle grouping, uniform
allocation, all groups tuned, mixed per-group strategies), and the final table on the report set
(mean ± std over seeds per task, the average, the chosen learning rate per arm). Nothing here is
tuned: the text says plainly whether the selected design's average reaches the best
single-strategy baseline's.

Usage::

    .venv/bin/python bench/study_findings.py docs/study/report.json > docs/study/FINDINGS.md

The last line printed is one JSON object (the verdict and its numbers).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The paper's (Chen et al., ICLR 2023) discovered design-space patterns (../shared/PAPER.md).
PAPER = {"grouping": "spindle", "allocation": "uniform", "groups": "all groups tuned",
         "assignment": "mixed strategies per group (G1 A+L, G2 A+P, G3 A+P+B, G4 P+B+L at G = 4)"}
BASELINES = ("adapter", "prefix", "bitfit", "lora")


def _ci(choice: dict) -> str:
    ci = choice.get("ci95")
    interval = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "n/a"
    mean = "n/a" if choice.get("mean") is None else f"{choice['mean']:.2f}"
    return f"{mean} {interval}, n={choice.get('n', 0)}"


def stage_lines(stage: dict) -> list[str]:
    summary = stage.get("summary") or {}
    decision = stage.get("decision") or {}
    rec = stage.get("recommendation") or {}
    lines = [f"**{stage['key']} ({stage['component']})**: chose **{decision.get('label') or decision.get('choice')}** "
             f"({rec.get('status', 'n/a').replace('_', ' ')}; decided by {stage.get('decided_by')})."]
    not_compared = set(rec.get("not_compared") or ())
    for choice in summary.get("choices", []):
        why = " (not compared: no design of it meets the budget)" if choice["choice"] in not_compared else ""
        lines.append(f"  - {choice.get('label') or choice['choice']}: {_ci(choice)}{why}")
    if rec.get("reason"):
        lines.append(f"  - recommendation: {rec['reason']}")
    halving = summary.get("halving")
    if halving:
        lines.append(f"  - successive halving (eta {halving['eta']}, rungs at epoch "
                     f"{', '.join(map(str, halving['rungs']))}): {halving['trials_per_rung'][0]} designs -> "
                     f"{halving['survivors']} survivors; {halving['trial_epochs']} trial-epochs instead of "
                     f"{halving['full_trial_epochs']} ({halving['saved_trial_epochs']} saved)")
    return lines


def paper_comparison(stages: list[dict], untrained: list[dict]) -> list[str]:
    chosen = {}
    for s in stages:
        if s.get("component") and s.get("decision"):
            chosen[s["component"]] = s["decision"].get("label") or s["decision"].get("choice")
    for d in untrained:
        chosen.setdefault(d.get("component"), f"{d.get('label') or d.get('choice')} (decided without training)")
    assignment = "; ".join(f"{k.split('.')[-1]} {v}" for k, v in chosen.items() if k.startswith("assignment."))
    rows = [("grouping", chosen.get("grouping"), PAPER["grouping"]),
            ("allocation", chosen.get("allocation"), PAPER["allocation"]),
            ("tuned groups", chosen.get("groups"), PAPER["groups"]),
            ("strategies per group", assignment or None, PAPER["assignment"])]
    lines = ["| component | this study | the paper |", "| --- | --- | --- |"]
    lines += [f"| {name} | {ours or 'n/a'} | {paper} |" for name, ours, paper in rows]
    return lines


def final_lines(final: dict) -> tuple[list[str], dict]:
    results = final.get("results") or {}
    tuning = (final.get("plan") or {}).get("tuning") or {}
    tasks = results.get("tasks") or []
    lines = ["| arm | " + " | ".join(tasks) + " | average | learning rates (head; strategies) | grid on the selection set "
             "| stored / trained params |",
             "| --- | " + " | ".join("---" for _ in tasks) + " | --- | --- | --- | --- |"]
    averages = {}
    for row in results.get("rows", []):
        cells = []
        for task in tasks:
            cell = (row.get("per_task") or {}).get(task) or {}
            cells.append("n/a" if cell.get("mean") is None else
                         f"{cell['mean']:.2f} ± {cell.get('std') or 0:.2f} (n={cell.get('n', 0)})")
        average = row.get("average") or {}
        averages[row["arm"]] = average.get("mean")
        avg = "n/a" if average.get("mean") is None else f"{average['mean']:.2f} ± {average.get('std') or 0:.2f}"
        rates = f"{row.get('learning_rate'):g}" if row.get("learning_rate") else "n/a"
        if row.get("strategy_learning_rates"):
            rates += "; " + ", ".join(f"{k} {v:g}" for k, v in row["strategy_learning_rates"].items())
        entry = tuning.get(row["arm"]) or {}
        grid = ", ".join(f"{float(r):g}: {entry['scores'].get(str(r), entry['scores'].get(repr(float(r)), float('nan'))):.2f}"
                         for r in entry.get("grid") or []) if entry.get("scores") else "n/a"
        params = row.get("parameters")
        trained = row.get("optimised_parameters")
        counts = (f"{params:,}" if isinstance(params, int) else "n/a") + " / " + (
            f"{trained:,}" if isinstance(trained, int) else "n/a")
        lines.append(f"| {row['arm']} | " + " | ".join(cells) + f" | {avg} | {rates} | {grid} | {counts} |")
    return lines, averages


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/study/report.json")
    report = json.loads(path.read_text())
    search = report["search"]
    stages = [s for s in report["stages"] if s["key"] != "final"]
    out = [f"# Study: {search['name']}", "",
           f"Backbone {search['backbone']['name_or_path']} ({search['backbone']['parameters']:,} parameters), tasks "
           f"{', '.join(search['tasks'])}, budget {search['budget']['parameters']:,} parameters, G = {search['groups']}, "
           f"preset {search['preset']}; "
           f"started {search['created_at']}, finished {search['finished_at']}.", "",
           "## Decisions (selection set)", ""]
    for stage in stages:
        out += stage_lines(stage)
    out += ["", "## Against the paper's design-space patterns", ""]
    out += paper_comparison(stages, report.get("untrained_decisions") or [])
    final = report.get("final") or {}
    table, averages = final_lines(final)
    out += ["", "## Final comparison (report set, disjoint from the selection set)", ""] + table
    selected = averages.get("selected")
    baselines = {arm: averages[arm] for arm in BASELINES if averages.get(arm) is not None}
    best_arm = max(baselines, key=baselines.get) if baselines else None
    verdict = None
    if selected is not None and best_arm is not None:
        verdict = selected >= baselines[best_arm]
        out += ["", f"The selected design averages {selected:.2f}; the best single-strategy baseline, {best_arm}, "
                    f"averages {baselines[best_arm]:.2f}: the selected design "
                    + ("**reaches** it." if verdict else "**does not reach** it.")]
    print("\n".join(out))
    print(json.dumps({"selected": selected, "best_baseline": best_arm,
                      "best_baseline_average": baselines.get(best_arm) if best_arm else None,
                      "selected_reaches_best_baseline": verdict}))


if __name__ == "__main__":
    main()
