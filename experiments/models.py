"""What PEFS stores. The database is the record; Redis only carries messages.

Only experiments.services writes these rows (see STYLE.md); everything else reads through
experiments.selectors.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Task(models.Model):
    """A fine-tuning task: a bundled GLUE task, an uploaded file, or a hub dataset id."""

    class Source(models.TextChoices):
        BUNDLED = "bundled", "Bundled GLUE"
        UPLOAD = "upload", "Uploaded file"
        HUB = "hub", "Hub dataset"

    class Problem(models.TextChoices):
        CLASSIFICATION = "classification"
        REGRESSION = "regression"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="tasks", help_text="Empty for bundled tasks, which everyone sees.")
    name = models.SlugField(max_length=64, help_text="Short id used in designs and the CLI, e.g. sst2.")
    display_name = models.CharField(max_length=128)
    source = models.CharField(max_length=16, choices=Source.choices)
    path = models.CharField(max_length=512, blank=True, help_text=(
        'Uploaded file: its name in the "uploads" storage (a folder or a bucket; PEFS_STORAGE).'))
    hub_id = models.CharField(max_length=256, blank=True)
    text_columns = models.JSONField(default=list)
    label_column = models.CharField(max_length=128)
    problem = models.CharField(max_length=16, choices=Problem.choices, default=Problem.CLASSIFICATION)
    labels = models.JSONField(default=list, blank=True)
    metric = models.CharField(max_length=32, default="accuracy")
    notes = models.TextField(blank=True)
    spec = models.JSONField(default=dict, help_text="tasks.data.TaskSpec.to_dict(): how the trainer loads it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="task_unique_name_per_owner"),
            models.UniqueConstraint(fields=["name"], condition=Q(owner__isnull=True),
                                    name="task_unique_bundled_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Backbone(models.Model):
    """A pretrained transformer, introspected once (layers, sizes) so the web never loads torch."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="backbones", help_text="Empty for the bundled default.")
    name_or_path = models.CharField(max_length=512, help_text="Hugging Face id or local folder.")
    display_name = models.CharField(max_length=128)
    model_type = models.CharField(max_length=64)
    family = models.CharField(max_length=32)
    num_layers = models.PositiveIntegerField()
    hidden_size = models.PositiveIntegerField()
    num_heads = models.PositiveIntegerField()
    total_params = models.BigIntegerField()
    shape = models.JSONField(help_text="tasks.peft.budget.BackboneShape.to_dict()")
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_default", "display_name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name_or_path"], name="backbone_unique_per_owner"),
        ]

    def __str__(self) -> str:
        return self.display_name


