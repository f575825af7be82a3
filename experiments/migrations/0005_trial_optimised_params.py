# Issue 10: a trial shows both what it stores (the budget) and what the optimiser updated (head and
# prefix reparameterisation included). Unknown for trials trained before it was recorded: empty.
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("experiments", "0004_trial_eval_role"),
    ]

    operations = [
        migrations.AlterField(
            model_name="trial",
            name="trainable_params",
            field=models.BigIntegerField(
                default=0, help_text="Stored PEFT parameters: the budget's count (full fine-tuning: the backbone's)."),
        ),
        migrations.AlterField(
            model_name="trial",
            name="head_params",
            field=models.BigIntegerField(
                default=0, help_text="The task head (pooler + classifier), the same module for every arm of a "
                                     "comparison."),
        ),
        migrations.AddField(
            model_name="trial",
            name="optimised_params",
            field=models.BigIntegerField(
                blank=True, null=True,
                help_text="Every parameter the optimiser updated: stored PEFT parameters, the head and what trains "
                          "but is not stored (a prefix reparameterisation). Empty until the trial has trained."),
        ),
    ]
