"""Query strings accept only what each endpoint documents.

An unknown parameter used to be ignored (a typo silently returned everything), and trial filters
passed their names into ORM lookups (``choice.grouping__regex=(`` reached the database as a regular
expression). Every API view lists its parameters; anything else is a 400 naming the parameter.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.http import QueryDict
from rest_framework.exceptions import ValidationError

# Accepted everywhere: DRF's format override (?format=json).
ALWAYS_ALLOWED = frozenset({"format"})
MAX_VALUE_LENGTH = 256
# The largest id a 64-bit signed primary key can hold; larger numbers cannot name an object.
MAX_ID = 2**63 - 1


def check_query_params(params: QueryDict, *, allowed: Iterable[str], prefixes: Iterable[str] = ()) -> None:
    """Raise ValidationError naming the first parameter the endpoint does not document, or a value
    longer than any documented value can be."""
    allowed = ALWAYS_ALLOWED | set(allowed)
    prefixes = tuple(prefixes)
    errors: dict[str, list[str]] = {}
    for key in params:
        if key not in allowed and not (prefixes and key.startswith(prefixes)):
            known = ", ".join(sorted(allowed - ALWAYS_ALLOWED) + [f"{p}<name>" for p in prefixes]) or "none"
            errors[key] = [f"Unknown query parameter; this endpoint accepts: {known}."]
        elif any(len(value) > MAX_VALUE_LENGTH for value in params.getlist(key)):
            errors[key] = [f"Longer than {MAX_VALUE_LENGTH} characters."]
    if errors:
        raise ValidationError(errors)
