"""The one definition of every PEFT strategy: name, letter code, label, colour, options, cost.

Everything that names a strategy reads it from here: the budget's closed forms
(``tasks.peft.budget``), the design's option groups (``tasks.peft.design``), the engine's
injection modules (``tasks.peft.registry`` imports :attr:`Strategy.implementation`), the design
space's labels (``experiments.space.subsets``: ``"A+P+B"``), the page's template tags and, through
the JSON :func:`ui_description` that every page embeds, the JavaScript charts.

Pure Python on purpose (no torch): the web process and the sampler import it.

Adding a strategy means writing its torch module (a ``StrategySpec`` with ``inject``, registered
with ``tasks.peft.registry.register_strategy``) and one :func:`register` call below with its
descriptor. Registration order is the canonical order (codes ``A+P+B+L``, layer keys in design
documents).

Example:
    >>> names()
    ('adapter', 'prefix', 'bitfit', 'lora')
    >>> code_by_name()["lora"], name_by_code()["B"]
    ('L', 'bitfit')
    >>> ui_description()["prefix"]
    {'code': 'P', 'label': 'Prefix', 'colour': '#f08c00'}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.peft.errors import BudgetError, DesignError

if TYPE_CHECKING:
    from tasks.peft.budget import LayerShape

PROJECTION_ROLES: tuple[str, ...] = ("query", "key", "value", "output")
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("query", "value")
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "tanh", "silu")

#: ``cost(layer, lora_targets) -> (per unit of size, fixed)``: stored parameters of size ``s`` on
#: ``layer`` are ``per_unit * s + fixed``. Linear in the size, which the budget solver relies on.
CostFunction = Callable[["LayerShape", Collection[str]], tuple[int, int]]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Strategy:
    """A strategy's descriptor: what every layer of PEFS needs to know about it.

    ``sized``: False for strategies whose cost is fixed by the architecture (BitFit: a design
    says ``true``, not a size). ``implementation``: the torch module that injects it.
    ``options_class``: the dataclass of its design-wide options (``options.<name>``).
    """

    name: str
    code: str
    label: str
    colour: str
    options_class: type
    cost: CostFunction
    implementation: str
    sized: bool = True
    # Measured (bench/strategy_lr.py), see MEASURED_LEARNING_RATES; a search may put it in
    # options.<name>.learning_rate. Not applied by itself: an unset rate is the trial's base rate.
    default_learning_rate: float | None = None

    def __post_init__(self) -> None:
        if not (len(self.code) == 1 and self.code.isupper()):
            raise ValueError(f"strategy code must be one capital letter, got {self.code!r}")


_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Add ``strategy`` at the end of the canonical order; its name and code must be new."""
    if strategy.name in _REGISTRY:
        raise ValueError(f"strategy {strategy.name!r} is already registered")
    if strategy.code in name_by_code():
        raise ValueError(f"strategy code {strategy.code!r} is already taken")
    _REGISTRY[strategy.name] = strategy
    return strategy


def unregister(name: str) -> None:
    """Remove a registered strategy (for tests that register a temporary one)."""
    del _REGISTRY[name]


def registered() -> tuple[Strategy, ...]:
    """Every registered strategy, in canonical order."""
    return tuple(_REGISTRY.values())


