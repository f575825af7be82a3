"""List searches: id, owner, status, current stage, progress, best score, age."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from experiments import selectors
from experiments.models import Search


class Command(BaseCommand):
    help = "List searches, newest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", help="only this user's searches")
        parser.add_argument("--status", choices=Search.Status.values, help="only searches in this status")
        parser.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")

    def handle(self, *args: Any, user: str | None, status: str | None, limit: int, **options: Any) -> None:
        if limit < 1:
            raise CommandError("--limit: must be at least 1.")
        if user is not None:
            owner = selectors.user_find(username=user)
            if owner is None:
                raise CommandError(f"--user: no user named {user!r}.")
            searches = selectors.search_list(user=owner, status=status)
        else:
            searches = selectors.search_list_all(status=status)
        rows = [("id", "name", "owner", "status", "stage", "trials", "best", "created", "elapsed")]
        for search in searches[:limit]:
            rows.append((
                str(search.pk), search.name[:40], search.owner.get_username(), search.status,
                search.current_stage.key if search.current_stage else "–",
                f"{search.trials_done}/{search.trials_total}",
                "–" if search.best_score is None else f"{search.best_score:.2f}",
                search.created_at.strftime("%Y-%m-%d %H:%M"),
                f"{selectors.search_elapsed_s(search) / 60:.1f} min",
            ))
        if len(rows) == 1:
            self.stdout.write("No searches yet: start one with `manage.py pefs_search` or in the browser.")
            return
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
