"""A JSON parser with limits: no request body can make the server recurse or buffer without bound.

Python's json module recurses once per nesting level, so a body nested 50,000 levels deep raised
RecursionError inside the parser (a 500 on every JSON endpoint, /api/auth/token/ included). This
parser refuses, with a 400 that says which limit was hit:

- a body larger than ``settings.PEFS_MAX_JSON_BYTES`` (read from Content-Length first, then while
  reading, so a lying Content-Length cannot make it buffer more);
- a document nested deeper than ``settings.PEFS_MAX_JSON_DEPTH`` (checked after parsing, without
  recursion, by the same walk the upload parser uses; deeper than the interpreter's recursion
  limit is refused by the decoder itself).
"""
from __future__ import annotations

import codecs
import json
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from tasks.data.parsing import json_depth

DEFAULT_MAX_JSON_BYTES = 1024 * 1024
DEFAULT_MAX_JSON_DEPTH = 32


def max_json_bytes() -> int:
    return int(getattr(settings, "PEFS_MAX_JSON_BYTES", DEFAULT_MAX_JSON_BYTES))


def max_json_depth() -> int:
    return int(getattr(settings, "PEFS_MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH))


def loads_bounded(text: str, *, max_depth: int) -> Any:
    """json.loads that raises ValueError (never RecursionError) for documents nested too deeply."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    if json_depth(value, limit=max_depth) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return value


def _read_bounded(stream, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        chunk = stream.read(min(64 * 1024, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ParseError(f"JSON body larger than {limit} bytes")


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with a size and a depth limit (see the module docstring)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        limit = max_json_bytes()
        request = parser_context.get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise ParseError(f"JSON body larger than {limit} bytes")
        raw = _read_bounded(stream, limit) if stream is not None else b""
        try:
            text = codecs.decode(raw, encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        try:
            return loads_bounded(text, max_depth=max_json_depth())
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
