"""Create (or reset the password of) a local administrator account.

The password never travels on the command line (where `ps` shows it to every user): it comes from
the environment variable PEFS_ADMIN_PASSWORD, or from --password-file PATH ("-" reads stdin).

    PEFS_ADMIN_PASSWORD=... python manage.py pefs_admin --username admin
    python manage.py pefs_admin --password-file - < password.txt
"""
import os
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

PASSWORD_VARIABLE = "PEFS_ADMIN_PASSWORD"


def read_password(password_file: str | None) -> str:
    if password_file == "-":
        return sys.stdin.readline().rstrip("\r\n")
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                return handle.readline().rstrip("\r\n")
        except OSError as error:
            raise CommandError(f"--password-file: cannot read {password_file}: {error.strerror}.") from None
    password = os.environ.get(PASSWORD_VARIABLE)
    if password is None:
        raise CommandError(f"Give the password in {PASSWORD_VARIABLE} or with --password-file PATH ('-': stdin).")
    return password


class Command(BaseCommand):
    help = "Create a local superuser, or set its password if it exists."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password-file", metavar="PATH",
                            help=f"read the password from the first line of PATH ('-': stdin); "
                                 f"otherwise from {PASSWORD_VARIABLE}")
        parser.add_argument("--email", default="")
        parser.add_argument("--if-missing", action="store_true",
                            help="only create the account; leave an existing one as it is")

    def handle(self, *args, username: str, password_file: str | None, email: str, if_missing: bool, **options):
        password = read_password(password_file)
        if len(password) < 8:
            raise CommandError("The password: use at least 8 characters.")
        User = get_user_model()
        if if_missing and User.objects.filter(username=username).exists():
            self.stdout.write(f"Administrator {username} exists; left as it is.")
            return
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"{'Created' if created else 'Updated'} administrator {username}.")
