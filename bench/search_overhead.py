"""Search overhead (issue 14): a stage through the real path against the same designs back to back.

The real path: a search is created as the Start button does (services.search_create, quick preset,
auto-approve off so only its first stage runs) while one real Celery worker process (as
``make run`` starts it: ``celery -A pefs_web worker -Q gpu,default -c 1``, prefork) waits idle;
its trials go through Redis, the worker's claim, heartbeat, metric recording into the database
and the channel layer, and trial_finish. A channel-layer client in the search's group
("search-<id>") notes when the first metric point arrives.

The floor: the worker is stopped, and the same designs (each trial's design document, data seed,
evaluation set and training settings, exactly as tasks.worker.trial_execute builds them) are
trained back to back in this process by tasks.runner.run_design with one BackboneCache, with
nothing else: no database, no Redis, no callbacks. The floor's backbone loads cold (new cache).
On a CPU both paths are deterministic, so their scores
must agree (``same_scores``). This process has imported torch and the data libraries before
either clock starts; the worker imports them on its first trial (part of the real path and of the
time to the first live point).

Reported (last printed line, one JSON object):

- ``real_wall_s``: from Start (just before search_create) to the last trial's ``finished_at``;
  ``floor_wall_s``: the loop's wall time; ``ratio`` = real / floor (target at most 1.15);
- ``first_point_s``: from Start to the first "trial.metric" event over the channel layer (target
  at most 5 s on an idle worker), and ``search_create_s``, the part of it spent creating the search;
- ``phases_real``: seconds per phase summed over the stage's trials (Trial.timing: queued, data,
  model, first_step, training, evaluation, recording, artifacts, finish, other; see tasks.timing)
  and ``phases_floor`` (DesignOutcome.timing summed; ``other`` is the loop's wall time no phase
  covers); ``training_share_real`` / ``training_share_floor``: pure training over the trials'
  running time (the real one leaves the queue wait out);
- the machine's load average before and after, the task, examples, designs, backbone.

Database: a fresh SQLite file in a temporary folder (or PEFS_BENCH_DATABASE_URL, a throwaway
database). Redis: REDIS_URL, or an embedded server started for the run (pefs_web.embedded_redis).

Usage::

    .venv/bin/python bench/search_overhead.py                      # MiniLM, SST-2, 8 designs (minutes)
    .venv/bin/python bench/search_overhead.py --designs 12 --task mrpc --train-examples 256
    .venv/bin/python bench/search_overhead.py --tiny                # plumbing check: a tiny random BERT

``--tiny`` replaces the bundled MiniLM with a randomly initialised 4-layer, 32-wide BERT (the test
suite's tiny model): the mechanics in seconds, the ratio meaningless.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import Listener  # noqa: E402  (after the path is set)

TARGET_RATIO = 1.15
TARGET_FIRST_POINT_S = 5.0
# Bounds of every flag (a typed number always has an upper one).
DESIGNS = (8, 64)
TRAIN_EXAMPLES = (16, 4096)
EVAL_EXAMPLES = (16, 2000)
TIMEOUT_S = (30, 7200)


def bounded(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got {value}")
        return value
    return parse


def configure_environment(workdir: Path) -> subprocess.Popen | None:
    """Environment for this process and the worker it starts: database, data folder, Redis."""
    os.environ["PEFS_DATA_DIR"] = str(workdir)
    os.environ["DATABASE_URL"] = os.environ.get("PEFS_BENCH_DATABASE_URL") or f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pefs_web.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if os.environ.get("REDIS_URL"):
        return None
    from pefs_web.embedded_redis import start_embedded_redis, wait_for_redis

    proc, url = start_embedded_redis(workdir / "redis")
    wait_for_redis(url)
    os.environ["REDIS_URL"] = url
    return proc


def tiny_backbone(workdir: Path):
    """A random 4-layer, 32-wide BERT with the MiniLM tokenizer, saved and registered as a Backbone."""
    import torch
    import transformers

    from experiments.models import Backbone
    from tasks.peft import HeadSpec, load_backbone
    from tasks.peft.backbones import default_backbone_path

    directory = workdir / "tiny-bert"
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(default_backbone_path()), local_files_only=True)
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    shape = load_backbone(str(directory), head=HeadSpec(problem="classification", num_labels=2)).shape
    return Backbone.objects.create(
        owner=None, name_or_path=str(directory), display_name="tiny-bert (bench)", model_type=shape.model_type,
        family=shape.family, num_layers=shape.num_layers, hidden_size=shape.hidden_size, num_heads=shape.num_heads,
        total_params=shape.total_params, shape=shape.to_dict())


class FirstPoint(Listener):
    """bench/ingest.py's page watching the search (its own channel-layer client), noting when the
    first metric event arrives."""

    def __init__(self, group: str) -> None:
        super().__init__(group)
        self.at: float | None = None
        receive = self.layer.receive

        async def noting(channel: str) -> dict:
            message = await receive(channel)
            if self.at is None and message.get("type") == "trial.metric":
                self.at = time.time()
            return message

        self.layer.receive = noting


def start_worker(log_path: Path, timeout: float = 120.0) -> subprocess.Popen:
    """One trial worker as the launcher starts it; returns once it says it is ready (idle)."""
    from pefs_web.supervisor import spawn

    argv = [sys.executable, "-m", "celery", "-A", "pefs_web", "worker", "-Q", "gpu,default", "-c", "1",
            "--loglevel", "INFO", "-n", f"bench-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    with open(log_path, "ab") as log:
        proc = spawn(argv, env=dict(os.environ), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while " ready." not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    return proc


def run_real(args: argparse.Namespace, workdir: Path) -> dict:
    """The stage through the worker; returns the search, its trials and the measurements."""
    from django.contrib.auth import get_user_model

    from experiments import services
    from experiments.events import search_group
    from experiments.models import Backbone, Task, Trial
    from pefs_web.supervisor import stop_process_tree

    services.seed_bundled(backbone=not args.tiny)
    backbone = tiny_backbone(workdir) if args.tiny else Backbone.objects.get(owner=None, is_default=True)
    task = Task.objects.get(owner=None, name=args.task)
    user = get_user_model().objects.create_user(username="bench", password="bench-password-1")
    worker = start_worker(workdir / "worker.log")
    try:
        started = time.time()
        search = services.search_create(
            owner=user, name="search overhead", tasks=[task], backbone=backbone, preset="quick", seed=args.seed,
            # The tiny model's 0.5% would leave no room for designs: a fixed count, as the tests give it
            **({"budget_kind": "absolute", "budget_value": 6000} if args.tiny else {}),
            overrides={"designs_per_stage": args.designs, "max_train_examples": args.train_examples,
                       "max_eval_examples": args.eval_examples}, auto_approve=False)
        created = time.time()
        listener = FirstPoint(search_group(search.pk))
        listener.start()
        listener.ready.wait(timeout=10)
        stage = search.stages.get(order=0)
        final = (Trial.Status.SUCCEEDED, Trial.Status.FAILED, Trial.Status.CANCELLED)
        deadline = time.monotonic() + args.timeout
        while stage.trials.exclude(status__in=final).exists():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"the stage did not finish in {args.timeout} s:\n"
                                   f"{(workdir / 'worker.log').read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)
        listener.stop.set()
        listener.join(timeout=10)
    finally:
        stop_process_tree(worker, grace=20)
    trials = list(stage.trials.order_by("index"))
    return {"search": search, "trials": trials, "started": started,
            "real_wall_s": max(t.finished_at.timestamp() for t in trials) - started,
            "search_create_s": created - started,
            "first_point_s": None if listener.at is None else listener.at - started}


def run_floor(search, trials) -> dict:
    """The same designs back to back in this process: run_design and one BackboneCache, nothing else."""
    from experiments import selectors
    from tasks import worker
    from tasks.runner import BackboneCache, run_design
    from tasks.train import TrainConfig

    specs = [worker.task_spec(task) for task in selectors.search_tasks(search)]
    cache = BackboneCache()
    phases: dict[str, float] = {}
    scores = []
    started = time.perf_counter()
    for trial in trials:
        config = TrainConfig(**worker.train_config_fields(search.config, seed=worker.trial_data_seed(trial),
                                                          learning_rate=trial.choices.get("learning_rate")))
        try:
            outcome = run_design(trial.design, specs, train_config=config, backbone_cache=cache, role=trial.eval_role)
        except Exception as exc:  # a diverged design fails in both paths alike
            print(f"floor #{trial.index}: {type(exc).__name__}: {exc}", flush=True)
            scores.append(None)
            continue
        scores.append(outcome.score)
        for phase, seconds in outcome.timing.items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    wall = time.perf_counter() - started
    phases["other"] = max(0.0, wall - sum(phases.values()))
    return {"floor_wall_s": wall, "phases_floor": phases, "scores": scores}


def summed_timing(trials) -> dict[str, float]:
    from tasks.timing import add_phases

    total: dict[str, float] = {}
    for trial in trials:
        total = add_phases(total, trial.timing)
    return total


def training_share(phases: dict[str, float]) -> float | None:
    from tasks.timing import RUNNING_PHASES

    running = sum(s for phase, s in phases.items() if phase in RUNNING_PHASES)
    return round(phases.get("training", 0.0) / running, 3) if running else None


def main() -> None:
    from tasks.data.specification import task_names

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", type=bounded(*DESIGNS), default=8,
                        help=f"designs in the stage ({DESIGNS[0]}-{DESIGNS[1]}; the stage may draw a few more "
                             "to give every choice its minimum)")
    parser.add_argument("--task", choices=task_names(offline_only=True), default="sst2", help="a bundled task")
    parser.add_argument("--train-examples", type=bounded(*TRAIN_EXAMPLES), default=512,
                        help="training examples per trial (the quick preset's 512)")
    parser.add_argument("--eval-examples", type=bounded(*EVAL_EXAMPLES), default=300,
                        help="selection examples per trial (the quick preset's 300)")
    parser.add_argument("--seed", type=bounded(0, 2**31 - 1), default=0)
    parser.add_argument("--timeout", type=bounded(*TIMEOUT_S), default=1800, help="seconds the stage may take")
    parser.add_argument("--tiny", action="store_true", help="a tiny random BERT instead of MiniLM (plumbing only)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pefs-overhead-"))
    redis_proc = configure_environment(workdir)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        import tasks.runner  # noqa: F401  torch and the data libraries, before either clock starts

        call_command("migrate", verbosity=0, interactive=False)
        load_before = os.getloadavg()
        real = run_real(args, workdir)
        trials = real["trials"]
        floor = run_floor(real["search"], trials)
        load_after = os.getloadavg()
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)

    phases_real = summed_timing(trials)
    real_scores = [t.score for t in trials]
    ratio = real["real_wall_s"] / floor["floor_wall_s"]
    for trial, floor_score in zip(trials, floor["scores"]):
        print(f"#{trial.index} {trial.status}: {trial.duration_s or 0:.1f} s, score {trial.score} "
              f"(floor {floor_score}); {trial.timing}", flush=True)
    first = real["first_point_s"]
    print(f"real path {real['real_wall_s']:.1f} s, floor {floor['floor_wall_s']:.1f} s: {ratio:.2f}x "
          f"(target {TARGET_RATIO}x); first live point "
          f"{'never' if first is None else f'{first:.1f} s'} after Start", flush=True)
    print(json.dumps({
        "bench": "search_overhead", "backbone": "tiny-bert (random)" if args.tiny else "all-MiniLM-L6-v2 (bundled)",
        "task": args.task, "designs": len(trials), "train_examples": args.train_examples,
        "eval_examples": args.eval_examples, "seed": args.seed,
        "succeeded": sum(1 for t in trials if t.status == "succeeded"),
        "real_wall_s": round(real["real_wall_s"], 2), "floor_wall_s": round(floor["floor_wall_s"], 2),
        "ratio": round(ratio, 3), "target_ratio": TARGET_RATIO,
        "first_point_s": None if first is None else round(first, 2), "target_first_point_s": TARGET_FIRST_POINT_S,
        "search_create_s": round(real["search_create_s"], 2),
        "phases_real": {k: round(v, 2) for k, v in phases_real.items()},
        "phases_floor": {k: round(v, 2) for k, v in floor["phases_floor"].items()},
        "training_share_real": training_share(phases_real), "training_share_floor": training_share(floor["phases_floor"]),
        "same_scores": real_scores == floor["scores"],
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in load_after],
        "ok": ratio <= TARGET_RATIO and first is not None and first <= TARGET_FIRST_POINT_S,
    }))


if __name__ == "__main__":
    main()
