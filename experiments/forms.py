"""Forms of the browser pages. They only check what a person typed; services validate the rest
and their ValidationError messages are attached to the same fields (see attach_errors)."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from experiments.space.presets import LIMITS, PRESETS, SearchConfig

from . import selectors, services
from .models import Backbone, Search, Task
from .services.catalog import UPLOAD_SUFFIXES

# SearchConfig fields the main form shows under its own names; every other one the service accepts
# is an editable "preset field" (designs per stage, epochs, ...).
MAIN_CONFIG_FIELDS = ("budget", "num_groups", "auto_approve", "seed")
# SearchConfig fields the form does not edit: a {strategy: rate} mapping has no single input (the
# measured defaults apply; the API's overrides and the CLI's --set change it).
FORM_OMITTED_FIELDS = ("strategy_learning_rates",)


def preset_values(config: SearchConfig) -> dict[str, Any]:
    """A preset as the form's inputs show it: budget as % or a count, groups, preset fields."""
    data = config.to_dict()
    budget = data.pop("budget")
    values = {"budget_kind": "fraction" if budget.get("fraction") is not None else "absolute",
              "budget_value": round(budget["fraction"] * 100, 6) if budget.get("fraction") is not None
              else budget["parameters"],
              "groups": data.pop("num_groups")}
    values.update(data)
    return values


def _config_field(spec: dataclasses.Field, help_text: str) -> forms.Field:
    """A form field for a SearchConfig field, bounded above by LIMITS (SearchConfig checks the rest)."""
    label = spec.name.replace("_", " ").capitalize()
    annotation = str(spec.type)
    optional = "None" in annotation
    if optional:
        help_text = f"{help_text}; leave empty for none"
    if spec.metadata.get("choices"):
        return forms.ChoiceField(label=label, help_text=help_text,
                                 choices=[(c, c) for c in spec.metadata["choices"]])
    if annotation.startswith("bool"):
        return forms.BooleanField(label=label, required=False, help_text=help_text)
    if annotation.startswith("int"):
        return forms.IntegerField(label=label, required=not optional, help_text=help_text,
                                  max_value=LIMITS.get(spec.name))
    if annotation.startswith("float"):
        return forms.FloatField(label=label, required=not optional, help_text=help_text,
                                max_value=LIMITS.get(spec.name))
    return forms.CharField(label=label, required=not optional, help_text=help_text)


def _check_budget(form: forms.Form, data: dict[str, Any]) -> None:
    """The budget in the user's terms (a percentage, or a parameter count), one error at most.

    Both the new-search form and its live preview check it here, so the preview never answers in
    the service's terms (a fraction) while the field says a percentage (issue 12)."""
    kind, value = data.get("budget_kind"), data.get("budget_value")
    if kind == "fraction" and value is not None and not 0 < value < 100:
        form.add_error("budget_value", "A percentage between 0 and 100, e.g. 0.5.")
    if kind == "absolute" and value is not None and (value < 1 or value != int(value)):
        form.add_error("budget_value", "A whole number of parameters, at least 1.")


class TaskChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, task: Task) -> str:
        return task.display_name or task.name


class BackboneChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, backbone: Backbone) -> str:
        return f"{backbone.display_name} · {backbone.num_layers} layers · {backbone.total_params:,} parameters"


