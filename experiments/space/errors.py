"""The one error type of the design-space library.

Every rejection names the offending field with a dotted/indexed path (``"choices.grouping[2]"``,
``"budget.fraction"``, ``"num_groups"``) so the web side can attach the message to the right form
input or JSON key without parsing prose.
"""

from __future__ import annotations


class SpaceError(ValueError):
    """Bad input to the design-space library.

    >>> err = SpaceError("num_groups", "must be at least 1, got 0")
    >>> err.field, str(err)
    ('num_groups', 'num_groups: must be at least 1, got 0')
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
