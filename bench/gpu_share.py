"""Several trials per GPU (issue 13): trials per hour and GPU utilisation for N = 1, 2, 4 on MiniLM.

For each N, N processes are started at once, as a trial worker started with ``-c N`` runs them:
each has its own CUDA context and its own BackboneCache, and trains MiniLM trials back to back
(a LoRA design at 0.5% of the backbone on every layer, a new seed each trial, on sst2) through
tasks.runner.run_design, after the memory guard of tasks.device_memory, until the level's time is
up. Each process prints the end time of every trial it finishes. The measured window opens when
every process has finished its first trial (backbone and data loaded, CUDA warmed up) and closes
when the first process stops; trials per hour = trials ended inside the window / its length.
GPU utilisation (and memory in use) is sampled every second with pynvml when installed, else
``nvidia-smi``, and averaged over the same window.

Usage::

    .venv/bin/python bench/gpu_share.py                       # N = 1 2 4, 180 s each
    .venv/bin/python bench/gpu_share.py --levels 1 2 --seconds 60

The last printed line is one JSON object: per N the trials per hour, mean utilisation, peak
memory, the memory guard's estimate, and whether the targets hold (at least 80% utilisation at
the best N, and more trials per hour than N = 1). Without CUDA it prints one JSON line saying so
and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

UTILISATION_TARGET = 80.0


def bounded(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value
    return parse


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=bounded(1, 16), nargs="+", default=[1, 2, 4],
                        help="trials at once on the GPU (the worker's -c)")
    parser.add_argument("--seconds", type=bounded(30, 3600), default=180, help="how long each level runs")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--train-examples", type=bounded(16, 100_000), default=2000)
    parser.add_argument("--eval-examples", type=bounded(16, 100_000), default=500)
    parser.add_argument("--batch-size", type=bounded(1, 1024), default=32)
    parser.add_argument("--max-length", type=bounded(8, 512), default=128)
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)  # the child's deadline
    return parser.parse_args(argv)


# --- one trial process ---------------------------------------------------------------------

def child(args: argparse.Namespace) -> int:
    """Train trials until the deadline; one JSON line per finished trial (its end, wall time)."""
    import torch

    from bench.strategy_lr import single_strategy_design
    from tasks.device_memory import TrialShape, guard
    from tasks.peft import HeadSpec
    from tasks.runner import BackboneCache, run_design
    from tasks.train import TrainConfig

    config = TrainConfig(batch_size=args.batch_size, epochs=1, max_length=args.max_length, learning_rate=1e-3,
                         train_examples=args.train_examples, eval_examples=args.eval_examples, device="cuda")
    cache = BackboneCache()
    shape = cache.load(None, head=HeadSpec("classification", 2), seed=0).shape
    estimate = guard(TrialShape(total_params=shape.total_params, trained_params=shape.total_params // 200
                                + shape.hidden_size ** 2, num_layers=shape.num_layers,
                                hidden_size=shape.hidden_size, num_heads=shape.num_heads,
                                batch_size=args.batch_size, max_length=args.max_length, bf16=config.bf16),
                     torch.device("cuda"))
    print(json.dumps({"estimate_bytes": estimate}), flush=True)
    seed = os.getpid()
    while time.time() < args.child:
        started = time.time()
        seed += 1
        run_design(single_strategy_design(shape, "lora", seed, 1e-3), [args.task], train_config=config,
                   backbone_cache=cache, role="selection")
        print(json.dumps({"end": time.time(), "seconds": time.time() - started,
                          "peak_bytes": torch.cuda.max_memory_allocated()}), flush=True)
    return 0


# --- GPU sampling --------------------------------------------------------------------------

class Sampler(threading.Thread):
    """(time, utilisation %, memory used bytes) of the first visible GPU, every second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float, int]] = []
        self.done = threading.Event()
        visible = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
        self.index = int(visible) if visible.isdigit() else 0  # a UUID: the first of nvidia-smi's list
        self.source = "pynvml"
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self.read = lambda: (float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                                 int(pynvml.nvmlDeviceGetMemoryInfo(handle).used))
        except Exception:
            self.source = "nvidia-smi" if shutil.which("nvidia-smi") else "none"
            self.read = self._smi

    def _smi(self) -> tuple[float, int]:
        out = subprocess.run(["nvidia-smi", "-i", str(self.index), "--query-gpu=utilization.gpu,memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
        util, used = out.stdout.strip().splitlines()[0].split(",")
        return float(util), int(float(used) * 2**20)

    def run(self) -> None:
        while not self.done.wait(1.0):
            try:
                util, used = self.read()
            except Exception:
                continue
            self.samples.append((time.time(), util, used))


# --- one level -----------------------------------------------------------------------------

def level(n: int, args: argparse.Namespace) -> dict:
    deadline = time.time() + args.seconds
    passed = [f"--task={args.task}", f"--train-examples={args.train_examples}",
              f"--eval-examples={args.eval_examples}", f"--batch-size={args.batch_size}",
              f"--max-length={args.max_length}", f"--child={deadline}"]
    sampler = Sampler()
    sampler.start()
    procs = [subprocess.Popen([sys.executable, __file__, *passed], stdout=subprocess.PIPE, text=True, cwd=ROOT)
             for _ in range(n)]
    outputs = [proc.communicate()[0] for proc in procs]
    sampler.done.set()
    sampler.join()
    lines = [[json.loads(line) for line in out.splitlines() if line.startswith("{")] for out in outputs]
    ends = [[line["end"] for line in proc_lines if "end" in line] for proc_lines in lines]
    failed = [i for i, proc in enumerate(procs) if proc.returncode]
    result: dict = {"n": n, "failed_processes": len(failed),
                    "trials": sum(len(e) for e in ends),
                    "estimate_bytes": next((line["estimate_bytes"] for pl in lines for line in pl
                                            if "estimate_bytes" in line), None),
                    "peak_allocated_bytes": max((line["peak_bytes"] for pl in lines for line in pl
                                                 if "peak_bytes" in line), default=None),
                    "trial_seconds_median": statistics.median([line["seconds"] for pl in lines for line in pl
                                                               if "seconds" in line] or [0.0])}
    if failed or not all(ends):
        return {**result, "trials_per_hour": None, "utilisation_mean": None,
                "note": "a process failed or finished no trial within the level"}
    opens = max(e[0] for e in ends)
    closes = min(e[-1] for e in ends)
    if closes <= opens:  # some process finished only its warm-up trial: the window is all trials
        opens, closes = min(e[0] for e in ends), max(e[-1] for e in ends)
    counted = sum(1 for e in ends for t in e if opens < t <= closes)
    window = [s for s in sampler.samples if opens <= s[0] <= closes]
    return {**result, "window_s": round(closes - opens, 1),
            "trials_per_hour": round(counted / (closes - opens) * 3600, 1) if closes > opens else None,
            "utilisation_mean": round(statistics.fmean(s[1] for s in window), 1) if window else None,
            "memory_used_peak_bytes": max((s[2] for s in window), default=None),
            "sampler": sampler.source}


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child is not None:
        return child(args)
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"benchmark": "gpu_share", "skipped": "no CUDA device on this machine: nothing to "
                          "share; run it on a GPU host"}))
        return 0
    levels = []
    for n in args.levels:
        levels.append(level(n, args))
        print(json.dumps(levels[-1]), flush=True)
    single = next((r["trials_per_hour"] for r in levels if r["n"] == 1), None)
    best = max(levels, key=lambda r: r["trials_per_hour"] or 0)
    print(json.dumps({
        "benchmark": "gpu_share", "device": torch.cuda.get_device_name(0), "task": args.task,
        "train_examples": args.train_examples, "batch_size": args.batch_size, "max_length": args.max_length,
        "seconds_per_level": args.seconds, "levels": levels, "best_n": best["n"],
        "utilisation_target_met": (best["utilisation_mean"] or 0) >= UTILISATION_TARGET,
        "more_trials_than_n1": single is not None and any((r["trials_per_hour"] or 0) > single
                                                          for r in levels if r["n"] > 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
