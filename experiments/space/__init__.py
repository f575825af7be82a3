"""PEFS design spaces: components, sampling, stage statistics and greedy refinement.

Pure Python (no Django, no torch): the web side stores what this library returns as JSON and
the workers train the designs it compiles. Method and definitions: ../shared/PAPER.md.

Modules
-------
grouping, allocation   the layer-grouping and parameter-allocation patterns for any L and G
aliases                patterns that give the same design on a backbone merge into one Choice
subsets                labels of the subset choices: tunable groups "G1+G3", strategies "A+P+B"
space                  DesignSpace (open choices per component), JSON, diff
compiling              Budget; compile one set of choices to a pefs.design/1 Design
sampling               sample(space, n, ...) -> SampleBatch of SampledDesign
stats                  summarise(trial outcomes) -> StageSummary (n, mean, median, std, CI, EDF,
                       recommendation)
stages                 stage order S0, S1..S3, S4.G1..S4.GG, final; next_stage; refine -> Decision
presets                SearchConfig and the "paper" / "quick" presets
planning               stage_plan / search_plan: trials per stage (min_successes per open choice)
                       and totals, known before the search starts
halving                successive halving inside a stage and its replay on recorded stages
final                  final stage plan (selected design vs baselines) and its results table
transfer               compile a finished search's choices on another backbone

A search, end to end (what the platform's services do, one stage per Stage row)::

    from experiments.space import (DesignSpace, TrialOutcome, next_stage, preset, refine,
                                   sample, search_plan, stage_plan, stage_seed, summarise)
    from tasks.peft.budget import BackboneShape

    config = preset("quick", seed=1)
    shape = BackboneShape.from_dict(backbone_row.shape)          # JSON stored on the Backbone row
    # S0, built for the backbone so that patterns giving the same design are one choice
    # (aliases.py); store space.to_dict() and the decisions_without_training(space) records
    space = DesignSpace.initial(num_groups=config.num_groups, num_layers=shape.num_layers)

    # before the search starts (form, API, CLI): what it will train, and what was raised
    search_plan(config, num_layers=shape.num_layers, tasks=len(tasks)).to_dict()

    stage = next_stage(space)                                     # StageSpec("S1", "grouping", ...)
    plan = stage_plan(config, space)         # min_successes designs for every open choice
    batch = sample(space, plan.designs, seed=stage_seed(config.seed, stage.name),
                   shape=shape, budget=config.budget, balance=plan.balance,
                   stratify=plan.stratify, min_per_choice=plan.min_per_choice,
                   provenance={"search": search.id, "stage": stage.name})
    # one Trial per batch.designs[i]: store .choices, .design (the pefs.design/1 dict),
    # .parameters, .seed; workers train .design and report a score (None when a trial fails).
    # Common random numbers (sampling.py): train with TrainConfig.seed = .data_seed (shared by
    # the stage: example order, head, dropout); .seed stays the design's PEFT-init seed.

    summary = summarise([TrialOutcome(t.choices, t.score, t.id) for t in trials],
                        component=stage.component, open_choices=space.open(stage.component),
                        stage=stage.name, seed=config.seed,
                        resamples=config.bootstrap_resamples, min_successes=config.min_successes,
                        aliases=space.aliases(stage.component),
                        infeasible=batch.infeasible_choices)
    # summary.recommendation.auto_approvable False ("insufficient"): wait for a person
    # store summary.to_dict(); once a person approves (or config.auto_approve):
    space, decision = refine(space, stage.component, chosen, decided_by="user:alice",
                             reason=reason, recommended=summary.recommendation.choice)
    # store decision.to_dict() and the next space; repeat until next_stage(space) is FINAL,
    # then final_plan(space, shape=..., budget=..., tasks=..., seeds=config.final_seeds,
    #                 learning_rate=config.learning_rate, grid=config.final_lr_grid):
    # train plan.tuning (selection set), chosen = choose_learning_rates(results, plan.grids),
    # then plan.report_runs({arm: c["chosen"] for arm, c in chosen.items()}) (report set)

When ``config.reference_stage`` is set, run the REFERENCE stage (S0) first: sample the initial
space without balance and summarise with ``component=None``; it decides nothing and gives the
EDF that later stages are compared with.

Successive halving (``config.halving_eta``), inside one stage::

    plan = plan_halving(Counter(d.choices[stage.component] for d in batch.designs),
                        epochs=config.epochs, eta=config.halving_eta)
    # train every trial to plan.rungs[0].epochs; at the end of each rung but the last:
    alive = promote({t.id: t.score for t in alive_trials},  # scores at this rung
                    {t.id: t.choices[stage.component] for t in alive_trials},
                    eta=config.halving_eta)
    # stop the others (not failures: leave them out of summarise), train `alive` to the next
    # rung's epochs; summarise the survivors' final scores. plan.saved = trial-epochs saved.
    # On a fully trained stage with a score after every epoch:
    report = replay([RecordedTrial(choice, per_epoch_scores), ...], eta=3)
    # report.same_decision, report.agreement (over bootstrap resamples), report.plan.saved

Every bad input raises ``SpaceError`` (a ``ValueError``) whose ``.field`` names the offending
field; a budget the backbone cannot meet raises ``tasks.peft.budget.InfeasibleBudget`` from the
solver (``sample`` redraws those and raises ``InfeasibleSpace`` only when nothing is feasible).
"""

