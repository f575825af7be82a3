"""The browser's forms and the upload validator under random input (hypothesis): whatever a person
or a script types, the answer is a form error naming a field, never an exception (a 500)."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from experiments import selectors, services
from experiments.forms import BudgetPreviewForm, SearchForm, TaskUploadForm, preset_values
from experiments.space.presets import LIMITS, PRESETS
from tests.factories import BackboneFactory, TaskFactory

pytestmark = pytest.mark.django_db

FUZZ = hyp_settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))

# What a browser can send: text of any kind, numbers written every way, huge and negative ones.
numbers = st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["", "0", "-0", "1e309", "-1e309", "nan", "2**63", str(2**63), "0x10", "1_000"]),
                    st.text(max_size=20))
values = st.one_of(numbers, st.text(max_size=30), st.lists(st.text(max_size=10), max_size=3))


@pytest.fixture
def world(user):
    return {"user": user, "task": TaskFactory(name="sst2"), "backbone": BackboneFactory(is_default=True)}


def valid_search_data(world) -> dict:
    data = {key: ("on" if value is True else "" if value in (False, None) else value)
            for key, value in preset_values(PRESETS["quick"]).items()}
    return {**data, "name": "x", "tasks": [world["task"].pk], "backbone": world["backbone"].pk, "preset": "quick",
            "seed": 0, "groups": 2, "budget_kind": "fraction", "budget_value": 5, "max_eval_examples": ""}


def assert_only_field_errors(form, call_service) -> None:
    """The form validates without raising; a valid form's service call raises only ValidationError."""
    if form.is_valid():
        try:
            call_service(form)
        except ValidationError as error:
            assert error.message_dict  # names a field
    else:
        assert all(messages for messages in form.errors.values())


def test_search_form_answers_any_input_with_field_errors(world):
    fields = list(SearchForm(user=world["user"]).fields)

    @FUZZ
    @given(changes=st.dictionaries(st.sampled_from(fields), values, max_size=4))
    def fuzz(changes):
        form = SearchForm({**valid_search_data(world), **changes}, user=world["user"])
        assert_only_field_errors(form, lambda f: services.search_plan_preview(
            owner=world["user"], tasks=len(f.cleaned_data["tasks"]), **f.config_arguments()))

    fuzz()


def test_budget_preview_form_answers_any_input_with_field_errors(world):
    @FUZZ
    @given(kind=st.one_of(st.sampled_from(["fraction", "absolute"]), st.text(max_size=10)), value=numbers,
           backbone=st.one_of(st.just(str(world["backbone"].pk)), numbers))
    def fuzz(kind, value, backbone):
        form = BudgetPreviewForm({"backbone": backbone, "budget_kind": kind, "budget_value": value},
                                 user=world["user"])
        assert_only_field_errors(form, lambda f: selectors.budget_preview(**f.service_arguments()))

    fuzz()


def test_upload_form_and_validator_answer_any_file_with_field_errors(world, settings, tmp_path):
    settings.UPLOAD_ROOT = tmp_path / "uploads"
    columns = ["text", "label", "extra"]

    @FUZZ
    @given(content=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode),
                             st.lists(st.tuples(st.text(max_size=12), st.sampled_from(["0", "1", "x", ""])),
                                      max_size=30).map(lambda rows: ("text,label,extra\n" + "".join(
                                          f"{t!r},{label},e\n" for t, label in rows)).encode())),
           suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".txt", ""]),
           label=st.sampled_from(["label", "text", "extra", "missing", ""]),
           texts=st.lists(st.sampled_from(columns + ["nope"]), max_size=3),
           problem=st.sampled_from(["", "classification", "regression", "ranking"]))
    def fuzz(content, suffix, label, texts, problem):
        name = f"data{suffix}"
        upload = SimpleUploadedFile(name, content)
        form = TaskUploadForm({"upload-name": "fuzzed", "upload-text_columns": texts, "upload-label_column": label,
                               "upload-problem": problem}, {"upload-file": upload}, prefix="upload", columns=columns)
        assert_only_field_errors(form, lambda f: services.task_upload(
            owner=world["user"], name=f.cleaned_data["name"], uploaded_file=f.cleaned_data["file"],
            text_columns=f.cleaned_data["text_columns"], label_column=f.cleaned_data["label_column"],
            problem=f.cleaned_data["problem"] or None))
        try:
            services.task_preview(uploaded_file=SimpleUploadedFile(name, content), owner_id=world["user"].pk)
        except ValidationError as error:
            assert error.message_dict

    fuzz()


@pytest.mark.parametrize("field, value", [("seed", 2**63), ("seed", LIMITS["seed"] + 1), ("epochs", 10**23),
                                          ("designs_per_stage", LIMITS["designs_per_stage"] + 1),
                                          ("bootstrap_resamples", 10**30), ("learning_rate", 1e300)])
def test_a_number_beyond_its_limit_is_an_error_on_its_own_field(client, world, field, value):
    client.force_login(world["user"])
    response = client.post(reverse("search-new"), {**valid_search_data(world), field: value})
    assert response.status_code == 400
    form = response.context["form"]
    assert list(form.errors) == [field] and "less than or equal to" in form.errors[field][0]


@pytest.mark.parametrize("value", ["0", "-1", "100", "250"])
def test_a_percentage_budget_out_of_range_gives_one_error_in_percent(client, world, value):
    client.force_login(world["user"])
    response = client.post(reverse("search-new"), {**valid_search_data(world), "budget_value": value})
    assert response.context["form"].errors["budget_value"] == ["A percentage between 0 and 100, e.g. 0.5."]
    preview = client.get(reverse("budget-preview"), {"backbone": world["backbone"].pk, "budget_kind": "fraction",
                                                     "budget_value": value})
    body = preview.content.decode()
    assert body.count("A percentage between 0 and 100") == 1 and "fraction" not in body.lower()
