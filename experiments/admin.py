from django.contrib import admin

from .models import Artifact, Backbone, MetricPoint, Search, Stage, Task, Trial


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["name", "display_name", "source", "problem", "metric", "owner"]
    list_filter = ["source", "problem"]
    search_fields = ["name", "display_name"]


@admin.register(Backbone)
class BackboneAdmin(admin.ModelAdmin):
    list_display = ["display_name", "name_or_path", "family", "num_layers", "hidden_size", "total_params", "owner"]
    list_filter = ["family"]


class StageInline(admin.TabularInline):
    model = Stage
    fields = ["order", "key", "status", "decision", "decided_by", "decided_at"]
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(Search)
class SearchAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "status", "backbone", "trials_done", "trials_total", "best_score",
                    "created_at"]
    list_filter = ["status", "preset"]
    search_fields = ["name", "owner__username"]
    inlines = [StageInline]
    raw_id_fields = ["current_stage"]


@admin.register(Stage)
class StageAdmin(admin.ModelAdmin):
    list_display = ["id", "search", "key", "status", "decided_by", "decided_at"]
    list_filter = ["status"]
    raw_id_fields = ["search"]


@admin.register(Trial)
class TrialAdmin(admin.ModelAdmin):
    list_display = ["id", "search", "stage", "index", "kind", "status", "attempt", "score", "trainable_params",
                    "worker"]
    list_filter = ["status", "kind"]
    raw_id_fields = ["search", "stage"]


@admin.register(MetricPoint)
class MetricPointAdmin(admin.ModelAdmin):
    list_display = ["trial", "attempt", "step", "name", "value"]
    raw_id_fields = ["trial"]
    show_full_result_count = False  # counting a million points on every page load is slow


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["search", "kind", "task", "path", "size_bytes", "created_at"]
    list_filter = ["kind"]
    raw_id_fields = ["search", "trial"]
