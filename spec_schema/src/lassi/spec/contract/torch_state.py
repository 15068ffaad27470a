"""Torch module weights and resumable training state as artifact tensors (no pickle).

torch is imported lazily, so ``lassi.spec`` itself needs no torch; the roles that train
models have it. Randomness in lassi's training loops is derived from ``(seed, step)``, so a
checkpoint needs only weights, optimiser state and counters to resume bit-identically.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lassi.spec.contract.errors import IntegrityError, InvalidArtifactError
from lassi.spec.contract.io import read_artifact, write_artifact
from lassi.spec.contract.models import Checkpoint

DATA_STATE = "data_identity"
"""The checkpoint state entry that holds the identity of the data a run has read."""


def checkpoint_interval() -> float:
    """Seconds between checkpoints of long loops (``LASSI_CHECKPOINT_SECONDS``, default 20)."""
    import os

    try:
        return max(0.0, float(os.environ.get("LASSI_CHECKPOINT_SECONDS", "20")))
    except ValueError:
        return 20.0


def run_key(**arguments: Any) -> str:
    """A short hash of the arguments of a run; a checkpoint resumes only the same run."""
    text = json.dumps(arguments, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def module_tensors(module: Any, prefix: str) -> dict[str, np.ndarray]:
    """A module's state dict as numpy arrays under ``prefix``."""
    return {prefix + k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_module(module: Any, weights: Mapping[str, np.ndarray], where: str | Path) -> None:
    """Load a state dict from artifact tensors; names and shapes must match exactly."""
    import torch

    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing:
        raise InvalidArtifactError(
            where, f"weights are missing tensor '{missing[0]}' ({len(missing)} missing)"
        )
    if unexpected:
        raise InvalidArtifactError(where, f"weights have unexpected tensor '{unexpected[0]}'")
    state = {}
    for name, target in own.items():
        array = weights[name]
        if tuple(array.shape) != tuple(target.shape):
            raise InvalidArtifactError(
                where,
                f"weight '{name}' has shape {list(array.shape)}, the model needs {list(target.shape)}",
            )
        state[name] = torch.from_numpy(np.array(array)).to(dtype=target.dtype)
    module.load_state_dict(state)


def optimizer_tensors(optimizer: Any) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Flatten an optimiser's state dict into tensors and JSON-able parameter groups."""
    import torch

    state = optimizer.state_dict()
    tensors: dict[str, np.ndarray] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = value.detach().cpu().numpy().copy()
    return tensors, state["param_groups"]


def load_optimizer(
    optimizer: Any, tensors: Mapping[str, np.ndarray], groups: list[dict[str, Any]]
) -> None:
    import torch

    state: dict[int, dict[str, Any]] = {}
    for name, array in tensors.items():
        if not name.startswith("optim."):
            continue
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = torch.from_numpy(np.array(array))
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    path: str | Path,
    *,
    tool: str,
    stage: str,
    key: str,
    step: int,
    modules: Mapping[str, Any],
    optimizer: Any | None = None,
    state: dict[str, Any] | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    data: str | None = None,
) -> None:
    """Atomically write model(s), optimiser and progress counters of a run.

    ``data``: the identity of the data the run has read (``lassi.spec.contract.data_identity.data_key``);
    :func:`load_checkpoint` resumes only with the same."""
    tensors: dict[str, np.ndarray] = {}
    for name, module in modules.items():
        tensors.update(module_tensors(module, f"model.{name}."))
    meta_state = dict(state or {})
    if data is not None:
        meta_state[DATA_STATE] = data
    if optimizer is not None:
        optim_tensors, groups = optimizer_tensors(optimizer)
        tensors.update(optim_tensors)
        meta_state["optimizer_param_groups"] = groups
    for name, array in (extra or {}).items():
        tensors[f"extra.{name}"] = np.asarray(array)
    meta = Checkpoint(tool=tool, stage=stage, run_key=key, step=step, state=meta_state)
    write_artifact(path, meta, tensors)


def load_checkpoint(
    path: str | Path,
    *,
    stage: str,
    key: str,
    modules: Mapping[str, Any],
    optimizer: Any | None = None,
    data: str | None = None,
) -> tuple[int, dict[str, Any], dict[str, np.ndarray]] | None:
    """Restore a run's checkpoint if there is one for the same stage, arguments and ``data``
    (the data identity given to :func:`save_checkpoint`).

    Returns (step, state, extra tensors) or None when there is nothing to resume; a checkpoint
    of the same run over other data is not resumed (one note: the data changed).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        artifact = read_artifact(path, expect=Checkpoint)
    except (InvalidArtifactError, IntegrityError) as error:  # truncated by a crash, edited...
        raise InvalidArtifactError(
            path, f"checkpoint is damaged ({error.problem}); delete it to start the run over"
        ) from None
    meta = artifact.meta
    if meta.stage != stage or meta.run_key != key:
        print(
            f"note: {path} is a checkpoint of a run with other options (stage {meta.stage!r}, "
            f"step {meta.step}); starting afresh, it will be overwritten",
            file=sys.stderr,
        )
        return None
    if data is not None and meta.state.get(DATA_STATE) != data:
        print(f"note: data changed since the checkpoint {path}: starting over", file=sys.stderr)
        return None
    state = dict(meta.state)
    state.pop(DATA_STATE, None)
    groups = state.pop("optimizer_param_groups", None)
    try:  # the file is checked as an artifact; whether it fits this run's models is checked here
        for name, module in modules.items():
            load_module(module, artifact.weights(f"model.{name}."), path)
        if optimizer is not None and groups is not None:
            load_optimizer(optimizer, artifact.tensors, groups)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RuntimeError) as error:
        raise InvalidArtifactError(
            path,
            f"checkpoint does not fit this run ({type(error).__name__} while restoring its "
            "optimiser or weights); delete it to start the run over",
        ) from None
    return meta.step, state, artifact.weights("extra.")