from experiments.space.aliases import Choice, pattern_choices
from experiments.space.compiling import Budget, CompiledDesign, compile_choices, effective_choices
from experiments.space.errors import SpaceError
from experiments.space.final import (
    ARMS,
    REPORT,
    SELECTION,
    FinalPlan,
    FinalResult,
    FinalRun,
    TuningResult,
    baseline_design,
    choose_learning_rates,
    final_plan,
    learning_rate_grid,
    results_table,
)
from experiments.space.halving import (
    HalvingPlan,
    RecordedTrial,
    ReplayReport,
    plan_halving,
    promote,
    replay,
    rung_epochs,
)
from experiments.space.planning import SearchPlan, StagePlan, search_plan, stage_plan
from experiments.space.presets import PRESETS, SearchConfig, preset
from experiments.space.sampling import (
    InfeasibleSpace,
    SampleBatch,
    SampledDesign,
    sample,
    stage_data_seed,
)
from experiments.space.space import SPACE_SCHEMA, ChoiceChange, DesignSpace, component_names, diff
from experiments.space.stages import (
    AUTO,
    FINAL,
    REFERENCE,
    Decision,
    StageSpec,
    decisions_without_training,
    final_choices,
    next_stage,
    refine,
    remaining_stages,
    stage_order,
    stage_seed,
)
from experiments.space.stats import StageSummary, TrialOutcome, edf_points, summarise
from experiments.space.transfer import choices_from_design, transfer

__all__ = [
    "ARMS",
    "AUTO",
    "FINAL",
    "PRESETS",
    "REFERENCE",
    "REPORT",
    "SELECTION",
    "SPACE_SCHEMA",
    "Budget",
    "Choice",
    "ChoiceChange",
    "CompiledDesign",
    "Decision",
    "DesignSpace",
    "FinalPlan",
    "FinalResult",
    "FinalRun",
    "HalvingPlan",
    "InfeasibleSpace",
    "RecordedTrial",
    "ReplayReport",
    "SampleBatch",
    "SampledDesign",
    "SearchConfig",
    "SearchPlan",
    "SpaceError",
    "StagePlan",
    "StageSpec",
    "StageSummary",
    "TrialOutcome",
    "TuningResult",
    "baseline_design",
    "choices_from_design",
    "choose_learning_rates",
    "compile_choices",
    "component_names",
    "decisions_without_training",
    "diff",
    "edf_points",
    "effective_choices",
    "final_choices",
    "final_plan",
    "learning_rate_grid",
    "next_stage",
    "pattern_choices",
    "plan_halving",
    "preset",
    "promote",
    "refine",
    "remaining_stages",
    "replay",
    "results_table",
    "rung_epochs",
    "sample",
    "search_plan",
    "stage_data_seed",
    "stage_order",
    "stage_plan",
    "stage_seed",
    "summarise",
    "transfer",
]
