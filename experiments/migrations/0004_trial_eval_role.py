# Issue 10: stage trials (and the final stage's learning-rate tuning) are scored on the selection
# set, the final comparison on the report set. Final-stage trials stored before roles existed were
# the comparison itself: they are marked report.
from django.db import migrations, models


def mark_final_runs_report(apps, schema_editor):
    Trial = apps.get_model("experiments", "Trial")
    Trial.objects.filter(stage__key="final").update(eval_role="report")


class Migration(migrations.Migration):

    dependencies = [
        ("experiments", "0003_search_untrained_decisions"),
    ]

    operations = [
        migrations.AddField(
            model_name="trial",
            name="eval_role",
            field=models.CharField(
                choices=[("selection", "Selection set"), ("report", "Report set")], default="selection",
                help_text="Scored on the selection set (stage trials, final learning-rate tuning) or the "
                          "report set (the final comparison only).",
                max_length=16),
        ),
        migrations.RunPython(mark_final_runs_report, migrations.RunPython.noop),
    ]
