"""The memory guard's estimate and decision (tasks.device_memory), and the device a worker reports."""
from __future__ import annotations

import pytest

from tasks.device_memory import (
    RESERVED_BYTES,
    DeviceMemoryError,
    TrialShape,
    check_fits,
    device_probe,
    guard,
    trial_memory_estimate,
)

MINILM = TrialShape(total_params=22_700_000, trained_params=120_000, num_layers=6, hidden_size=384, num_heads=12,
                    batch_size=32, max_length=128)


def test_the_estimate_follows_the_documented_rule():
    # weights 4P + training 16T + per layer B*S*h*(34 + 5*a*S/h)*w/2, times 1.5, plus the reserve
    per_layer = 32 * 128 * 384 * (34 + 5 * 12 * 128 / 384) * 4 / 2
    expected = int((4 * 22_700_000 + 16 * 120_000 + 6 * per_layer) * 1.5) + RESERVED_BYTES
    assert trial_memory_estimate(MINILM) == expected


def test_the_estimate_grows_with_batch_length_and_full_fine_tuning_and_shrinks_with_bf16():
    base = trial_memory_estimate(MINILM)
    assert trial_memory_estimate(TrialShape(**{**MINILM.__dict__, "batch_size": 64})) > base
    assert trial_memory_estimate(TrialShape(**{**MINILM.__dict__, "max_length": 256})) > base
    assert trial_memory_estimate(TrialShape(**{**MINILM.__dict__, "trained_params": MINILM.total_params})) > base
    assert trial_memory_estimate(TrialShape(**{**MINILM.__dict__, "bf16": True})) < base


def test_a_trial_that_does_not_fit_is_refused_with_both_figures():
    with pytest.raises(DeviceMemoryError, match=r"about 3\.0 GiB on cuda:0 but only 2\.0 GiB of 80\.0 GiB is free"):
        check_fits(3 * 2**30, free_bytes=2 * 2**30, total_bytes=80 * 2**30, device="cuda:0")
    check_fits(2 * 2**30, free_bytes=2 * 2**30, total_bytes=80 * 2**30, device="cuda:0")  # fits exactly


def test_the_guard_does_nothing_on_cpu():
    huge = TrialShape(**{**MINILM.__dict__, "total_params": 10**13})
    assert guard(huge, "cpu") is None


def test_the_probe_reports_the_cpu_on_a_machine_without_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert device_probe().device == "cpu"
