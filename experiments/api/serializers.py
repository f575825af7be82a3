"""Request and response shapes of the REST API (also what drf-spectacular documents).

Input serializers only check the shape of a request; the services own the rules (budget bounds,
upload contents, approval) and answer ValidationError naming the field, which the views pass on
as a 400 with the same field names.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import selectors
from ..models import Artifact, Backbone, Search, Stage, Task, Trial
from ..rungs import rung_label
from .downloads import artifact_download_path
from .query import MAX_ID

# A search's score averages its tasks; more than this is a benchmark suite, not a search.
MAX_SEARCH_TASKS = 16

# A trial row (the REST table and the live trial.status event alike) shows the start of the error;
# the trial detail shows all of it.
ERROR_PREVIEW_CHARS = 300


class CommaListField(serializers.ListField):
    """A list that multipart forms may also send as one comma-separated value ("a,b")."""

    def to_internal_value(self, data: Any) -> list[Any]:
        if isinstance(data, str):
            data = [part for part in (p.strip() for p in data.split(",")) if part]
        elif isinstance(data, list) and len(data) == 1 and isinstance(data[0], str) and "," in data[0]:
            data = [part for part in (p.strip() for p in data[0].split(",")) if part]
        return super().to_internal_value(data)


# --- tasks -----------------------------------------------------------------------------------

class TaskSerializer(serializers.ModelSerializer):
    owned = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = ["id", "name", "display_name", "source", "problem", "text_columns", "label_column",
                  "labels", "metric", "notes", "owned", "created_at"]
        read_only_fields = fields

    def get_owned(self, task: Task) -> bool:
        return task.owner_id is not None


class UploadFileMixin(serializers.Serializer):
    file = serializers.FileField(help_text="A .csv, .tsv or .jsonl file (UTF-8).")

    def validate_file(self, uploaded: Any) -> Any:
        limit = settings.UPLOAD_MAX_BYTES
        if uploaded.size is not None and uploaded.size > limit:
            raise serializers.ValidationError(
                f"{uploaded.name}: {uploaded.size / 2**20:.1f} MiB is over the {limit / 2**20:.0f} MiB limit.")
        return uploaded


class TaskPreviewInputSerializer(UploadFileMixin):
    max_rows = serializers.IntegerField(min_value=1, max_value=50, default=5)


class TaskPreviewSerializer(serializers.Serializer):
    format = serializers.CharField()
    columns = serializers.ListField(child=serializers.CharField())
    rows = serializers.ListField(child=serializers.ListField())
    row_count = serializers.IntegerField(required=False)


class TaskUploadSerializer(UploadFileMixin):
    name = serializers.CharField(max_length=64, help_text="Short id used in designs and the CLI.")
    # The service says "choose one to three" for 4 to 64; the bound keeps a request's list small.
    text_columns = CommaListField(child=serializers.CharField(max_length=128), min_length=1, max_length=64,
                                  help_text="One to three text columns, in order (repeat the field or separate by "
                                            "commas). With three, 'first: second' is the text and the third its pair.")
    label_column = serializers.CharField(max_length=128)
    problem = serializers.ChoiceField(choices=Task.Problem.choices, required=False, allow_blank=True,
                                      help_text="Left out: classification unless the labels are numbers.")
    selection_file = serializers.FileField(required=False, help_text="Optional selection set (same format and "
                                           "columns); without it 10% of the file is held out.")
    report_file = serializers.FileField(required=False, help_text="Optional report set (same format and "
                                        "columns); without it 10% of the file is held out.")


# --- backbones ---------------------------------------------------------------------------------

class BackboneSerializer(serializers.ModelSerializer):
    owned = serializers.SerializerMethodField()

    class Meta:
        model = Backbone
        fields = ["id", "name_or_path", "display_name", "model_type", "family", "num_layers", "hidden_size",
                  "num_heads", "total_params", "is_default", "owned", "created_at"]
        read_only_fields = fields

    def get_owned(self, backbone: Backbone) -> bool:
        return backbone.owner_id is not None


class BackboneDetailSerializer(BackboneSerializer):
    class Meta(BackboneSerializer.Meta):
        fields = [*BackboneSerializer.Meta.fields, "shape"]
        read_only_fields = fields


class BackboneRegisterSerializer(serializers.Serializer):
    name_or_path = serializers.CharField(max_length=512, help_text="Hugging Face model id or a local folder.")
    display_name = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")


class BudgetQuerySerializer(serializers.Serializer):
    budget_kind = serializers.ChoiceField(choices=Search.BudgetKind.choices, default=Search.BudgetKind.FRACTION)
    budget_value = serializers.FloatField(help_text="0.005 for 0.5% of the backbone, or a parameter count.")


class BudgetPreviewSerializer(serializers.Serializer):
    budget_params = serializers.IntegerField()
    fraction = serializers.FloatField()
    backbone_params = serializers.IntegerField(required=False)


# --- searches --------------------------------------------------------------------------------

class StageRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Stage
        fields = ["id", "key", "status"]
        read_only_fields = fields


class SearchSerializer(serializers.ModelSerializer):
    """One row of the search list."""

    current_stage = StageRefSerializer(read_only=True, allow_null=True)
    backbone = serializers.SerializerMethodField()
    tasks = serializers.SerializerMethodField()
    elapsed_s = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField(help_text="Why the search is blocked or failed; empty otherwise.")

    class Meta:
        model = Search
        fields = ["id", "name", "status", "current_stage", "trials_done", "trials_total", "best_score",
                  "backbone", "tasks", "preset", "auto_approve", "budget_kind", "budget_value", "budget_params",
                  "groups", "seed", "created_at", "finished_at", "elapsed_s", "error"]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "properties": {"id": {"type": "integer"},
                                                           "display_name": {"type": "string"}}})
    def get_backbone(self, search: Search) -> dict[str, Any]:
        return {"id": search.backbone.pk, "display_name": search.backbone.display_name}

    def get_tasks(self, search: Search) -> list[str]:
        return [task.name for task in search.tasks.all()]

    def get_elapsed_s(self, search: Search) -> float:
        return selectors.search_elapsed_s(search)

    def get_error(self, search: Search) -> str:
        # A retried search runs again; the reason it was blocked no longer applies.
        return search.error if search.status in (Search.Status.BLOCKED, Search.Status.FAILED) else ""


class StageSerializer(serializers.ModelSerializer):
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Stage
        fields = ["id", "search", "order", "key", "component", "status", "recommendation", "decision",
                  "decided_by", "decided_automatically", "decided_at", "override_reason", "created_at",
                  "finished_at"]
        read_only_fields = fields


class StageDetailSerializer(StageSerializer):
    """A stage with its spaces, plan, per-choice statistics, trial counts, best trials and the
    examples its numbers were scored on."""

    trial_counts = serializers.SerializerMethodField()
    best_trials = serializers.SerializerMethodField()
    scored_on = serializers.SerializerMethodField(
        help_text="Per task, the examples trained on and scored on (split, count, seeds): stage trials and "
                  "final tuning on the selection set, the final comparison on the report set.")

    class Meta(StageSerializer.Meta):
        fields = [*StageSerializer.Meta.fields, "space", "next_space", "plan", "summary", "trial_counts",
                  "best_trials", "scored_on"]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "object"}})
    def get_scored_on(self, stage: Stage) -> dict[str, Any]:
        role = Trial.Role.REPORT if stage.key == "final" else Trial.Role.SELECTION
        return selectors.stage_example_sets(stage=stage, role=role)

    def get_trial_counts(self, stage: Stage) -> dict[str, int]:
        return selectors.stage_trial_counts(stage=stage)

    def get_best_trials(self, stage: Stage) -> list[dict[str, Any]]:
        return selectors.stage_best_trials(stage=stage)


class ArtifactSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = ["id", "kind", "task", "trial", "size_bytes", "sha256", "created_at", "download_url"]
        read_only_fields = fields

    def get_download_url(self, artifact: Artifact) -> str | None:
        return artifact_download_path(artifact)


class SearchDetailSerializer(SearchSerializer):
    stages = StageSerializer(many=True, read_only=True)
    artifacts = ArtifactSerializer(many=True, read_only=True)

    class Meta(SearchSerializer.Meta):
        fields = [*SearchSerializer.Meta.fields, "config", "stages", "artifacts"]
        read_only_fields = fields


class SearchCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128)
    tasks = CommaListField(child=serializers.CharField(max_length=128), min_length=1, max_length=MAX_SEARCH_TASKS,
                           help_text="Task ids or names (bundled or your uploads).")
    backbone = serializers.CharField(help_text="Backbone id or name_or_path.")
    budget_kind = serializers.ChoiceField(choices=Search.BudgetKind.choices, default=Search.BudgetKind.FRACTION)
    budget_value = serializers.FloatField(default=0.005)
    groups = serializers.IntegerField(min_value=1, max_value=64, default=4)
    preset = serializers.CharField(max_length=32, default="quick")
    overrides = serializers.DictField(required=False, default=dict, help_text="Preset fields to change.")
    auto_approve = serializers.BooleanField(default=False)
    seed = serializers.IntegerField(default=0)
    dry_run = serializers.BooleanField(default=False, help_text="Start nothing: answer the search's plan "
                                       "(trials and task-epochs per stage, totals, limits) with 200.")

    def validate_tasks(self, refs: list[str]) -> list[Task]:
        user = self.context["request"].user
        visible = selectors.task_list(user=user)
        ids = [int(ref) for ref in refs if ref.isdigit() and int(ref) <= MAX_ID]
        by_id = {task.pk: task for task in visible.filter(pk__in=ids)}
        names = [ref for ref in refs if not ref.isdigit()]
        by_name, unknown = selectors.task_by_names(user=user, names=names)
        unknown += [ref for ref in refs if ref.isdigit() and int(ref) not in by_id]
        if unknown:
            raise serializers.ValidationError(f"Unknown task: {', '.join(unknown)}.")
        named = iter(by_name)
        tasks = [by_id[int(ref)] if ref.isdigit() else next(named) for ref in refs]
        if len({task.pk for task in tasks}) != len(tasks):
            raise serializers.ValidationError("A task is listed twice.")
        return tasks

    def validate_backbone(self, ref: str) -> Backbone:
        backbone = selectors.backbone_find(user=self.context["request"].user, ref=ref.strip())
        if backbone is None:
            raise serializers.ValidationError(f"Unknown backbone {ref!r}; register it first.")
        return backbone


class StagePlanSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    designs = serializers.IntegerField(help_text="Trials the stage trains.")
    raised_from = serializers.IntegerField(allow_null=True)
    epochs = serializers.IntegerField()
    task_epochs = serializers.IntegerField(help_text="With successive halving, where the stage halves.")
    full_task_epochs = serializers.IntegerField(help_text="The same trials without halving.")
    halving = serializers.DictField(allow_null=True, help_text="{eta, rungs (epochs), per_rung_trials, "
                                    "trial_epochs, full_trial_epochs}; null without halving.")
    upper_bound = serializers.BooleanField(help_text="Runs only for a group S3 tunes.")
    note = serializers.CharField(allow_blank=True)


class SearchPlanSerializer(serializers.Serializer):
    """What a search would train, before it starts (POST /api/searches/ with dry_run)."""

    stages = StagePlanSerializer(many=True)
    tasks = serializers.IntegerField()
    trials = serializers.IntegerField()
    task_epochs = serializers.IntegerField(help_text="With successive halving (halving_eta), if set.")
    full_task_epochs = serializers.IntegerField(help_text="The same trials, each trained for every epoch.")
    halving_eta = serializers.IntegerField(allow_null=True)
    halving_rank_by = serializers.ChoiceField(choices=["auc", "score"], allow_null=True,
                                              help_text="What halving's rungs rank each choice's designs by; "
                                                        "null without halving.")
    halving_first_rung_steps = serializers.IntegerField(
        allow_null=True, help_text="Optimizer steps (per task) each design trains before the first rung "
                                   "ranks it (halving_min_steps); null without halving or with all examples.")
    halving_note = serializers.CharField(allow_blank=True, help_text="Why halving_eta halves no stage; empty "
                                                                     "when a stage halves or halving is off.")
    steps_per_epoch = serializers.IntegerField(allow_null=True, help_text="Optimizer steps of one epoch on one "
                                               "task; null with all training examples.")
    upper_bound = serializers.BooleanField(help_text="Totals assume S3 tunes every group (the most it can).")
    example_sets = serializers.ListField(child=serializers.DictField(), help_text=(
        "Per task: its training examples, selection set and report set (split, pool, count, seed)."))
    estimate = serializers.DictField(help_text="Duration: {minutes, workers, workers_counted, seconds_per_step, "
                                               "step_source, steps, text}; an estimate.")
    limits = serializers.DictField(child=serializers.IntegerField())
    problems = serializers.ListField(child=serializers.CharField(),
                                     help_text="The limits the search passes; empty: it may start.")


class SearchRetrySerializer(serializers.Serializer):
    retried = serializers.IntegerField()


class StageApproveSerializer(serializers.Serializer):
    choice = serializers.CharField(required=False, allow_null=True, allow_blank=True, default=None,
                                   help_text="Left out: the recommendation. Another choice needs a reason.")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


# --- trials ----------------------------------------------------------------------------------

# One field instance formats every timestamp of a trial row as DRF's DateTimeField does.
_DATETIME = serializers.DateTimeField()


class TrialSerializer(serializers.ModelSerializer):
    """One row of the trial table (no design document: see the trial detail)."""

    stage_key = serializers.CharField(source="stage.key", read_only=True)
    strategies = serializers.SerializerMethodField(help_text="Per layer, strategy codes: A, P, B, L.")
    error = serializers.SerializerMethodField()
    rung_label = serializers.SerializerMethodField(
        help_text="Successive halving: the trial's rung, or the rung it was halted after; empty without halving.")

    class Meta:
        model = Trial
        fields = ["id", "stage", "stage_key", "index", "kind", "eval_role", "label", "choices", "strategies", "seed",
                  "status", "attempt", "cancel_requested", "score", "trainable_params", "optimised_params",
                  "head_params", "duration_s", "rung", "halted", "rung_scores", "rung_label",
                  "queued_at", "started_at", "finished_at", "error"]
        read_only_fields = fields

    def get_strategies(self, trial: Trial) -> list[str]:
        return selectors.trial_strategy_strip(trial.design)

    def get_error(self, trial: Trial) -> str:
        return trial.error[:ERROR_PREVIEW_CHARS]

    def get_rung_label(self, trial: Trial) -> str:
        return rung_label(trial)

    def to_representation(self, trial: Trial) -> dict[str, Any]:
        """The row built directly: DRF's generic walk over the 26 fields cost about 0.4 ms a row, most
        of a 50-row page of the trials API (issue 14). The same dict, key for key
        (tests/experiments/test_api_rows.py compares it with the generic walk in every state)."""
        stamp = _DATETIME.to_representation
        return {
            "id": trial.pk, "stage": trial.stage_id, "stage_key": trial.stage.key, "index": trial.index,
            "kind": trial.kind, "eval_role": trial.eval_role, "label": trial.label, "choices": trial.choices,
            "strategies": self.get_strategies(trial), "seed": trial.seed, "status": trial.status,
            "attempt": trial.attempt, "cancel_requested": trial.cancel_requested,
            "score": None if trial.score is None else float(trial.score),
            "trainable_params": trial.trainable_params, "optimised_params": trial.optimised_params,
            "head_params": trial.head_params,
            "duration_s": None if trial.duration_s is None else float(trial.duration_s),
            "rung": trial.rung, "halted": trial.halted, "rung_scores": trial.rung_scores,
            "rung_label": self.get_rung_label(trial),
            "queued_at": None if trial.queued_at is None else stamp(trial.queued_at),
            "started_at": None if trial.started_at is None else stamp(trial.started_at),
            "finished_at": None if trial.finished_at is None else stamp(trial.finished_at),
            "error": self.get_error(trial),
        }


class TrialDetailSerializer(TrialSerializer):
    class Meta(TrialSerializer.Meta):
        fields = [*TrialSerializer.Meta.fields, "search", "design", "scores", "notes", "worker", "heartbeat_at",
                  "timing"]
        read_only_fields = fields

    def to_representation(self, trial: Trial) -> dict[str, Any]:
        return serializers.ModelSerializer.to_representation(self, trial)  # one trial: the generic walk

    def get_error(self, trial: Trial) -> str:
        return trial.error


class TrialQuerySerializer(serializers.Serializer):
    status = CommaListField(child=serializers.ChoiceField(choices=Trial.Status.choices), required=False,
                            help_text="One or more statuses, comma-separated.")
    stage = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="A stage id of this search.")
    kind = CommaListField(child=serializers.ChoiceField(choices=Trial.Kind.choices), required=False)
    ordering = serializers.CharField(required=False, default="index",
                                     help_text="index, score, trainable_params, duration_s, started_at or "
                                               "finished_at; prefix - for descending. Missing values last.")


# --- metrics -----------------------------------------------------------------------------------

class MetricQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, max_value=MAX_ID, default=0, help_text="Cursor: the `next` of the previous answer.")
    trial = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    stage = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    max_points = serializers.IntegerField(min_value=1, max_value=selectors.METRICS_MAX_POINTS,
                                          default=selectors.METRICS_DEFAULT_POINTS)


class MetricSeriesSerializer(serializers.Serializer):
    trial = serializers.IntegerField()
    attempt = serializers.IntegerField()
    name = serializers.CharField(help_text='"<task>:<metric>", e.g. "sst2:loss".')
    steps = serializers.ListField(child=serializers.IntegerField())
    values = serializers.ListField(child=serializers.FloatField())


class MetricPageSerializer(serializers.Serializer):
    next = serializers.IntegerField(help_text="Pass as ?after= to continue.")
    more = serializers.BooleanField(help_text="True: more points already exist after `next`.")
    scanned = serializers.IntegerField()
    returned = serializers.IntegerField()
    downsampled = serializers.BooleanField()
    series = MetricSeriesSerializer(many=True)


class DownloadErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
