"""Register the bundled GLUE tasks and the default backbone (idempotent)."""
from django.core.management.base import BaseCommand

from experiments.services import seed_bundled


class Command(BaseCommand):
    help = "Create the bundled GLUE tasks and the default MiniLM backbone if they are missing."

    def add_arguments(self, parser):
        parser.add_argument("--skip-backbone", action="store_true",
                            help="only the tasks (the backbone is introspected with torch, ~2 s)")

    def handle(self, *args, skip_backbone: bool, **options):
        created = seed_bundled(backbone=not skip_backbone)
        self.stdout.write(f"Seeded: {created['tasks']} new tasks, {created['backbones']} new backbones.")
