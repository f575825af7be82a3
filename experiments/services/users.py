"""Accounts the command line acts for (the browser's accounts are Django's own)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction


def user_ensure(*, username: str) -> tuple[AbstractBaseUser, bool]:
    """The user with this name, created without a usable password if missing; (user, created)."""
    with transaction.atomic():
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
    return user, created