class SearchForm(forms.Form):
    """A new search. Choosing a preset fills every field (in the browser); each stays editable."""

    name = forms.CharField(max_length=128, help_text="Something you will recognise in the list.")
    tasks = TaskChoiceField(queryset=Task.objects.none(), widget=forms.CheckboxSelectMultiple,
                            help_text="Designs are scored by the mean 0-100 score over these tasks.")
    backbone = BackboneChoiceField(queryset=Backbone.objects.none(), empty_label=None)
    budget_kind = forms.ChoiceField(choices=[("fraction", "% of the backbone"), ("absolute", "Parameters")],
                                    widget=forms.RadioSelect, label="Budget as")
    budget_value = forms.FloatField(label="Budget")
    groups = forms.IntegerField(min_value=1, max_value=12, label="Layer groups",
                                help_text="G: consecutive layer groups (the paper uses 4).")
    preset = forms.ChoiceField(choices=(), help_text="Fills its own fields (designs per stage, epochs, data sizes, layer groups, ...); values you set are kept.")
    auto_approve = forms.BooleanField(required=False, label="Approve every stage's recommendation automatically")
    seed = forms.IntegerField(min_value=0, max_value=LIMITS["seed"], help_text="Same seed, same sampled designs.")

    def __init__(self, *args, user, presets: Mapping[str, SearchConfig] = PRESETS, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.presets = {name: preset_values(config) for name, config in presets.items()}
        self.fields["tasks"].queryset = selectors.task_list(user=user).order_by("source", "name")
        backbones = selectors.backbone_list(user=user)
        self.fields["backbone"].queryset = backbones
        self.fields["preset"].choices = [(name, name) for name in presets]
        helps = SearchConfig.help()
        self.advanced_names = [spec.name for spec in dataclasses.fields(SearchConfig)
                               if spec.name not in MAIN_CONFIG_FIELDS and spec.name not in FORM_OMITTED_FIELDS
                               and spec.name not in services.UNSCHEDULED_SETTINGS]
        for spec in dataclasses.fields(SearchConfig):
            if spec.name in self.advanced_names:
                self.fields[spec.name] = _config_field(spec, helps.get(spec.name, ""))
        if not self.is_bound:
            default = "quick" if "quick" in presets else next(iter(presets))
            self.initial = {"preset": default, "backbone": next((b for b in backbones if b.is_default), None),
                            **self.presets[default], **self.initial}

    def advanced_fields(self):
        return [self[name] for name in self.advanced_names]

    def clean(self):
        data = super().clean()
        _check_budget(self, data)
        return data

    def service_arguments(self) -> dict[str, Any]:
        """Keyword arguments for services.search_create."""
        data = self.cleaned_data
        return {"name": data["name"], "tasks": list(data["tasks"]), **self.config_arguments()}

    def config_arguments(self) -> dict[str, Any]:
        """Keyword arguments for services.search_config_build (and search_plan_preview)."""
        data = self.cleaned_data
        value = data["budget_value"] / 100 if data["budget_kind"] == "fraction" else int(data["budget_value"])
        return {
            "backbone": data["backbone"], "budget_kind": data["budget_kind"], "budget_value": value,
            "groups": data["groups"], "preset": data["preset"], "auto_approve": data["auto_approve"],
            "seed": data["seed"], "overrides": {key: data[key] for key in self.advanced_names},
        }

    def plan_errors(self) -> dict[str, list[str]]:
        """After is_valid(): the errors that keep the plan from being worked out (a name is not needed)."""
        return {field: errors for field, errors in self.errors.items() if field != "name"}


class BudgetPreviewForm(forms.Form):
    backbone = forms.ModelChoiceField(queryset=Backbone.objects.none())
    budget_kind = forms.ChoiceField(choices=Search.BudgetKind.choices)
    budget_value = forms.FloatField()

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["backbone"].queryset = selectors.backbone_list(user=user)

    def clean(self):
        data = super().clean()
        _check_budget(self, data)
        return data

    def service_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        value = data["budget_value"] / 100 if data["budget_kind"] == "fraction" else data["budget_value"]
        return {"backbone": data["backbone"], "budget_kind": data["budget_kind"], "budget_value": value}


UPLOAD_ACCEPT = ",".join(UPLOAD_SUFFIXES)


class TaskUploadForm(forms.Form):
    name = forms.CharField(max_length=64, label="Task name", help_text="Short id, e.g. my-reviews.")
    file = forms.FileField(label="File", help_text="CSV, TSV or JSON Lines with a header/keys.")
    text_columns = forms.MultipleChoiceField(
        choices=(), widget=forms.CheckboxSelectMultiple, label="Text columns",
        help_text="One to three input text columns, in this order. With three (word, sentence1, sentence2) "
                  "the model reads \u201cfirst: second\u201d as the text and the third as its pair.")
    label_column = forms.ChoiceField(choices=(), label="Label column")
    problem = forms.ChoiceField(choices=[("", "Detect from the labels"), *Task.Problem.choices], required=False)
    selection_file = forms.FileField(
        required=False, widget=forms.FileInput(attrs={"accept": UPLOAD_ACCEPT}), label="Selection file (optional)",
        help_text="Examples the search chooses designs by; same format and columns. Without it, "
                  "10% of the training file is held out.")
    report_file = forms.FileField(
        required=False, widget=forms.FileInput(attrs={"accept": UPLOAD_ACCEPT}), label="Report file (optional)",
        help_text="Examples only the final comparison is scored on; same format and columns. Without it, "
                  "10% of the training file is held out.")

    def __init__(self, *args, columns: list[str] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        options = [(c, c) for c in columns]
        self.fields["text_columns"].choices = options
        # No column is taken for the label unless the person picks it (or it is named like one).
        self.fields["label_column"].choices = [("", "Choose the label column"), *options]

    def service_arguments(self) -> dict[str, Any]:
        """Keyword arguments for services.task_upload."""
        data = self.cleaned_data
        return {"name": data["name"], "uploaded_file": data["file"], "text_columns": data["text_columns"],
                "label_column": data["label_column"], "problem": data["problem"] or None,
                "selection_file": data.get("selection_file"), "report_file": data.get("report_file")}


class ApproveForm(forms.Form):
    """Approve the recommendation, or pick another open choice with a reason."""

    choice = forms.ChoiceField(choices=(), widget=forms.RadioSelect)
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                             help_text="Required when you override the recommendation.")

    def __init__(self, *args, options: list[str], recommended: str | None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recommended = recommended
        self.fields["choice"].choices = [(o, o) for o in options]
        if recommended in options:
            self.initial.setdefault("choice", recommended)

    def clean(self):
        data = super().clean()
        choice = data.get("choice")
        if choice and choice != self.recommended and not data.get("reason", "").strip():
            self.add_error("reason", "Say why you override the recommendation.")
        return data

    def service_arguments(self) -> dict[str, Any]:
        choice = self.cleaned_data["choice"]
        return {"choice": None if choice == self.recommended else choice,
                "reason": self.cleaned_data["reason"].strip()}


# Services and the design-space library name some settings differently from the form.
SERVICE_FIELD_NAMES = {"budget": "budget_value", "num_groups": "groups"}


def attach_errors(form: forms.Form, error: ValidationError) -> None:
    """Put a service's ValidationError on the form's fields (unknown fields: form-wide)."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, messages in error.message_dict.items():
        base = field.split(".")[0].split("[")[0]
        base = SERVICE_FIELD_NAMES.get(base, base)
        form.add_error(base if base in form.fields else None, messages)