def get(name: str) -> Strategy:
    """The descriptor of ``name``; ``BudgetError`` naming ``strategy`` if it is unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BudgetError(
            "strategy", f"unknown strategy {name!r}; known: {list(_REGISTRY)}"
        ) from None


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def sized_names() -> tuple[str, ...]:
    return tuple(s.name for s in _REGISTRY.values() if s.sized)


def code_by_name() -> dict[str, str]:
    """``{"adapter": "A", ...}`` in canonical order."""
    return {s.name: s.code for s in _REGISTRY.values()}


def name_by_code() -> dict[str, str]:
    """``{"A": "adapter", ...}`` in canonical order."""
    return {s.code: s.name for s in _REGISTRY.values()}


def default_learning_rates() -> dict[str, float]:
    """``{name: measured default rate}`` for the strategies that have one, in canonical order."""
    return {
        s.name: s.default_learning_rate
        for s in _REGISTRY.values()
        if s.default_learning_rate is not None
    }


def ui_description() -> dict[str, dict[str, str]]:
    """``{name: {code, label, colour}}`` in canonical order: the JSON the pages embed."""
    return {s.name: {"code": s.code, "label": s.label, "colour": s.colour} for s in registered()}


# --- options shared by every layer's instance of a strategy ----------------------------------


@dataclass(frozen=True, kw_only=True)
class StrategyOptions:
    """Base of every strategy's design-wide options: its own learning rate.

    ``learning_rate``: the peak rate of this strategy's parameter group; None (absent from the
    document) trains it at the trial's base rate. :func:`default_learning_rates` holds measured
    values a search may fill in.
    """

    learning_rate: float | None = field(
        default=None,
        metadata=_help("peak learning rate of this strategy's parameters; absent: the trial's"),
    )

    def __post_init__(self) -> None:
        rate = self.learning_rate
        if rate is not None and (not _is_number(rate) or not 0 < rate <= 1):
            raise DesignError("learning_rate", f"must be a number in (0, 1], got {rate!r}")

    def to_dict(self) -> dict[str, Any]:
        return {} if self.learning_rate is None else {"learning_rate": self.learning_rate}


@dataclass(frozen=True, kw_only=True)
class AdapterOptions(StrategyOptions):
    """Options shared by every adapter of a design."""

    activation: str = field(
        default="relu", metadata=_help(f"bottleneck nonlinearity: {ACTIVATIONS}")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.activation not in ACTIVATIONS:
            raise DesignError(
                "activation", f"must be one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"activation": self.activation, **super().to_dict()}


@dataclass(frozen=True, kw_only=True)
class PrefixOptions(StrategyOptions):
    """Options shared by every prefix of a design."""

    reparameterize: bool = field(
        default=True, metadata=_help("train prefixes through an MLP, folded away when saving")
    )
    mlp_hidden: int | None = field(
        default=None,
        metadata=_help(
            "hidden width of the reparameterisation MLP; absent: sized by "
            "prefix_reparameterization_width (no more trained than stored)"
        ),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.reparameterize, bool):
            raise DesignError(
                "reparameterize", f"must be true or false, got {self.reparameterize!r}"
            )
        if self.mlp_hidden is not None and (not _is_int(self.mlp_hidden) or self.mlp_hidden < 1):
            raise DesignError("mlp_hidden", f"must be a positive integer, got {self.mlp_hidden!r}")

    def to_dict(self) -> dict[str, Any]:
        written: dict[str, Any] = {"reparameterize": self.reparameterize}
        if self.mlp_hidden is not None:
            written["mlp_hidden"] = self.mlp_hidden
        return {**written, **super().to_dict()}


#: Below this many hidden units the MLP is a rank bottleneck rather than a help: plain prefixes.
MIN_REPARAMETERIZATION_WIDTH = 8


def prefix_reparameterization_params(width: int, kv_dim: int, total_length: int) -> int:
    """Parameters trained by a reparameterisation of ``width`` hidden units shared by prefixes of
    ``total_length`` vectors of width ``kv_dim``: the per-vector inputs plus the MLP
    ``kv_dim -> width -> 2*kv_dim`` (weights and biases). 0 for ``width == 0`` (plain prefixes)."""
    if width == 0:
        return 0
    return total_length * kv_dim + width * (3 * kv_dim + 1) + 2 * kv_dim


def prefix_reparameterization_width(kv_dim: int, total_length: int) -> int:
    """The MLP width the rule gives when a design leaves ``options.prefix.mlp_hidden`` unset.

    The rule: a prefix trains no more parameters than it stores, like every other strategy. The
    prefixes of one width ``kv_dim`` store ``2 * total_length * kv_dim`` parameters, so the widest
    MLP whose training-only parameters (:func:`prefix_reparameterization_params`) stay within
    that is chosen. Under :data:`MIN_REPARAMETERIZATION_WIDTH` units it returns 0: the prefixes
    are trained directly. On MiniLM (``kv_dim`` 384) a prefix-only design at 0.5% (147 vectors)
    gets 48 units where the fixed 512 used to train 591,104 extra parameters.

    >>> prefix_reparameterization_width(384, 147)
    48
    >>> prefix_reparameterization_width(384, 20)
    0
    """
    stored = 2 * total_length * kv_dim
    width = (stored - total_length * kv_dim - 2 * kv_dim) // (3 * kv_dim + 1)
    return width if width >= MIN_REPARAMETERIZATION_WIDTH else 0


@dataclass(frozen=True, kw_only=True)
class BitFitOptions(StrategyOptions):
    """Options shared by every BitFit layer of a design."""


def check_lora_targets(lora_targets: Collection[str], field_name: str = "lora_targets") -> None:
    """Raise ``BudgetError`` unless ``lora_targets`` is a non-empty set of projection roles."""
    if isinstance(lora_targets, str) or not lora_targets:
        raise BudgetError(field_name, f"must be a non-empty list of {list(PROJECTION_ROLES)}")
    unknown = [t for t in lora_targets if t not in PROJECTION_ROLES]
    if unknown:
        raise BudgetError(
            field_name, f"unknown projection(s) {unknown}; known: {list(PROJECTION_ROLES)}"
        )
    if len(set(lora_targets)) != len(list(lora_targets)):
        raise BudgetError(field_name, "contains duplicates")


@dataclass(frozen=True, kw_only=True)
class LoraOptions(StrategyOptions):
    """Options shared by every LoRA update of a design (the update is ``alpha/r * B A``)."""

    alpha: float = field(
        default=16, metadata=_help("scaling numerator; the update is alpha/r * B A")
    )
    dropout: float = field(default=0.0, metadata=_help("dropout on the LoRA input, in [0, 1)"))
    targets: tuple[str, ...] = field(
        default=DEFAULT_LORA_TARGETS,
        metadata=_help(f"self-attention projections: {PROJECTION_ROLES}"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _is_number(self.alpha) or self.alpha <= 0:
            raise DesignError("alpha", f"must be a positive number, got {self.alpha!r}")
        if not _is_number(self.dropout) or not 0 <= self.dropout < 1:
            raise DesignError("dropout", f"must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.targets, (list, tuple)):
            # Frozen dataclass: normalise the JSON list to a tuple so equality and hashing work.
            object.__setattr__(self, "targets", tuple(self.targets))
        try:
            check_lora_targets(self.targets, "targets")
        except BudgetError as exc:
            raise DesignError("targets", exc.message) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "dropout": self.dropout,
            "targets": list(self.targets),
            **super().to_dict(),
        }


# --- the four strategies of the paper -------------------------------------------------------

#: Where the default rates come from (2026-12-01): on this repository's 2-core CPU machine,
#:   .venv/bin/python bench/strategy_lr.py --rates 1e-3 3e-3 1e-2 3e-2 --seeds 0 1 2 \
#:       --train-examples 512 --eval-examples 300
#: MiniLM, SST-2, 512 training examples, 1 epoch (32 steps), batch 16, length 64, head at 1e-3,
#: single-strategy designs at 0.5% of the backbone on every layer (BitFit: every bias), scored on
#: 300 examples of the *selection* set (held out of GLUE train; never the dev/report set). Mean
#: selection score ± standard deviation over seeds 0, 1, 2 per rate:
#:   adapter 1e-3: 69.89 ± 2.0   3e-3: 70.56 ± 3.8   1e-2: 71.00 ± 7.2    3e-2: 56.67 ± 0.0
#:   prefix  1e-3: 65.22 ± 6.2   3e-3: 68.22 ± 1.5   1e-2: 70.11 ± 7.4    3e-2: 56.67 ± 0.0
#:   bitfit  1e-3: 71.11 ± 4.4   3e-3: 69.78 ± 5.3   1e-2: 61.44 ± 18.0   3e-2: 52.22 ± 7.7
#:   lora    1e-3: 71.56 ± 1.5   3e-3: 75.44 ± 3.2   1e-2: 79.00 ± 5.8    3e-2: 47.78 ± 7.7
#: The best mean per strategy is the default. How far to trust it: 56.67 is the majority class,
#: so 3e-2 collapses every strategy and bounds the grid from above. For the adapter (1e-3..1e-2
#: within 1.2 points, spreads 2-7) and the prefix (3e-3 vs 1e-2: 1.9 points, spread 7.4 at 1e-2)
#: the best rate is within seed noise of its neighbours; 1e-2 is also the least stable of them.
#: LoRA's 1e-2 is ahead by more than one spread (79.0 vs 75.4). BitFit's best, 1e-3, is the
#: *lower edge* of the grid (1e-2 already diverges on one seed): its optimum may lie lower. The
#: final stage's grid (experiments/space/final.py) scales these by factors of 3 per arm, so an
#: arm whose default is a notch off still finds its rate on the selection set.
MEASURED_LEARNING_RATES: dict[str, float] = {
    "adapter": 1e-2,
    "prefix": 1e-2,
    "bitfit": 1e-3,
    "lora": 1e-2,
}


def _adapter_cost(layer: LayerShape, lora_targets: Collection[str]) -> tuple[int, int]:
    # Down-projection d*m + m, up-projection m*d + d.
    return 2 * layer.hidden_size + 1, layer.hidden_size


def _prefix_cost(layer: LayerShape, lora_targets: Collection[str]) -> tuple[int, int]:
    # The stored key and value vectors; a training-only reparameterisation is not stored.
    return 2 * layer.kv_dim, 0


def _bitfit_cost(layer: LayerShape, lora_targets: Collection[str]) -> tuple[int, int]:
    return 0, layer.bitfit_params


def _lora_cost(layer: LayerShape, lora_targets: Collection[str]) -> tuple[int, int]:
    return sum(sum(layer.projections[t]) for t in lora_targets), 0


ADAPTER = register(
    Strategy(
        name="adapter",
        code="A",
        label="Adapter",
        colour="#4263eb",
        options_class=AdapterOptions,
        cost=_adapter_cost,
        implementation="tasks.peft.adapter",
        default_learning_rate=MEASURED_LEARNING_RATES["adapter"],
    )
)
PREFIX = register(
    Strategy(
        name="prefix",
        code="P",
        label="Prefix",
        colour="#f08c00",
        options_class=PrefixOptions,
        cost=_prefix_cost,
        implementation="tasks.peft.prefix",
        default_learning_rate=MEASURED_LEARNING_RATES["prefix"],
    )
)
BITFIT = register(
    Strategy(
        name="bitfit",
        code="B",
        label="BitFit",
        colour="#37b24d",
        options_class=BitFitOptions,
        cost=_bitfit_cost,
        implementation="tasks.peft.bitfit",
        default_learning_rate=MEASURED_LEARNING_RATES["bitfit"],
        sized=False,
    )
)
LORA = register(
    Strategy(
        name="lora",
        code="L",
        label="LoRA",
        colour="#ae3ec9",
        options_class=LoraOptions,
        cost=_lora_cost,
        implementation="tasks.peft.lora",
        default_learning_rate=MEASURED_LEARNING_RATES["lora"],
    )
)
