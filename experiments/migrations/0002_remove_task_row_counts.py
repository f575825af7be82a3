# Task.train_rows and Task.eval_rows were never written (always 0) yet shown by the API and admin.
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("experiments", "0001_initial"),
    ]

    operations = [
        migrations.RemoveField(model_name="task", name="train_rows"),
        migrations.RemoveField(model_name="task", name="eval_rows"),
    ]
