"""Run a whole search from the command line, through the same services as the browser.

    python manage.py pefs_search --tasks sst2,rte --preset quick --auto-approve --local \\
        --samples-per-stage 4 --epochs 1 --train-examples 64 --out results/

By default the trials run on the Celery workers and this command follows the database with one
progress bar per stage; --local trains them in this process (tasks.worker.search_run_local). Without
--auto-approve each stage's recommendation is asked for at the terminal (or, without one, waited
for from the browser). At the end the report (JSON and Markdown) and the winning design are
written to --out.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from experiments import selectors, services
from experiments.models import Backbone, Search, Stage, Task
from experiments.space.presets import PRESETS
from tasks import worker

from .pefs_export import export_results

DEFAULT_USER = "pefs-cli"
FINAL_SEARCH_STATUSES = (Search.Status.COMPLETED, Search.Status.FAILED, Search.Status.CANCELLED)
# Service field -> the flag that sets it, so every error names what to change on the command line.
FLAG_OF_FIELD = {
    "name": "--name", "tasks": "--tasks", "backbone": "--backbone", "budget_kind": "--budget",
    "budget_value": "--budget", "budget": "--budget", "groups": "--groups", "num_groups": "--groups",
    "preset": "--preset", "designs_per_stage": "--samples-per-stage", "epochs": "--epochs",
    "max_train_examples": "--train-examples", "seed": "--seed", "auto_approve": "--auto-approve",
    "name_or_path": "--backbone", "overrides": "--set", "config": "--set", "choice": "choice", "reason": "reason",
    "plan": "limit",
}


def flag_errors(exc: ValidationError) -> str:
    """A service ValidationError as 'FLAG: message' lines (preset fields without a flag: --set FIELD)."""
    if not hasattr(exc, "error_dict"):
        return "; ".join(exc.messages)
    return "; ".join(f"{FLAG_OF_FIELD.get(field, f'--set {field}')}: {' '.join(messages)}"
                     for field, messages in exc.message_dict.items())


def parse_settings(items: list[str]) -> dict[str, Any]:
    """--set FIELD=VALUE items as preset overrides; VALUE is JSON when it parses, else a string."""
    overrides: dict[str, Any] = {}
    for item in items:
        field, sep, raw = item.partition("=")
        if not sep or not field.strip():
            raise CommandError(f"--set: expected FIELD=VALUE, got {item!r}.")
        try:
            overrides[field.strip()] = json.loads(raw)
        except ValueError:
            overrides[field.strip()] = raw
    return overrides


def positive_int(flag: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise CommandError(f"{flag}: must be a whole number >= 1, got {value}.")
    return value


class StageBars:
    """One tqdm bar per stage, advanced from the database (works for workers and --local alike)."""

    def __init__(self, search_id: int, stream: Any) -> None:
        self.search_id, self.stream = search_id, stream
        self.bars: dict[int, tqdm] = {}
        self.last = 0.0

    def refresh(self, *_args: Any, force: bool = False, **_kwargs: Any) -> None:
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        for stage in selectors.stage_progress(search_id=self.search_id):
            bar = self.bars.get(stage.pk)
            if bar is None:
                bar = self.bars[stage.pk] = tqdm(total=stage.total, desc=f"{stage.key:>6}", unit="trial",
                                                 file=self.stream, leave=True, dynamic_ncols=True)
            bar.total = stage.total
            bar.set_postfix_str(f"{stage.status}{f', {stage.failed} failed' if stage.failed else ''}", refresh=False)
            bar.update(stage.done - bar.n)

    def close(self) -> None:
        self.refresh(force=True)
        for bar in self.bars.values():
            bar.close()


class Command(BaseCommand):
    help = "Run a whole PEFS search (on the workers, or in-process with --local) and write its results."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backbone", help="backbone id, name or Hugging Face id/folder (registered if new); "
                                               "default: the bundled MiniLM")
        parser.add_argument("--tasks", required=True, help="comma-separated task names, e.g. sst2,rte")
        parser.add_argument("--preset", default="quick", help=f"one of {', '.join(PRESETS)} (default quick)")
        parser.add_argument("--auto-approve", action="store_true", help="apply every recommendation without asking")
        parser.add_argument("--local", action="store_true", help="train in this process instead of the workers")
        parser.add_argument("--samples-per-stage", type=int, help="designs sampled and trained per stage")
        parser.add_argument("--epochs", type=int, help="training epochs of each stage design")
        parser.add_argument("--train-examples", type=int, help="training examples per task")
        parser.add_argument("--budget", type=float, default=0.005,
                            help="below 1: fraction of the backbone's parameters (0.005 = 0.5%%); "
                                 "otherwise a parameter count (default 0.005)")
        parser.add_argument("--groups", type=int, help="layer groups G (default: the preset's, 4 for paper "
                                                         "and quick, 2 for study)")
        parser.add_argument("--seed", type=int, default=0, help="search seed (default 0)")
        parser.add_argument("--name", help="search name (default: the tasks and preset)")
        parser.add_argument("--user", help=f"owner of the search (default: the only superuser, else {DEFAULT_USER})")
        parser.add_argument("--out", type=Path, help="folder for the results (default ./pefs-search-<id>)")
        parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="preset_fields",
                            help="any other preset field, e.g. --set batch_size=16 --set final_epochs=1 "
                                 "(values are JSON: numbers, true/false, null; repeatable)")
        parser.add_argument("--poll", type=float, default=1.0, help="seconds between progress checks (workers)")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the trials and task-epochs of every stage and the limits, start nothing")

    def handle(self, *args: Any, **o: Any) -> None:
        positive_int("--samples-per-stage", o["samples_per_stage"])
        positive_int("--epochs", o["epochs"])
        positive_int("--train-examples", o["train_examples"])
        positive_int("--groups", o["groups"])
        if o["preset"] not in PRESETS:
            raise CommandError(f"--preset: unknown preset {o['preset']!r}; use one of {', '.join(PRESETS)}.")
        if not o["budget"] > 0:
            raise CommandError(f"--budget: must be positive, got {o['budget']}.")
        if o["poll"] <= 0:
            raise CommandError("--poll: must be positive.")
        if o["out"] is not None and o["out"].exists() and not o["out"].is_dir():
            raise CommandError(f"--out: {o['out']} exists and is not a folder.")

        user = self.resolve_user(o["user"])
        tasks = self.resolve_tasks(user, o["tasks"])
        backbone = self.resolve_backbone(user, o["backbone"])
        overrides = parse_settings(o["preset_fields"])
        overrides.update({key: value for key, value in (("designs_per_stage", o["samples_per_stage"]),
                                                        ("epochs", o["epochs"]),
                                                        ("max_train_examples", o["train_examples"]))
                          if value is not None})
        budget_kind = Search.BudgetKind.FRACTION if o["budget"] < 1 else Search.BudgetKind.ABSOLUTE
        groups = o["groups"] if o["groups"] is not None else PRESETS[o["preset"]].num_groups
        inputs = {"backbone": backbone, "budget_kind": budget_kind, "budget_value": o["budget"], "groups": groups,
                  "preset": o["preset"], "overrides": overrides, "auto_approve": o["auto_approve"], "seed": o["seed"]}
        try:
            self.print_plan(services.search_plan_preview(owner=user, tasks=tasks, **inputs))
            if o["dry_run"]:
                return
            search = services.search_create(
                owner=user, name=o["name"] or f"{','.join(t.name for t in tasks)} ({o['preset']})", tasks=tasks,
                **inputs)
        except ValidationError as exc:
            raise CommandError(flag_errors(exc)) from None
        self.stdout.write(f"Search #{search.pk} {search.name!r}: {search.trials_total} trials queued, budget "
                          f"{search.budget_params:,} parameters, backbone {backbone.display_name}, owner "
                          f"{user.get_username()}.")

        bars = StageBars(search.pk, getattr(self.stderr, "_out", sys.stderr))
        try:
            search = self.run(search, bars=bars, local=o["local"], poll=o["poll"])
        except KeyboardInterrupt:
            services.search_cancel(search=selectors.search_get(search_id=search.pk))
            bars.close()
            raise CommandError(f"Interrupted: search #{search.pk} cancelled.") from None
        bars.close()

        out = o["out"] or Path(f"pefs-search-{search.pk}")
        written = export_results(search=search, out=out)
        self.stdout.write(f"Search #{search.pk} {search.status}; best score "
                          f"{'–' if search.best_score is None else f'{search.best_score:.2f}'}.")
        for path in written:
            self.stdout.write(f"  wrote {path}")
        if search.status == Search.Status.BLOCKED:
            raise CommandError(f"Search #{search.pk} is blocked: {search.error}. Retry its failed trials (the search "
                               f"page, or POST /api/searches/{search.pk}/retry-failed/) or cancel it.")
        if search.status != Search.Status.COMPLETED:
            raise CommandError(f"Search #{search.pk} ended {search.status}: {search.error or 'see the report'}")

    # --- resolving the flags -------------------------------------------------------------------

    def resolve_user(self, username: str | None):
        if not username:
            admin = selectors.user_sole_superuser()
            if admin is not None:
                return admin
        user, created = services.user_ensure(username=username or DEFAULT_USER)
        if created:
            self.stdout.write(f"Created user {user.get_username()} (no password: set one with changepassword).")
        return user

    def resolve_tasks(self, user, spec: str) -> list[Task]:
        names = [name.strip() for name in spec.split(",") if name.strip()]
        if not names:
            raise CommandError("--tasks: name at least one task, e.g. --tasks sst2,rte.")
        if not selectors.task_bundled_seeded():
            services.seed_bundled(backbone=False)
        tasks, unknown = selectors.task_by_names(user=user, names=names)
        if unknown:
            known = ", ".join(selectors.task_list(user=user).values_list("name", flat=True))
            raise CommandError(f"--tasks: unknown task {', '.join(unknown)}; available: {known}.")
        return tasks

    def print_plan(self, plan: dict[str, Any]) -> None:
        """The trials and task-epochs of every stage (with and without halving), each task's example
        sets, the duration estimate, the totals and the limits they must fit."""
        at_most = "at most " if plan["upper_bound"] else ""
        self.stdout.write(f"Plan: {at_most}{plan['trials']:,} trials, {at_most}{plan['task_epochs']:,} task-epochs "
                          f"(limits {plan['limits']['trials_per_search']:,} and "
                          f"{plan['limits']['task_epochs_per_search']:,} per search).")
        if plan.get("halving_eta"):
            ranked = "the selection set's ranking AUC" if plan.get("halving_rank_by") == "auc" else "score"
            self.stdout.write(f"  with successive halving (eta {plan['halving_eta']}, rungs ranked by {ranked}): "
                              f"{plan['task_epochs']:,} task-epochs; without it the same trials: "
                              f"{plan['full_task_epochs']:,}")
            if plan.get("halving_first_rung_steps"):
                self.stdout.write(f"  the first rung ranks designs after {plan['halving_first_rung_steps']:,} "
                                  "optimizer steps")
        if plan.get("halving_note"):
            self.stdout.write(f"  {plan['halving_note']}")
        for stage in plan["stages"]:
            note = f"  ({stage['note']})" if stage["note"] else ""
            halving = stage.get("halving")
            rungs = (f" [rungs at {', '.join(map(str, halving['rungs']))} epochs: "
                     f"{' -> '.join(map(str, halving['per_rung_trials']))} trials; "
                     f"{stage['full_task_epochs']:,} without halving]" if halving else "")
            self.stdout.write(f"  {stage['name']:<8} {stage['designs']:>6,} trials x {stage['epochs']} epochs "
                              f"= {stage['task_epochs']:,} task-epochs{rungs}{note}")
        for sets in plan.get("example_sets") or []:
            roles = "; ".join(sets[role]["description"] for role in ("train", "selection", "report") if sets[role])
            error = f" ({sets['error']})" if sets["error"] else ""
            self.stdout.write(f"  {sets['task']}: {roles}{error}")
        if plan.get("estimate"):
            self.stdout.write(f"Duration: {plan['estimate']['text']}; {plan['estimate']['seconds_per_step']:g} s per "
                              f"step ({plan['estimate']['step_source']}).")
        for problem in plan["problems"]:
            self.stdout.write(f"  over a limit: {problem}")

    def resolve_backbone(self, user, ref: str | None) -> Backbone:
        if not ref:
            backbone = selectors.backbone_default()
            if backbone is None:
                services.seed_bundled(backbone=True)
                backbone = selectors.backbone_default()
            if backbone is None:
                raise CommandError("--backbone: no default backbone is installed; name one.")
            return backbone
        backbone = selectors.backbone_find(user=user, ref=ref)
        if backbone is not None:
            return backbone
        if ref.isdigit():
            raise CommandError(f"--backbone: no backbone #{ref}.")
        self.stdout.write(f"Registering backbone {ref} (introspecting it)...")
        try:
            # Whoever runs this command is on the server: a local folder is theirs to name.
            name = os.path.abspath(ref) if os.path.isdir(ref) else ref
            return services.backbone_register(owner=user, name_or_path=name, operator=True)
        except ValidationError as exc:
            raise CommandError(flag_errors(exc)) from None

    # --- running -------------------------------------------------------------------------------

    def run(self, search: Search, *, bars: StageBars, local: bool, poll: float) -> Search:
        """Drive the search to a final status, approving stages as the flags say."""
        announced_wait = False
        started_at = time.monotonic()
        warned_no_worker = False
        while True:
            if local:
                worker.search_run_local(search=search, progress=bars.refresh)
            else:
                time.sleep(poll)
            bars.refresh(force=True)
            search = selectors.search_get(search_id=search.pk)
            if search.status in FINAL_SEARCH_STATUSES or search.status == Search.Status.BLOCKED:
                return search  # blocked: nothing runs until someone retries or cancels
            if search.status == Search.Status.WAITING:
                stage = selectors.stage_awaiting(search=search)
                if stage is None or search.auto_approve:
                    continue  # the services advance auto-approved searches themselves
                if sys.stdin.isatty():
                    self.approve(stage, search)
                    announced_wait = False
                elif local:
                    raise CommandError(f"Stage {stage.key} waits for approval and --local has no browser to wait "
                                       "for: rerun with --auto-approve, or run at a terminal.")
                elif not announced_wait:
                    tqdm.write(f"Stage {stage.key} waits for approval in the browser (recommended: "
                               f"{stage.recommendation}); rerun with --auto-approve to skip this.", file=sys.stderr)
                    announced_wait = True
            elif not local and not warned_no_worker and time.monotonic() - started_at > 30 and \
                    not selectors.search_has_started(search=search):
                tqdm.write("No trial has started after 30 s: is a Celery worker running (`make run`)? "
                           "Or rerun with --local.", file=sys.stderr)
                warned_no_worker = True

    def approve(self, stage: Stage, search: Search) -> None:
        """Ask at the terminal: Enter approves the recommendation, a choice overrides it (with a reason)."""
        choice, reason = None, ""
        tqdm.write(f"\nStage {stage.key} ({stage.component}) recommends {stage.recommendation}.", file=sys.stderr)
        for stats in (stage.summary or {}).get("choices") or []:  # one dict per choice (space.ChoiceStats)
            mean = "n/a" if stats.get("mean") is None else f"{stats['mean']:.2f}"
            tqdm.write(f"  {stats.get('choice')}: mean {mean} over {stats.get('n')} designs "
                       f"({stats.get('failed', 0)} failed)", file=sys.stderr)
        answer = input("Press Enter to approve, or type another choice: ").strip()
        if answer:
            choice = answer
            reason = input("Reason for overriding the recommendation: ").strip()
        try:
            services.stage_approve(stage=stage, user=search.owner, choice=choice, reason=reason)
        except ValidationError as exc:
            tqdm.write(f"Not approved: {flag_errors(exc)}", file=sys.stderr)
