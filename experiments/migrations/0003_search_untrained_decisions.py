# Issue 10: components whose choices all give one design on the backbone are decided without a
# stage, and the record says so. Stored configs with min_successes below 2 (the quick preset's
# old 1) no longer validate (SearchConfig refuses < 2), so they are raised to 2 here: an existing
# database keeps loading its searches.
from django.db import migrations, models

MIN_SUCCESSES = 2


def raise_min_successes(apps, schema_editor):
    Search = apps.get_model("experiments", "Search")
    for search in Search.objects.only("pk", "config").iterator():
        config = search.config or {}
        value = config.get("min_successes")
        if isinstance(value, int) and not isinstance(value, bool) and value < MIN_SUCCESSES:
            search.config = {**config, "min_successes": MIN_SUCCESSES}
            search.save(update_fields=["config"])


class Migration(migrations.Migration):

    dependencies = [
        ("experiments", "0002_remove_task_row_counts"),
    ]

    operations = [
        migrations.AddField(
            model_name="search",
            name="untrained_decisions",
            field=models.JSONField(
                blank=True, default=list,
                help_text="Decision records of components fixed without a stage: every choice gives the "
                          "same design on this backbone (experiments.space.decisions_without_training)."),
        ),
        migrations.RunPython(raise_min_successes, migrations.RunPython.noop),
    ]
