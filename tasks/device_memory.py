"""The training device as a worker reports it, and the memory guard that runs before a trial.

Several trials may share one GPU (a worker started with ``-c N``: N pool processes, each with its
own CUDA context). Before a trial starts on CUDA, :func:`check_fits` compares an estimate of what
it will allocate with the device's free memory (``torch.cuda.mem_get_info``) and raises
:class:`DeviceMemoryError`, naming both figures, when it would not fit: the trial fails at once
with that message instead of dying of an out-of-memory error half-way, or pushing a neighbour
into one. On CPU the guard does nothing: host memory is shared with every other process, is
swapped rather than exhausted, and torch reports no free figure that means "this trial fits".

The estimate (:func:`trial_memory_estimate`), in bytes:

    weights      4 * P                       every backbone parameter, fp32
    training     16 * T                      gradient, Adam's two moments and slack per trained parameter
    activations  layers * B * S * h * (34 + 5 * a * S / h) * w / 2
                                             Korthikanti et al. (2022), eq. 1, per layer for 16-bit
                                             values (w = 2 with bf16 autocast, 4 without)
    total        (weights + training + activations) * SAFETY_FACTOR + RESERVED_BYTES

with P the backbone's parameters, T the trained ones (P for full fine-tuning; the PEFT budget and
the head otherwise), B the batch size, S the maximum sequence length, h the hidden size and a the
attention heads. It errs high (it counts the dropout masks and the attention scores of every layer
at the longest length); trials that start at the same instant both see the same free memory, which
the safety factor also has to cover.

>>> estimate = trial_memory_estimate(TrialShape(total_params=22_700_000, trained_params=30_000,
...     num_layers=6, hidden_size=384, num_heads=12, batch_size=32, max_length=128))
>>> 2 * 2**30 < estimate < 4 * 2**30
True

``python -m tasks.device_memory`` prints the device this process would train on as one JSON line
(what a worker's registration reads in a child process: its parent never initialises CUDA, which
forked pool processes could not then use).
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

SAFETY_FACTOR = 1.5
RESERVED_BYTES = 512 * 2**20  # cuBLAS/cuDNN workspaces and the caching allocator's fragmentation
PROBE_TIMEOUT_SECONDS = 120


class DeviceMemoryError(RuntimeError):
    """The trial's estimated memory exceeds what the device has free."""


@dataclass(frozen=True)
class TrialShape:
    total_params: int
    trained_params: int
    num_layers: int
    hidden_size: int
    num_heads: int
    batch_size: int
    max_length: int
    bf16: bool = False


@dataclass(frozen=True)
class DeviceInfo:
    device: str  # "cpu" or "cuda"
    name: str = ""
    total_bytes: int | None = None


def trial_memory_estimate(shape: TrialShape) -> int:
    """Bytes a trial of this shape may allocate on its device (the rule in the module docstring)."""
    weights = 4 * shape.total_params
    training = 16 * shape.trained_params
    width = 2 if shape.bf16 else 4
    per_layer = (shape.batch_size * shape.max_length * shape.hidden_size
                 * (34 + 5 * shape.num_heads * shape.max_length / shape.hidden_size) * width / 2)
    return int((weights + training + shape.num_layers * per_layer) * SAFETY_FACTOR) + RESERVED_BYTES


def check_fits(estimate_bytes: int, *, free_bytes: int, total_bytes: int, device: str) -> None:
    """Raise DeviceMemoryError when `estimate_bytes` exceeds `free_bytes`."""
    if estimate_bytes > free_bytes:
        raise DeviceMemoryError(
            f"this trial needs about {_gib(estimate_bytes)} on {device} but only {_gib(free_bytes)} of "
            f"{_gib(total_bytes)} is free (other trials or processes hold the rest); run fewer trials per "
            f"device (PEFS_TRIALS_PER_DEVICE, the worker's -c) or lower batch_size or max_length")


def guard(shape: TrialShape, device: Any) -> int | None:
    """The memory guard for a trial about to train on torch `device`: on CUDA, check the estimate
    against the free memory and return the estimate; on CPU return None (see the module docstring)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    estimate = trial_memory_estimate(replace(shape, bf16=shape.bf16 and torch.cuda.is_bf16_supported()))
    check_fits(estimate, free_bytes=free, total_bytes=total, device=str(device))
    return estimate


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def device_here() -> DeviceInfo:
    """The device a trial in this process trains on ('auto': the first visible GPU, else the CPU)."""
    import torch

    if not torch.cuda.is_available():
        return DeviceInfo(device="cpu")
    props = torch.cuda.get_device_properties(0)
    return DeviceInfo(device="cuda", name=props.name, total_bytes=int(props.total_memory))


def device_probe(timeout: float = PROBE_TIMEOUT_SECONDS) -> DeviceInfo:
    """device_here() measured in a child process (this one never touches CUDA); 'unknown' on failure."""
    try:
        done = subprocess.run([sys.executable, "-m", "tasks.device_memory"], capture_output=True, text=True,
                              timeout=timeout, cwd=Path(__file__).resolve().parent.parent, check=True)
        return DeviceInfo(**json.loads(done.stdout.strip().splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, TypeError, IndexError):
        return DeviceInfo(device="unknown")


if __name__ == "__main__":
    print(json.dumps(asdict(device_here())))
