"""The final stage: the selected design against single-strategy baselines and full fine-tuning.

Two phases in one stage (experiments.space.final). *Tuning*: each arm tries the configured grid
of learning rates on the selection set; when those runs are final each arm keeps its best rate
(Stage.plan["tuning"]: the grid, each rate's mean selection score, the chosen rate and why; the
chosen rate scales the arm's per-strategy rates alike, Stage.plan["strategy_learning_rates"]).
*Report*: each arm trains with its rate and every report seed, scored on the report set; when
those are final the results table is stored and the search completes. A grid of one rate skips
tuning. Only report runs count in the results, the downloads and the selected design.
"""
from __future__ import annotations

from django.utils import timezone

from experiments.space import (
    REPORT,
    DesignSpace,
    FinalPlan,
    FinalResult,
    FinalRun,
    SearchConfig,
    SpaceError,
    TuningResult,
    choose_learning_rates,
    final_plan,
    results_table,
)
from tasks.peft.budget import BackboneShape

from .. import events, selectors
from ..models import Search, Stage, Trial
from .artifacts import artifacts_write
from .limits import space_error
from .stage_trials import stage_trials_add

TUNE, REPORT_PHASE = "tune", "report"


def _final_plan(search: Search, space: DesignSpace) -> FinalPlan:
    config = SearchConfig.from_dict(search.config)
    shape = BackboneShape.from_dict(search.backbone.shape)
    try:
        return final_plan(space, shape=shape, budget=config.budget,
                          tasks=[t.name for t in selectors.search_tasks(search)], seeds=config.final_seeds,
                          learning_rate=config.learning_rate, grid=config.final_lr_grid,
                          learning_rates=config.learning_rates())
    except SpaceError as exc:
        raise space_error(exc) from None


def _run_trials(search: Search, stage: Stage, runs: tuple[FinalRun, ...], *, start: int) -> list[Trial]:
    backbone = search.backbone.shape.get("name_or_path", search.backbone.name_or_path)
    trials = []
    for i, run in enumerate(runs, start=start):
        phase = "report" if run.role == REPORT else "tuning"
        label = (f"{run.arm} · {run.task} · seed {run.seed}" if run.role == REPORT
                 else f"{run.arm} · {run.task} · lr {run.learning_rate:g} (tuning)")
        design = run.design or {"full_finetuning": True, "backbone": backbone,
                                **({"learning_rate": run.learning_rate} if run.learning_rate else {})}
        trials.append(Trial(
            search=search, stage=stage, index=i, kind=Trial.Kind.SELECTED if run.arm == "selected" else Trial.Kind.BASELINE,
            label=label[:64], eval_role=run.role, design=design, seed=run.seed, trainable_params=run.parameters,
            choices={"arm": run.arm, "task": run.task, "seed": run.seed, "phase": phase,
                     "learning_rate": run.learning_rate}))
    return trials


def final_stage_open(*, search: Search, space: DesignSpace, order: int) -> Stage:
    """Open the final stage with its tuning runs (or, without a grid, its report runs)."""
    plan = _final_plan(search, space)
    plan_dict = plan.to_dict()
    plan_dict.pop("runs")
    phase = TUNE if plan.tuning else REPORT_PHASE
    untuned = {} if plan.tuning else {"learning_rates": {run.arm: run.learning_rate for run in plan.runs},
                                      "strategy_learning_rates": plan.chosen_strategy_rates({})}
    stage = Stage.objects.create(search=search, order=order, key="final", component="", space=space.to_dict(),
                                 plan={"title": "Final: the selected design against baselines", **plan_dict,
                                       "phase": phase, **untuned})
    runs = plan.tuning if plan.tuning else plan.runs
    stage_trials_add(search=search, stage=stage, trials=_run_trials(search, stage, runs, start=0))
    return stage


def _scored_runs(stage: Stage, role: str) -> list[tuple[dict, float | None]]:
    """(choices, score) of the stage's runs in ``role``; a run that did not succeed scores None."""
    rows = stage.trials.filter(eval_role=role).values_list("choices", "score", "status")
    return [(choices, score if status == Trial.Status.SUCCEEDED else None) for choices, score, status in rows]


def final_stage_tuned(*, search: Search, stage: Stage) -> Stage:
    """Tuning is over: keep each arm's best rate and queue the report runs at those rates."""
    results = [TuningResult(arm=c["arm"], task=c["task"], learning_rate=c["learning_rate"], score=score)
               for c, score in _scored_runs(stage, Trial.Role.SELECTION)]
    plan = _final_plan(search, DesignSpace.from_dict(stage.space))
    tuning = choose_learning_rates(results, plan.grids)
    runs = plan.report_runs({arm: entry["chosen"] for arm, entry in tuning.items()})
    chosen = {arm: entry["chosen"] for arm, entry in tuning.items()}
    stage.plan = {**stage.plan, "phase": REPORT_PHASE, "tuning": tuning, "learning_rates": chosen,
                  "strategy_learning_rates": plan.chosen_strategy_rates(chosen)}
    stage.save(update_fields=["plan"])
    start = stage.trials.count()
    stage_trials_add(search=search, stage=stage, trials=_run_trials(search, stage, runs, start=start))
    return stage


def search_complete(*, search: Search, stage: Stage) -> Stage:
    """Close the final stage: results table of the report runs, downloadable files, search completed."""
    results = [FinalResult(arm=c["arm"], task=c["task"], seed=c["seed"], score=score)
               for c, score in _scored_runs(stage, Trial.Role.REPORT)]
    stage.summary = results_table(results, parameters=stage.plan.get("parameters"),
                                  learning_rates=stage.plan.get("learning_rates"),
                                  optimised=selectors.final_stage_optimised(stage=stage),
                                  strategy_learning_rates=stage.plan.get("strategy_learning_rates"))
    stage.status = Stage.Status.COMPLETED
    stage.finished_at = timezone.now()
    stage.save(update_fields=["summary", "status", "finished_at"])
    Search.objects.filter(pk=search.pk).update(status=Search.Status.COMPLETED, finished_at=stage.finished_at)
    search.refresh_from_db()
    artifacts_write(search=search)
    events.stage_changed(stage)
    events.search_changed(search)
    return stage


def final_stage_check(*, search: Search, stage: Stage) -> Stage:
    """Every trial of the final stage is final: move from tuning to report, or complete the search."""
    if (stage.plan or {}).get("phase") == TUNE:
        return final_stage_tuned(search=search, stage=stage)
    return search_complete(search=search, stage=stage)
