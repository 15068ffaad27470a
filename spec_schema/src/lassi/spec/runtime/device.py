"""``--device auto|cpu|cuda[:N]``: where the heavy commands run their torch models.

``auto`` is the first CUDA device when ``torch.cuda.is_available()`` and the CPU otherwise;
``cuda`` or ``cuda:N`` without CUDA (or with fewer than N + 1 devices) is a usage error (exit
status 2) raised before any work starts. Random draws of the certificates never depend on the
device: both smoothing procedures generate their noise on the CPU from the per-sample streams of
:mod:`lassi.spec.runtime.seeding` and move it to the device (see :mod:`lassi.spec.runtime.center_smoothing` and
``lassi.consumer.randomized_smoothing``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from lassi.spec.contract.errors import UsageError

if TYPE_CHECKING:
    import torch

_DEVICE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")
DEVICE_HELP = "Where torch runs: auto (CUDA when available), cpu, cuda or cuda:N."


def parse_device(text: str) -> tuple[str, int | None]:
    """``"cuda:1"`` -> ("cuda", 1); ``"auto"``, ``"cpu"``, ``"cuda"`` -> (kind, None)."""
    match = _DEVICE.match(text.strip().lower())
    if match is None or (match.group(1) != "cuda" and match.group(2) is not None):
        raise UsageError(None, f"--device must be auto, cpu, cuda or cuda:N (got {text!r})")
    index = match.group(2)
    return match.group(1), None if index is None else int(index)


def resolve_device(text: str | None = "auto") -> torch.device:
    """The torch device ``text`` names (None means ``auto``); a one-line UsageError when it names
    CUDA and CUDA is not there."""
    import torch

    kind, index = parse_device(text or "auto")
    if kind == "cpu" or (kind == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError(None, f"--device {text}: CUDA is not available on this machine")
    index = 0 if index is None else index
    count = torch.cuda.device_count()
    if index >= count:
        raise UsageError(None, f"--device {text}: only {count} CUDA device(s) (cuda:0..)")
    return torch.device("cuda", index)


def _resolve_option(ctx: click.Context, param: click.Parameter, value: str) -> torch.device:
    return resolve_device(value)


def device_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--device`` (default auto), passed to the command as a resolved ``torch.device``."""
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        callback=_resolve_option,
        help=DEVICE_HELP,
    )(command)
