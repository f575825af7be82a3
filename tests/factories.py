"""factory_boy factories for the experiments models, shared by every test package.

>>> trial = TrialFactory(status="succeeded", score=81.5)        # doctest: +SKIP
>>> trial.search.owner, trial.stage.search == trial.search      # doctest: +SKIP

A trial builds its stage, the stage its search, the search its owner and backbone; pass any of
them to share one (``TrialFactory(stage=stage)`` puts the trial in that stage's search).
"""
from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from experiments.models import Artifact, Backbone, MetricPoint, Search, Stage, Task, Trial
from experiments.space.presets import preset
from experiments.space.space import DesignSpace

HIDDEN = 32
LAYERS = 4


def backbone_shape(*, num_layers: int = LAYERS, hidden: int = HIDDEN, name: str = "tiny-bert") -> dict[str, Any]:
    """A BackboneShape.to_dict() for a small BERT-like encoder (no torch needed)."""
    square = [hidden, hidden]
    layer = {
        "hidden_size": hidden,
        "kv_dim": hidden,
        "projections": {"query": square, "key": square, "value": square, "output": square},
        "bitfit_params": 4 * hidden + 2 * hidden + 4 * hidden + hidden + 2 * hidden,
    }
    return {
        "name_or_path": name, "model_type": "bert", "family": "bert", "num_layers": num_layers,
        "hidden_size": hidden, "num_heads": 2, "total_params": 100_000,
        "layers": [dict(layer) for _ in range(num_layers)],
    }


def design_document(*, num_layers: int = LAYERS, layers: list[dict[str, Any]] | None = None,
                    seed: int = 0, name: str = "tiny-bert") -> dict[str, Any]:
    """A pefs.design/1 document; by default LoRA rank 2 on every layer."""
    layers = layers if layers is not None else [{"lora": 2} for _ in range(num_layers)]
    per_layer = [4 * HIDDEN * layer.get("lora", 0) for layer in layers]
    return {
        "schema": "pefs.design/1",
        "backbone": {"name_or_path": name, "model_type": "bert", "num_layers": num_layers},
        "head": None,
        "seed": seed,
        "layers": layers,
        "options": {"lora": {"alpha": 16, "dropout": 0.0, "targets": ["query", "value"]},
                    "prefix": {"reparameterize": True, "mlp_hidden": 512},
                    "adapter": {"activation": "relu"}},
        "trainable_parameters": {"per_layer": per_layer, "peft_total": sum(per_layer)},
        "provenance": {},
    }


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests")


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    owner = None
    name = factory.Sequence(lambda n: f"task{n}")
    display_name = factory.LazyAttribute(lambda o: o.name.upper())
    source = Task.Source.BUNDLED
    text_columns = factory.LazyFunction(lambda: ["sentence"])
    label_column = "label"
    problem = Task.Problem.CLASSIFICATION
    labels = factory.LazyFunction(lambda: ["0", "1"])
    metric = "accuracy"


class BackboneFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Backbone

    owner = None
    name_or_path = factory.Sequence(lambda n: f"tiny-bert-{n}")
    display_name = factory.LazyAttribute(lambda o: o.name_or_path)
    model_type = "bert"
    family = "bert"
    num_layers = LAYERS
    hidden_size = HIDDEN
    num_heads = 2
    total_params = 100_000
    shape = factory.LazyAttribute(lambda o: backbone_shape(num_layers=o.num_layers, hidden=o.hidden_size,
                                                           name=o.name_or_path))


class SearchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Search
        skip_postgeneration_save = True

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"search {n}")
    backbone = factory.SubFactory(BackboneFactory)
    budget_kind = Search.BudgetKind.FRACTION
    budget_value = 0.005
    budget_params = 500
    config = factory.LazyFunction(lambda: preset("quick", designs_per_stage=4).to_dict())

    @factory.post_generation
    def tasks(self, create: bool, extracted: list[Task] | None, **kwargs: Any) -> None:
        if create and extracted:
            self.tasks.set(extracted)


class StageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Stage

    search = factory.SubFactory(SearchFactory)
    order = factory.Sequence(lambda n: n)
    key = factory.LazyAttribute(lambda o: f"S{o.order}")
    component = "grouping"
    space = factory.LazyFunction(lambda: DesignSpace.initial(num_groups=4).to_dict())


class TrialFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trial

    stage = factory.SubFactory(StageFactory)
    search = factory.LazyAttribute(lambda o: o.stage.search)
    index = factory.Sequence(lambda n: n)
    kind = Trial.Kind.SAMPLE
    # Like the services (and migration 0004): a final-stage run is a report run unless told otherwise.
    eval_role = factory.LazyAttribute(lambda o: Trial.Role.REPORT if o.stage.key == "final" else Trial.Role.SELECTION)
    choices = factory.LazyFunction(lambda: {"grouping": "spindle", "allocation": "uniform", "groups": 4})
    design = factory.LazyFunction(design_document)
    status = Trial.Status.QUEUED
    attempt = 1
    trainable_params = 1024
    queued_at = factory.LazyFunction(timezone.now)


class MetricPointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MetricPoint

    trial = factory.SubFactory(TrialFactory)
    attempt = factory.LazyAttribute(lambda o: o.trial.attempt)
    step = factory.Sequence(lambda n: n)
    name = "sst2:loss"
    value = 0.5


class ArtifactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Artifact

    search = factory.SubFactory(SearchFactory)
    kind = Artifact.Kind.DESIGN
    path = factory.Sequence(lambda n: f"searches/test/artifact{n}.json")
