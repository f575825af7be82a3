"""Errors of the PEFT engine's pure-Python side, each naming the offending field.

They live apart from ``budget`` and ``design`` so that the strategy registry, which both of those
read, can raise them without an import cycle. ``budget`` and ``design`` re-export them.
"""

from __future__ import annotations


class FieldError(ValueError):
    """A ValueError that names the offending field (``.field``) apart from its ``.message``."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class BudgetError(FieldError):
    """A bad argument to the counting or solving functions."""


class InfeasibleBudget(BudgetError):
    """The target cannot be met with positive integer sizes within the tolerance.

    ``.field`` is ``"budget"`` for the overall total, or ``"layers[i].<strategy>"`` for a strategy
    whose share of its layer's budget is too small for size 1.
    """


class DesignError(FieldError):
    """An invalid design or option; ``.field`` is a path such as ``layers[3].lora``."""

    def under(self, prefix: str) -> DesignError:
        """The same error with its field placed under ``prefix`` (e.g. ``options.lora``)."""
        return DesignError(f"{prefix}.{self.field}" if self.field else prefix, self.message)
