"""Training-step cost of PEFS designs on the default MiniLM backbone (CPU).

For each configuration a fresh subprocess loads all-MiniLM-L6-v2, prepares it, and runs AdamW
training steps on a random batch (16 x 64 tokens). It reports the median step time (forward,
backward, optimiser step) in wall-clock and in process CPU time (all threads; far less
sensitive than wall-clock to other processes sharing the machine), and the peak memory of
training: the kernel's resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs
just before the first step) minus the resident set before it, i.e. what activations, gradients
and optimiser state add on top of the loaded model.

Configurations: head only (frozen floor); adapter, prefix, LoRA at 0.5% of the backbone and BitFit
(fixed size) on every layer; the paper's mixed S4 design at 0.5% (spindle groups 1-2-2-1 carrying
A+L, A+P, A+P+B, P+B+L, design defaults: prefix MLP reparameterisation on); Hugging Face PEFT
LoRA (query/value, uniform rank) at the same budget; full fine-tuning.

Usage::

    .venv/bin/python bench/peft_step.py                # all configurations, ~2 minutes on 2 cores
    .venv/bin/python bench/peft_step.py --steps 20 --only mixed peft_lora
    .venv/bin/python bench/peft_step.py --rounds 3   # on a shared host: fastest of 3 rounds

The last printed line is one JSON object with every figure and the ratios mixed/peft_lora and
mixed/full.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BATCH, LENGTH, BUDGET = 16, 64, 0.005
CONFIGS = ("head_only", "adapter", "prefix", "bitfit", "lora", "mixed", "peft_lora", "full")
S4_GROUPS = (
    ("adapter", "lora"),
    ("adapter", "prefix"),
    ("adapter", "prefix", "bitfit"),
    ("prefix", "bitfit", "lora"),
)
SPINDLE = (0, 1, 1, 2, 2, 3)  # layer -> group for 6 layers, group sizes 1-2-2-1


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0), so loading peaks are not counted.
    Path("/proc/self/clear_refs").write_text("5")


def _prepare(name: str):
    """Load MiniLM and make it trainable as configuration ``name``; return (model, info)."""
    import torch

    from tasks.peft import HeadSpec, apply, design_from_sizes, load_backbone, solve_sizes

    torch.manual_seed(0)
    backbone = load_backbone(head=HeadSpec("classification", 2))
    model, shape = backbone.model, backbone.shape
    target = BUDGET * shape.total_params
    info: dict = {"backbone_params": shape.total_params}
    if name in ("adapter", "prefix", "lora", "bitfit", "mixed"):
        if name == "mixed":
            strategies = {i: S4_GROUPS[g] for i, g in enumerate(SPINDLE)}
        else:
            strategies = {i: (name,) for i in range(shape.num_layers)}
        if name == "bitfit":
            sizes = {i: {"bitfit": 1} for i in range(shape.num_layers)}
        else:
            sizes = solve_sizes(
                {i: target / shape.num_layers for i in range(shape.num_layers)}, strategies, shape
            ).sizes
        design = design_from_sizes(shape, sizes, seed=0)
        report = apply(backbone, design)
        info.update(
            peft_params=report.peft_total,
            head_params=report.head,
            trainable=report.trainable_total,
            training_only=report.training_only,
            layers=design.to_dict()["layers"],
        )
    elif name == "head_only":
        for p in model.parameters():
            p.requires_grad_(False)
        from tasks.peft.backbones import head_parameters

        for _, p in head_parameters(model):
            p.requires_grad_(True)
    elif name == "peft_lora":
        from peft import LoraConfig, get_peft_model

        # Same budget and head as PEFS: uniform rank on query/value of every layer.
        rank = round(target / (shape.num_layers * 2 * (384 + 384)))
        config = LoraConfig(
            r=rank,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules=["query", "value"],
            modules_to_save=["pooler", "classifier"],
        )
        model = get_peft_model(model, config)
        info.update(
            rank=rank,
            peft_params=sum(p.numel() for n, p in model.named_parameters() if "lora_" in n),
        )
    elif name == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        raise ValueError(f"unknown configuration {name!r}; known: {CONFIGS}")
    info["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, info


def run_one(name: str, steps: int, warmup: int) -> dict:
    """Measure one configuration in this process (call in a fresh subprocess)."""
    import torch

    model, info = _prepare(name)
    model.train()
    g = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, 30000, (BATCH, LENGTH), generator=g),
        "attention_mask": torch.ones(BATCH, LENGTH, dtype=torch.long),
        "labels": torch.randint(0, 2, (BATCH,), generator=g),
    }
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rss_before = _rss_kib("VmRSS")
    _reset_peak_rss()
    times, cpu_times = [], []
    for step in range(warmup + steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    peak = _rss_kib("VmHWM")
    return {
        "config": name,
        "step_s_median": statistics.median(times),
        "step_s_min": min(times),
        "step_cpu_s_median": statistics.median(cpu_times),
        "peak_mem_mib": round((peak - rss_before) / 1024, 1),
        "rss_before_mib": round(rss_before / 1024, 1),
        "threads": torch.get_num_threads(),
        **info,
    }


def _measure_in_subprocess(name: str, steps: int, warmup: int, env: dict) -> dict:
    command = [sys.executable, __file__, "--one", name, "--steps", str(steps)]
    command += ["--warmup", str(warmup)]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="measured steps per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured steps first")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat all configurations; keep the fastest round"
    )
    parser.add_argument("--only", nargs="*", choices=CONFIGS, help="subset of configurations")
    parser.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.warmup)))
        return {}

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    names = args.only or CONFIGS
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names:
            r = _measure_in_subprocess(name, args.steps, args.warmup, env)
            rounds[name].append(r)
            print(
                f"[{round_index + 1}/{args.rounds}] {name:10s} "
                f"step {r['step_s_median'] * 1000:7.1f} ms (min {r['step_s_min'] * 1000:6.1f}, "
                f"cpu {r['step_cpu_s_median'] * 1000:7.1f} ms)  "
                f"peak +{r['peak_mem_mib']:7.1f} MiB  trainable {r['trainable']:>10,}",
                flush=True,
            )
    # Other processes on a shared host only ever slow a round down: keep each configuration's
    # least-disturbed round for time; memory does not depend on them, take its median.
    results = {}
    for name, runs in rounds.items():
        best = dict(min(runs, key=lambda r: r["step_s_median"]))
        best["peak_mem_mib"] = statistics.median(r["peak_mem_mib"] for r in runs)
        best["rounds_step_s_median"] = [round(r["step_s_median"], 4) for r in runs]
        results[name] = best

    summary: dict = {
        "batch": BATCH,
        "length": LENGTH,
        "budget": BUDGET,
        "device": "cpu",
        "steps": args.steps,
        "rounds": args.rounds,
        "load_average": os.getloadavg(),
        "results": results,
    }
    for other in ("peft_lora", "full"):
        if "mixed" in results and other in results:
            summary[f"mixed/{other}"] = {
                "step_time": round(
                    results["mixed"]["step_s_median"] / results[other]["step_s_median"], 3
                ),
                "step_cpu_time": round(
                    results["mixed"]["step_cpu_s_median"] / results[other]["step_cpu_s_median"], 3
                ),
                "peak_mem": round(
                    results["mixed"]["peak_mem_mib"] / results[other]["peak_mem_mib"], 3
                ),
            }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
