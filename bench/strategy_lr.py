"""Which learning rate suits each strategy: the measurement behind the per-strategy defaults.

On the default MiniLM (offline) and a bundled task (``--task``, default SST-2), each
single-strategy design (adapter, prefix, LoRA at 0.5% of the backbone on every layer; BitFit on
every layer) is trained with its strategy's parameters at each rate of a small grid while the head
(pooler + classifier) trains at a fixed base rate, then scored on the *selection* set (held out of
the training split; tasks.data.roles), never on the dev split that reports use, so the defaults
carry no information about any report set. The defaults in ``tasks.peft.strategies``
(``MEASURED_LEARNING_RATES``, each descriptor's ``default_learning_rate``) are the best rate per
strategy of a run of this script, by mean over seeds; the run they come from is quoted there.

Small on purpose (minutes on 2 CPU cores): by default 256 training examples, 1 epoch, batch 16,
length 64, 200 selection examples. It ranks rates, it does not tune them; rerun it with more
examples, epochs and seeds on a GPU for a backbone of your own.

Usage::

    .venv/bin/python bench/strategy_lr.py
    # the run behind the defaults (2026-12-01):
    .venv/bin/python bench/strategy_lr.py --rates 1e-3 3e-3 1e-2 3e-2 --seeds 0 1 2 \
        --train-examples 512 --eval-examples 300

The last printed line is one JSON object: the settings, every score and the best rate per
strategy.
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

BUDGET = 0.005


def single_strategy_design(shape, strategy: str, seed: int, rate: float):
    from tasks.peft import design_from_sizes, solve_sizes

    every_layer = range(shape.num_layers)
    if strategy == "bitfit":
        sizes = {i: {"bitfit": 1} for i in every_layer}
    else:
        target = BUDGET * shape.total_params
        sizes = solve_sizes(
            {i: target / shape.num_layers for i in every_layer},
            {i: (strategy,) for i in every_layer},
            shape,
        ).sizes
    return design_from_sizes(
        shape, sizes, seed=seed, options={strategy: {"learning_rate": rate}}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--strategies", nargs="+", default=["adapter", "prefix", "bitfit", "lora"])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--head-rate", type=float, default=1e-3)
    parser.add_argument("--train-examples", type=int, default=256)
    parser.add_argument("--eval-examples", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from tasks.runner import BackboneCache, run_design
    from tasks.train import TrainConfig

    config = TrainConfig(
        batch_size=16,
        epochs=args.epochs,
        max_length=64,
        learning_rate=args.head_rate,
        train_examples=args.train_examples,
        eval_examples=args.eval_examples,
        device="cpu",
    )
    cache = BackboneCache()
    from tasks.peft import HeadSpec

    shape = cache.load(None, head=HeadSpec("classification", 2), seed=0).shape
    scores: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    for strategy in args.strategies:
        scores[strategy] = {}
        for rate in args.rates:
            runs = []
            for seed in args.seeds:
                design = single_strategy_design(shape, strategy, seed, rate)
                try:
                    outcome = run_design(
                        design, [args.task], train_config=config, backbone_cache=cache,
                        role="selection",
                    )
                    runs.append(round(outcome.score, 2))
                except Exception as exc:  # a diverged rate is a result, not a crash
                    print(f"{strategy} at {rate:g}: {exc}", flush=True)
                    runs.append(float("nan"))
            scores[strategy][f"{rate:g}"] = runs
            print(f"{strategy:8s} lr {rate:<8g} scores {runs}", flush=True)
    best = {
        strategy: max(by_rate, key=lambda r: statistics.fmean(by_rate[r]))
        for strategy, by_rate in scores.items()
    }
    print(
        json.dumps(
            {
                "benchmark": "strategy_lr",
                "task": args.task,
                "eval_role": "selection",
                "train_examples": args.train_examples,
                "eval_examples": args.eval_examples,
                "epochs": args.epochs,
                "batch_size": 16,
                "max_length": 64,
                "head_rate": args.head_rate,
                "seeds": args.seeds,
                "scores": scores,
                "best_rate": best,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
