"""Create (or reset the password of) a local administrator account."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create a local superuser, or set its password if it exists."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", required=True)
        parser.add_argument("--email", default="")
        parser.add_argument("--if-missing", action="store_true",
                            help="only create the account; leave an existing one as it is")

    def handle(self, *args, username: str, password: str, email: str, if_missing: bool, **options):
        if len(password) < 8:
            raise CommandError("--password: use at least 8 characters.")
        User = get_user_model()
        if if_missing and User.objects.filter(username=username).exists():
            self.stdout.write(f"Administrator {username} exists; left as it is.")
            return
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"{'Created' if created else 'Updated'} administrator {username}.")
