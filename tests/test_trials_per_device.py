"""PEFS_TRIALS_PER_DEVICE: the concurrency `make run` gives its trial worker."""
from __future__ import annotations

import pytest

from pefs_web.launch import MAX_TRIALS_PER_DEVICE, trials_per_device


def test_one_trial_per_device_unless_told():
    assert trials_per_device({}) == 1
    assert trials_per_device({"PEFS_TRIALS_PER_DEVICE": "4"}) == 4
    assert trials_per_device({"PEFS_TRIALS_PER_DEVICE": str(MAX_TRIALS_PER_DEVICE)}) == MAX_TRIALS_PER_DEVICE


@pytest.mark.parametrize("raw", ["0", "-1", "33", "two", "1.5", ""])
def test_a_bad_value_stops_with_a_message_naming_the_variable(raw):
    with pytest.raises(SystemExit, match="PEFS_TRIALS_PER_DEVICE must be a whole number from 1 to 32"):
        trials_per_device({"PEFS_TRIALS_PER_DEVICE": raw})