class Search(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        WAITING = "waiting", "Waiting for approval"
        # A stage's trials are all final but too few succeeded to decide it; Search.error says why.
        BLOCKED = "blocked"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class BudgetKind(models.TextChoices):
        FRACTION = "fraction", "Fraction of backbone parameters"
        ABSOLUTE = "absolute", "Absolute parameter count"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="searches")
    name = models.CharField(max_length=128)
    tasks = models.ManyToManyField(Task, related_name="searches")
    backbone = models.ForeignKey(Backbone, on_delete=models.PROTECT, related_name="searches")
    budget_kind = models.CharField(max_length=16, choices=BudgetKind.choices, default=BudgetKind.FRACTION)
    budget_value = models.FloatField(help_text="0.005 for 0.5% of backbone parameters, or a count.")
    budget_params = models.BigIntegerField(help_text="The budget as a parameter count.")
    groups = models.PositiveSmallIntegerField(default=4)
    preset = models.CharField(max_length=32, default="quick")
    config = models.JSONField(default=dict, help_text="Every preset field, as resolved at creation.")
    untrained_decisions = models.JSONField(
        default=list, blank=True,
        help_text="Decision records of components fixed without a stage: every choice gives the same "
                  "design on this backbone (experiments.space.decisions_without_training).")
    auto_approve = models.BooleanField(default=False)
    seed = models.IntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    current_stage = models.ForeignKey("Stage", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    trials_total = models.PositiveIntegerField(default=0)
    trials_done = models.PositiveIntegerField(default=0)
    best_score = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class Stage(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        AWAITING = "awaiting", "Waiting for approval"
        APPROVED = "approved"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    search = models.ForeignKey(Search, on_delete=models.CASCADE, related_name="stages")
    order = models.PositiveSmallIntegerField()
    key = models.CharField(max_length=16, help_text="S0, S1, S2, S3, S4.G1 ... or final.")
    component = models.CharField(max_length=32, blank=True, help_text="What this stage decides.")
    space = models.JSONField(help_text="The design space this stage samples from.")
    next_space = models.JSONField(null=True, blank=True, help_text="The space after the decision.")
    plan = models.JSONField(default=dict, blank=True,
                            help_text="How the stage was sampled: requested, redraws, shortfall; final plan.")
    summary = models.JSONField(null=True, blank=True, help_text="Per-choice statistics.")
    recommendation = models.JSONField(null=True, blank=True)
    decision = models.JSONField(null=True, blank=True, help_text="The chosen option.")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_automatically = models.BooleanField(default=False)
    decided_at = models.DateTimeField(null=True, blank=True)
    override_reason = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    rung = models.PositiveSmallIntegerField(
        default=0, help_text="Successive halving: the rung the stage's trials are training to (0 without "
                             "halving; the rungs' epochs are in plan['halving']).")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["search", "order"]
        constraints = [models.UniqueConstraint(fields=["search", "order"], name="stage_unique_order")]

    def __str__(self) -> str:
        return f"{self.search_id}:{self.key}"


class Trial(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    class Kind(models.TextChoices):
        SAMPLE = "sample", "Sampled design"
        SELECTED = "selected", "Selected design"
        BASELINE = "baseline", "Baseline"

    class Role(models.TextChoices):
        """The evaluation set a trial is scored on (tasks.data.roles): disjoint from each other and
        from the training examples."""

        SELECTION = "selection", "Selection set"
        REPORT = "report", "Report set"

    search = models.ForeignKey(Search, on_delete=models.CASCADE, related_name="trials")
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="trials")
    index = models.PositiveIntegerField(help_text="Position within the stage.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SAMPLE)
    eval_role = models.CharField(
        max_length=16, choices=Role.choices, default=Role.SELECTION,
        help_text="Scored on the selection set (stage trials, final learning-rate tuning) or the report "
                  "set (the final comparison only).")
    label = models.CharField(max_length=64, blank=True, help_text="Baseline name or a short design label.")
    choices = models.JSONField(default=dict, help_text="Abstract choices: grouping, allocation, groups, ...")
    design = models.JSONField(help_text="Concrete design, schema pefs.design/1.")
    seed = models.IntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempt = models.PositiveSmallIntegerField(default=0, help_text="Incremented on every delivery.")
    worker = models.CharField(max_length=128, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(
        null=True, blank=True, db_index=True,
        help_text="When this attempt's message went to the broker; empty while the trial waits its turn "
                  "(fair queueing: at most PEFS_SENT_PER_SEARCH messages per search at a time).")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    score = models.FloatField(null=True, blank=True)
    scores = models.JSONField(default=dict, blank=True, help_text="Per task: metrics and 0-100 score.")
    trainable_params = models.BigIntegerField(
        default=0, help_text="Stored PEFT parameters: the budget's count (full fine-tuning: the backbone's).")
    head_params = models.BigIntegerField(default=0, help_text="The task head (pooler + classifier), the same "
                                                              "module for every arm of a comparison.")
    optimised_params = models.BigIntegerField(
        null=True, blank=True,
        help_text="Every parameter the optimiser updated: stored PEFT parameters, the head and what trains but "
                  "is not stored (a prefix reparameterisation). Empty until the trial has trained.")
    duration_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    notes = models.JSONField(default=list, blank=True)
    rung = models.PositiveSmallIntegerField(
        default=0, help_text="Successive halving: the rung this trial trains (or trained) to; 0 without halving.")
    rung_scores = models.JSONField(
        default=list, blank=True, help_text='One {"rung", "epochs", "score"} per rung the trial finished.')
    halted = models.BooleanField(
        default=False, help_text="Stopped by successive halving after its rung: not among the best 1/eta "
                                 "of its choice. Its score is from fewer epochs; the stage's statistics "
                                 "leave it out.")
    checkpoint = models.JSONField(
        null=True, blank=True,
        help_text='The last rung checkpoint: {"attempt", "step", "epochs"}; a survivor resumes from it.')
    timing = models.JSONField(
        default=dict, blank=True,
        help_text="Phase -> seconds: queued, data, model, first_step, training, evaluation, artifacts, finish "
                  "(summed over a survivor's rung runs).")

    class Meta:
        ordering = ["stage", "index"]
        constraints = [models.UniqueConstraint(fields=["stage", "index"], name="trial_unique_index")]
        indexes = [
            models.Index(fields=["search", "status"]),
            models.Index(fields=["search", "-score"]),
            models.Index(fields=["stage", "status"]),
            models.Index(fields=["status", "heartbeat_at"]),
        ]

    def __str__(self) -> str:
        return f"trial {self.pk} ({self.stage.key} #{self.index})"


class MetricPoint(models.Model):
    """One value of one series. Names are "<task>:<metric>", e.g. "sst2:loss", "sst2:score"."""

    trial = models.ForeignKey(Trial, on_delete=models.CASCADE, related_name="metric_points")
    attempt = models.PositiveSmallIntegerField()
    step = models.PositiveIntegerField()
    name = models.CharField(max_length=64)
    value = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trial", "attempt", "step", "name"], name="metric_unique_point"),
        ]
        indexes = [models.Index(fields=["trial", "attempt", "name", "step"])]


class Artifact(models.Model):
    class Kind(models.TextChoices):
        DESIGN = "design", "Design JSON"
        WEIGHTS = "weights", "PEFT weights (.safetensors)"
        PEFT_EXPORT = "peft_export", "Hugging Face PEFT export"
        REPORT_JSON = "report_json", "Report (JSON)"
        REPORT_MD = "report_md", "Report (Markdown)"

    search = models.ForeignKey(Search, on_delete=models.CASCADE, related_name="artifacts")
    trial = models.ForeignKey(Trial, null=True, blank=True, on_delete=models.SET_NULL, related_name="artifacts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    task = models.CharField(max_length=64, blank=True)
    path = models.CharField(max_length=512, help_text=(
        "The file's name in the default storage (a folder or a bucket; PEFS_STORAGE)."))
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["search", "kind", "task"]


class Worker(models.Model):
    """A trial worker (one `celery worker -Q gpu` node), as its own heartbeat last described it.

    Written only by the worker process (experiments.services.workers.worker_beat, every
    PEFS_HEARTBEAT_SECONDS); a row not seen for PEFS_STALE_SECONDS is shown as lost. The trials
    it runs are Trial rows with status running and ``worker`` equal to this ``name``."""

    name = models.CharField(max_length=128, unique=True, help_text="'<host>:<celery node name>', as Trial.worker.")
    hostname = models.CharField(max_length=255)
    device = models.CharField(max_length=16, help_text="'cpu' or 'cuda'.")
    device_name = models.CharField(max_length=255, blank=True, help_text="The GPU's name; empty on CPU.")
    device_memory_bytes = models.BigIntegerField(null=True, blank=True, help_text="The GPU's total memory.")
    concurrency = models.PositiveSmallIntegerField(default=1, help_text="Trials it runs at once.")
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Set when it shut down cleanly.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
