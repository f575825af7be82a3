"""Would successive halving have decided a stage like training every design in full? (issue 11)

Two steps:

``record`` trains real stages in full on the bundled MiniLM (offline) and a bundled GLUE task,
with a score on the selection set after every epoch, exactly as a search's stage would draw them
(experiments.space: the first stage S1 decides grouping, then S2 allocation after S1's choice as
the full stage decided it; stratified sampling, common random numbers), and writes the per-epoch
scores to a JSON file (bench/data/halving_stages.json by default, committed, so the replay runs
in seconds anywhere).

``replay`` (the default) replays each recorded stage with experiments.space.halving.replay: the
full stage's decision is the choice with the best mean final score; halving's decision the choice
whose survivors of the rungs (``rung_epochs(E, eta)``) have the best mean final score; agreement
is the fraction of stratified bootstrap resamples of the stage's trials (redrawn within each
choice) in which both decide alike. It reports the trial-epochs halving spends against the full
stage. Target (issue 11): the same decision in at least 90% of replays at no more than a third of
the trial-epochs.

Each row also gives ``ceiling``: how often halving with perfect foresight (each rung ranking by the
final score itself) decides like the full stage. The survivors' mean is a mean of each choice's best
designs, the full stage's a mean of all of them, so where the ceiling is below the target no ranking
signal can reach it; and ``ranking_agreement``: how often the schedule's own ranking decides as
perfect foresight would (the ranking's own quality).

Each row also gives ``first_rung_agreement`` (not halving): how often training every design only to
the first rung and deciding by the mean of all of them there decides like the full stage, at
``first_rung_cost`` (first rung / E) of its trial-epochs: what a shorter stage of the same size gives.

Each row also gives ``full_stability``: how often the *full* stage decides as it did when its own
trials are redrawn. Where that is low, the choices are not separated by the stage's data at all,
and no cheaper procedure can be expected to agree with the full stage more often than that. And
``separable_agreement``: the agreement over only the resamples in which the full stage separates
its best choice from the runner-up (Welch z >= 1.645 on the final scores;
experiments.space.halving.SEPARABLE_Z), i.e. where the stage's decision is one its data support.

Usage::

    .venv/bin/python bench/halving.py record --stages 1 --per-choice 6 --epochs 9 --train-examples 64
        # ~8 min on 2 CPU cores (the committed recording)
    .venv/bin/python bench/halving.py --eta 2 3                             # replay, seconds
    .venv/bin/python bench/halving.py --eta 2 3 --min-epochs 1 3 --rank-by score auc
        # later first rungs, and rungs ranked by the recorded ranking AUC (recordings that have it)
    .venv/bin/python bench/halving.py --eta 2 3 --min-steps 24
        # the first rung after 24 optimizer steps, as a search with halving_min_steps 24 places it

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The committed recordings: the first (every module at one learning rate, 3e-3, 64 training examples),
# the second (each strategy at the rate a search gives it, 128 training examples, as the study), the
# third (as the second, 12 designs a choice, with the selection loss and ranking AUC after every epoch),
# the fourth (S1 of the third's seed 1 with 384 training examples: 24 steps an epoch), the fifth (the
# fourth's designs and training, scored on 1,000 selection examples instead of 200) and the sixth (as
# the fourth, seed 2).
DEFAULT_FILES = [ROOT / "bench" / "data" / name
                 for name in ("halving_stages.json", "halving_stages_measured.json", "halving_stages_auc.json",
                              "halving_stages_384.json", "halving_stages_384_eval1000.json",
                              "halving_stages_384_seed2.json")]


def _stage(space, spec, *, per_choice: int, seed: int, shape, budget, options):
    from experiments.space import sample, stage_seed

    choices = len(space.open(spec.component))
    return sample(space, per_choice * choices, seed=stage_seed(seed, spec.name), shape=shape, budget=budget,
                  balance=spec.component, stratify=spec.component, min_per_choice=per_choice,
                  provenance={"stage": spec.name, "bench": "halving"}, options=options)


def _strategy_rates(choice: str) -> dict[str, float] | None:
    """--strategy-rates: "measured" gives each strategy the rate a search gives it
    (tasks.peft.strategies.default_learning_rates, as SearchConfig.design_options); "none" leaves the
    designs without per-strategy rates, so every module trains at --learning-rate (the first recordings)."""
    from tasks.peft.strategies import default_learning_rates

    return default_learning_rates() if choice == "measured" else None


def record(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from experiments.space import DesignSpace, next_stage, refine
    from experiments.space.compiling import Budget
    from tasks.peft import HeadSpec
    from tasks.runner import BackboneCache, run_design
    from tasks.train import Callbacks, TrainConfig

    cache = BackboneCache()
    shape = cache.load(None, head=HeadSpec("classification", 2), seed=0).shape
    budget = Budget(fraction=args.budget)
    rates = _strategy_rates(args.strategy_rates)
    options = None if rates is None else {name: {"learning_rate": rate} for name, rate in rates.items()}
    settings = {"task": args.task, "epochs": args.epochs, "per_choice": args.per_choice, "groups": args.groups,
                "train_examples": args.train_examples, "eval_examples": args.eval_examples, "eval_role": "selection",
                "learning_rate": args.learning_rate, "strategy_learning_rates": rates, "budget_fraction": args.budget,
                "seed": args.seed, "fixed": list(args.fix)}
    space = DesignSpace.initial(num_groups=args.groups, num_layers=shape.num_layers)
    for fixed in args.fix:  # earlier components decided beforehand (e.g. as the study decided them)
        component, _, choice = fixed.partition("=")
        space, _ = refine(space, component, choice, decided_by="bench", reason="fixed by --fix")
    stages = []
    started = time.perf_counter()
    for _ in range(args.stages):
        spec = next_stage(space)
        batch = _stage(space, spec, per_choice=args.per_choice, seed=args.seed, shape=shape, budget=budget,
                       options=options)
        stage_started = time.perf_counter()
        trials = []
        for i, drawn in enumerate(batch.designs):
            per_epoch: list[float | None] = []
            losses: list[float | None] = []  # the selection set's loss after every epoch (eval_loss)
            aucs: list[float | None] = []  # and its ranking AUC (eval_auc)

            def on_eval(task, step, metrics, per_epoch=per_epoch, losses=losses, aucs=aucs):
                per_epoch.append(round(metrics["score"], 4))
                losses.append(round(metrics["eval_loss"], 6))
                aucs.append(round(metrics["eval_auc"], 6) if "eval_auc" in metrics else None)

            config = TrainConfig(batch_size=16, epochs=args.epochs, max_length=64, learning_rate=args.learning_rate,
                                 train_examples=args.train_examples, eval_examples=args.eval_examples,
                                 seed=drawn.data_seed, device="cpu")
            callbacks = Callbacks(on_eval=on_eval)
            try:
                run_design(drawn.design, [args.task], train_config=config, callbacks=callbacks,
                           backbone_cache=cache, role="selection")
            except Exception as exc:  # a diverged design is a failed trial, as in a search
                print(f"{spec.name} #{i}: {type(exc).__name__}: {exc}", flush=True)
                per_epoch, losses, aucs = [None] * args.epochs, [None] * args.epochs, [None] * args.epochs
            choice = drawn.choices[spec.component]
            trials.append({"choice": choice, "scores": per_epoch, "losses": losses, "aucs": aucs})
            print(f"{spec.name} #{i} {choice}: {per_epoch} loss {losses} auc {aucs}", flush=True)
        full = _decide(trials)
        stages.append({"stage": spec.name, "component": spec.component, "trials": trials, "full_decision": full,
                       "settings": settings, "seconds": round(time.perf_counter() - stage_started, 1)})
        space, _ = refine(space, spec.component, full, decided_by="bench", reason="full stage's best mean")
    payload = {"task": args.task, "epochs": args.epochs, "per_choice": args.per_choice, "groups": args.groups,
               "train_examples": args.train_examples, "eval_examples": args.eval_examples, "eval_role": "selection",
               "learning_rate": args.learning_rate, "budget_fraction": args.budget, "seed": args.seed,
               "backbone": "all-MiniLM-L6-v2 (bundled)", "seconds": round(time.perf_counter() - started, 1),
               "stages": stages}
    if args.append and Path(args.file).exists():
        payload["stages"] = json.loads(Path(args.file).read_text())["stages"] + stages
    Path(args.file).parent.mkdir(parents=True, exist_ok=True)
    Path(args.file).write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps({"benchmark": "halving", "recorded": str(args.file), "stages": len(stages),
                      "seconds": payload["seconds"]}))


def _finals(trials: list[dict]) -> dict[str, list[float]]:
    finals: dict[str, list[float]] = {}
    for t in trials:
        finals.setdefault(t["choice"], [])
        if t["scores"] and t["scores"][-1] is not None:
            finals[t["choice"]].append(t["scores"][-1])
    return finals


def _decide(trials: list[dict]) -> str | None:
    finals = _finals(trials)
    means = {c: statistics.fmean(v) for c, v in finals.items() if v}
    return max(means, key=lambda c: means[c]) if means else None


def full_stability(trials: list[dict], *, resamples: int, seed: int) -> float:
    """How often the full stage decides as it did when its trials are redrawn within each choice:
    the ceiling any cheaper procedure can be expected to agree with it."""
    import random

    rng = random.Random(seed)
    decided = _decide(trials)
    by_choice: dict[str, list[dict]] = {}
    for t in trials:
        by_choice.setdefault(t["choice"], []).append(t)
    same = sum(_decide([t for members in by_choice.values() for t in rng.choices(members, k=len(members))]) == decided
               for _ in range(resamples))
    return same / resamples


def _schedule(eta: int, first: int | str, rank_by: str = "score") -> str:
    """The JSON key of a halving schedule: "2" (eta 2, first rung after 1 epoch, ranked by score),
    "3, first rung >= 3" when --min-epochs moves the first rung later, "3, first rung >= 24 steps"
    with --min-steps, ", ranked by auc" when the rungs rank by another signal."""
    key = str(eta) if first == 1 else f"{eta}, first rung >= {first}"
    return key if rank_by == "score" else f"{key}, ranked by {rank_by}"


BATCH_SIZE = 16  # what ``record`` trains at


def _first_rungs(args: argparse.Namespace, train_examples: int) -> list[tuple[int | str, int]]:
    """(schedule label, epochs before the first rung) for --min-epochs, then --min-steps: a number of
    optimizer steps becomes this recording's epochs as a search's SearchConfig.halving_min_epochs does."""
    from experiments.space.presets import SearchConfig

    def epochs(steps: int) -> int:
        return SearchConfig(max_train_examples=train_examples, batch_size=BATCH_SIZE,
                            halving_min_steps=steps).halving_min_epochs()

    return [(m, m) for m in args.min_epochs] + [(f"{n} steps", epochs(n)) for n in args.min_steps]


def _pooled_separable(rows: list[dict]) -> float | None:
    separable = sum(r["separable_resamples"] for r in rows)
    agreed = sum(r["separable_resamples"] * r["separable_agreement"] for r in rows if r["separable_resamples"])
    return round(agreed / separable, 3) if separable else None


RANKINGS = ("score", "auc", "loss", "oracle")


def _ranking(trial: dict, rank_by: str) -> list[float | None] | None:
    """What the rungs rank a recorded trial by (higher is better): its score (None, as a search did
    before), the selection set's ranking AUC or negated loss after each epoch (recordings from
    session 5 on), or its own final score at every rung ("oracle": perfect foresight, the ceiling
    of any ranking, which shows what the survivors' decision rule itself can agree with)."""
    if rank_by == "score":
        return None
    if rank_by == "oracle":
        return [trial["scores"][-1]] * len(trial["scores"])
    values = trial.get("aucs" if rank_by == "auc" else "losses")
    if values is None:
        raise KeyError(rank_by)
    return [None if v is None else (v if rank_by == "auc" else -v) for v in values]


def signal_correlations(trials: list[dict]) -> dict[str, list[float | None]]:
    """How well each recorded signal after epoch k orders the designs by their final score: Spearman's
    rho over the stage's trials (failed ones left out), per epoch. The score itself reaches 1.0 at the
    last epoch; a signal that ranks early rungs well is high at the first epochs."""
    from scipy.stats import spearmanr

    done = [t for t in trials if t["scores"][-1] is not None]
    if not done:
        return {}
    finals = [t["scores"][-1] for t in done]
    correlations = {}
    for name, key, sign in (("score", "scores", 1), ("auc", "aucs", 1), ("loss", "losses", -1)):
        if any(t.get(key) is None for t in done):
            continue
        series = []
        for epoch in range(len(done[0]["scores"])):
            values = [sign * t[key][epoch] for t in done]
            rho = spearmanr(values, finals).statistic if len(set(values)) > 1 else None
            series.append(None if rho is None or rho != rho else round(float(rho), 3))
        correlations[name] = series
    return correlations


def replay_all(args: argparse.Namespace) -> None:
    from experiments.space.halving import RecordedTrial, replay

    results = []
    recorded = {}
    for file in args.file:
        data = json.loads(Path(file).read_text())
        name = Path(file).name
        recorded[name] = {k: data.get(k) for k in (
            "task", "epochs", "per_choice", "groups", "train_examples", "eval_examples", "eval_role", "backbone",
            "learning_rate")}
        for index, stage in enumerate(data["stages"]):
            correlations = signal_correlations(stage["trials"])
            if set(correlations) - {"score"}:
                print(f"{name} {stage['stage']}: Spearman rho of each signal after epoch 1..{data['epochs']} with the "
                      f"final score: " + "; ".join(f"{k} {v}" for k, v in correlations.items()), flush=True)
            rates = (stage.get("settings") or {}).get("strategy_learning_rates")
            firsts = _first_rungs(args, (stage.get("settings") or {}).get("train_examples") or data["train_examples"])
            for eta, (label, first), rank_by in [(e, f, r) for e in args.eta for f in firsts for r in args.rank_by]:
                try:
                    trials = [RecordedTrial(t["choice"], t["scores"], _ranking(t, rank_by)) for t in stage["trials"]]
                except KeyError:  # an older recording without that signal
                    continue
                report = replay(trials, eta=eta, min_epochs=first, resamples=args.resamples, seed=args.seed)
                plan = report.plan
                row = {"recording": name, "stage_index": index, "stage": stage["stage"], "component": stage["component"],
                       "eta": eta,
                       "schedule": _schedule(eta, label, rank_by), "rank_by": rank_by,
                       "strategy_rates": "measured" if rates else "one rate for all",
                       "rungs": [r.epochs for r in plan.rungs], "trials": len(trials),
                       "full_decision": report.full_decision, "halving_decision": report.halving_decision,
                       "agreement": report.agreement,
                       "separable_resamples": report.separable_resamples,
                       "separable_agreement": report.separable_agreement,
                       "ceiling": report.ceiling, "ranking_agreement": report.ranking_agreement,
                       # not halving: every design to the first rung only, decided by all designs' mean
                       "first_rung_agreement": report.first_rung_agreement,
                       "first_rung_cost": round(plan.rungs[0].epochs / plan.epochs, 3),
                       "trial_epochs": plan.trial_epochs,
                       "full_trial_epochs": plan.full_trial_epochs,
                       "cost_fraction": round(plan.trial_epochs / plan.full_trial_epochs, 3),
                       "signal_correlations": correlations,
                       "full_stability": full_stability(stage["trials"], resamples=args.resamples, seed=args.seed),
                       "final_means": {c: round(statistics.fmean(v), 2)
                                       for c, v in _finals(stage["trials"]).items() if v}}
                results.append(row)
                print(f"{name} {row['stage']:6s} {row['component']:10s} eta {row['schedule']}: rungs {row['rungs']}, agreement "
                      f"{row['agreement']:.2f}, {row['trial_epochs']}/{row['full_trial_epochs']} trial-epochs "
                      f"({row['cost_fraction']:.2f}), full {row['full_decision']} / halving {row['halving_decision']}; "
                      f"the full stage decides the same on {row['full_stability']:.2f} of resamples; "
                      f"where it separates its choices ({row['separable_resamples']} resamples) halving agrees in "
                      f"{'-' if row['separable_agreement'] is None else format(row['separable_agreement'], '.2f')}; "
                      f"with perfect foresight halving would agree in {row['ceiling']:.2f} (the ceiling), and it "
                      f"decides like that in {row['ranking_agreement']:.2f}; every design to the first rung, "
                      f"decided by all designs' mean there: {row['first_rung_agreement']:.2f} at "
                      f"{row['first_rung_cost']:.2f} of the cost; final means {row['final_means']}",
                      flush=True)
    summary = {}
    for schedule in dict.fromkeys(r["schedule"] for r in results):
        everything = [r for r in results if r["schedule"] == schedule]
        # A stage whose first rung would come at its last epoch trains in full (one rung, as a search
        # plans it): it agrees by construction and saves nothing, so the figures below leave it out.
        rows = [r for r in everything if len(r["rungs"]) > 1]
        if not rows:
            summary[schedule] = {"stages_halved": 0, "stages_in_full": len(everything), "meets_target": False}
            continue
        summary[schedule] = {
            "stages_halved": len(rows),
            "stages_in_full": len(everything) - len(rows),
            "min_agreement": min(r["agreement"] for r in rows),
            "mean_agreement": round(statistics.fmean(r["agreement"] for r in rows), 3),
            # the ceiling: how often the full stage agrees with itself when its trials are redrawn
            "mean_full_stability": round(statistics.fmean(r["full_stability"] for r in rows), 3),
            # agreement over the resamples (all stages) in which the full stage separates its best choice
            "separable_agreement": _pooled_separable(rows),
            # the most any ranking could reach with the survivors' decision (perfect foresight), and how
            # often the schedule's own ranking decides as perfect foresight would
            "min_ceiling": min(r["ceiling"] for r in rows),
            "max_ceiling": max(r["ceiling"] for r in rows),
            "mean_ranking_agreement": round(statistics.fmean(r["ranking_agreement"] for r in rows), 3),
            # every design trained to the first rung only, the stage deciding by all designs' mean there
            "first_rung_agreement": [r["first_rung_agreement"] for r in rows],
            "first_rung_cost": round(sum(r["trials"] * r["rungs"][0] for r in rows)
                                     / sum(r["full_trial_epochs"] for r in rows), 3),
            "cost_fraction": round(sum(r["trial_epochs"] for r in rows) / sum(r["full_trial_epochs"] for r in rows), 3),
            "meets_target": all(r["agreement"] >= 0.9 for r in rows)
            and sum(r["trial_epochs"] for r in rows) * 3 <= sum(r["full_trial_epochs"] for r in rows),
        }
    print(json.dumps({"benchmark": "halving", "recorded": recorded,
        "resamples": args.resamples, "target": {"agreement": 0.9, "cost_fraction": round(1 / 3, 3)},
        "by_eta": summary, "stages": results}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=["replay", "record"], default="replay")
    parser.add_argument("--file", nargs="+", default=[str(f) for f in DEFAULT_FILES],
                        help="replay: recordings to replay (default: both committed); record: the one to write")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--per-choice", type=int, default=8)
    parser.add_argument("--stages", type=int, default=2, help="record: S1, then S2, ...")
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.005)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--train-examples", type=int, default=128)
    parser.add_argument("--eval-examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy-rates", choices=["measured", "none"], default="measured",
                        help="record: each strategy's rate as a search gives it (measured), or --learning-rate for all")
    parser.add_argument("--fix", nargs="*", default=[], metavar="COMPONENT=CHOICE",
                        help="record: decide these components first (e.g. grouping=decreasing allocation=uniform)")
    parser.add_argument("--append", action="store_true", help="record: add the stages to the file's")
    parser.add_argument("--eta", type=int, nargs="+", default=[3])
    parser.add_argument("--min-epochs", type=int, nargs="+", default=[1],
                        help="replay: epochs before the first rung (1: as a search runs halving); several to compare")
    parser.add_argument("--min-steps", type=int, nargs="*", default=[],
                        help="replay: optimizer steps before the first rung (as SearchConfig.halving_min_steps), "
                             "turned into epochs per recording; several to compare")
    parser.add_argument("--rank-by", nargs="+", choices=RANKINGS, default=["score"],
                        help="replay: what rungs rank designs by (score; auc, loss: recordings that have them; "
                             "oracle: the final score, the ceiling of any ranking); several to compare")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    if not all(1 <= m <= 1000 for m in args.min_epochs) or not all(2 <= e <= 1000 for e in args.eta):
        parser.error("--min-epochs must be from 1 to 1000 and --eta from 2 to 1000")
    if not all(1 <= m <= 100_000 for m in args.min_steps):
        parser.error("--min-steps must be from 1 to 100000")
    for name in ("epochs", "per_choice", "stages", "groups", "train_examples", "eval_examples", "resamples"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name.replace('_', '-')} must be from 1 to 100000")
    if args.mode == "record":
        if len(args.file) != 1:
            parser.error("--file: record writes one file")
        args.file = args.file[0]
    (record if args.mode == "record" else replay_all)(args)


if __name__ == "__main__":
    main()
