"""The consumer's classifier C_L on representations: training, loading, ONNX export.

Following Cohen et al. (2019) and LASSI (paper Sec. 4.3, "Training C_L"), C_L is trained on
representations with Gaussian noise N(0, σ_cls² I) added to its inputs, so that the smoothed
classifier is accurate and the certified radii are large. Defaults: a linear head Linear(k, C),
1 epoch, batch 128, Adam lr 1e-3 (the paper states no values for them).

The trained classifier is shared as ONNX (dynamic batch) so that a party can run it without this
code; :mod:`lassi.consumer.onnx_runtime` runs it and reports the execution provider used.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lassi.spec import (
    Artifact,
    ClassifierCard,
    ClassifierTraining,
    RepresentationBundle,
    UsageError,
    read_artifact,
    write_artifact,
)
from lassi.spec.onnx_check import export_checked_onnx
from lassi.spec.seeding import Stage, torch_seed
from lassi.spec.torch_state import load_module, module_tensors

__all__ = [
    "LinearClassifier",
    "MLPClassifier",
    "make_classifier",
    "train_classifier",
    "evaluate_accuracy",
    "train_consumer_classifier",
    "load_classifier",
    "export_classifier_onnx",
]

from lassi.consumer import TOOL

# Streams of the training stage: sample id 0 drives shuffling and training noise, sample id 1 the
# (fixed) validation noise, sample id 2 the parameter initialisation of make_classifier.
_TRAIN_STREAM, _VALIDATION_STREAM, _INIT_STREAM = 0, 1, 2


class LinearClassifier(nn.Linear):
    """C_L(z) = W z + b: representations [B, k] → logits [B, C] (the authors' default)."""

    def __init__(self, k: int, num_classes: int) -> None:
        super().__init__(k, num_classes)
        self.k = int(k)
        self.num_classes = int(num_classes)


class MLPClassifier(nn.Module):
    """C_L(z) = Linear(ReLU(Linear(z))): representations [B, k] → logits [B, C]."""

    def __init__(self, k: int, num_classes: int, hidden: int = 256) -> None:
        super().__init__()
        self.k = int(k)
        self.num_classes = int(num_classes)
        self.hidden = int(hidden)
        self.net = nn.Sequential(
            nn.Linear(k, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def make_classifier(
    kind: str, k: int, num_classes: int, hidden: int = 256, seed: int = 0
) -> LinearClassifier | MLPClassifier:
    """A ``"linear"`` or ``"mlp"`` classifier whose initial parameters depend only on ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed(seed, _INIT_STREAM, Stage.TRAINING))
        if kind == "linear":
            return LinearClassifier(k, num_classes)
        if kind == "mlp":
            return MLPClassifier(k, num_classes, hidden=hidden)
    raise ValueError(f"unknown classifier kind {kind!r} (expected 'linear' or 'mlp')")


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(torch_seed(seed, stream, Stage.TRAINING))


@torch.inference_mode()
def evaluate_accuracy(
    model: nn.Module,
    z: torch.Tensor,
    y: torch.Tensor,
    sigma: float = 0.0,
    seed: int = 0,
    batch_size: int = 4096,
) -> float:
    """Accuracy of ``model`` on (z, y), with one N(0, σ² I) draw per sample when σ > 0 (seeded)."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    generator = _generator(seed, _VALIDATION_STREAM)
    correct = 0
    for start in range(0, len(z), batch_size):
        batch = z[start : start + batch_size].to(dtype=torch.float32)
        if sigma > 0:
            batch = batch + sigma * torch.randn(batch.shape, generator=generator)
        logits = model(batch.to(device))
        correct += int((logits.argmax(dim=1).cpu() == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, len(z))


def train_classifier(
    model: nn.Module,
    z: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    z_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train C_L with Gaussian noise augmentation: minimise CE(C_L(z + ε), y), ε ~ N(0, σ² I), Adam.

    Shuffling and noise come from one CPU generator seeded from (seed, TRAINING), so the run is
    deterministic for a seed on a given device. Returns the history per epoch: mean training loss,
    training accuracy under noise, and when (z_val, y_val) are given the validation accuracy under
    noise (one seeded draw per validation sample, the same draws every epoch) and without noise.
    """
    if sigma < 0 or epochs < 1 or batch_size < 1:
        raise ValueError("need sigma >= 0, epochs >= 1 and batch_size >= 1")
    z = torch.as_tensor(z, dtype=torch.float32).cpu()
    y = torch.as_tensor(y, dtype=torch.int64).cpu()
    if z.dim() != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"expected z [N, k] and y [N], got {tuple(z.shape)} and {tuple(y.shape)}")
    device = _device_of(model)
    generator = _generator(seed, _TRAIN_STREAM)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history: dict[str, Any] = {
        "epoch": [],
        "loss": [],
        "train_accuracy_noisy": [],
        "val_accuracy_noisy": [],
        "val_accuracy_clean": [],
        "sigma": float(sigma),
    }
    start_time = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(z), generator=generator)
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(
            range(0, len(z), batch_size),
            desc=f"C_L epoch {epoch}/{epochs}",
            disable=not progress,
            leave=False,
        )
        for start in bar:
            index = order[start : start + batch_size]
            noise = sigma * torch.randn((len(index), z.shape[1]), generator=generator)
            inputs = (z[index] + noise).to(device)
            targets = y[index].to(device)
            logits = model(inputs)
            loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(index)
            correct += int((logits.detach().argmax(dim=1) == targets).sum())
            seen += len(index)
            bar.set_postfix(
                loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}", refresh=False
            )
        history["epoch"].append(epoch)
        history["loss"].append(total_loss / seen)
        history["train_accuracy_noisy"].append(correct / seen)
        if z_val is not None and y_val is not None:
            z_v = torch.as_tensor(z_val, dtype=torch.float32).cpu()
            y_v = torch.as_tensor(y_val, dtype=torch.int64).cpu()
            history["val_accuracy_noisy"].append(
                evaluate_accuracy(model, z_v, y_v, sigma=sigma, seed=seed)
            )
            history["val_accuracy_clean"].append(evaluate_accuracy(model, z_v, y_v))
    model.eval()
    history["seconds"] = time.perf_counter() - start_time
    return history


def _task_labels(bundle: Artifact[RepresentationBundle], task: str) -> np.ndarray:
    meta = bundle.meta
    if task in meta.attributes or task in meta.sensitive_labels:
        raise UsageError(
            bundle.path,
            f"task {task!r} is a sensitive attribute of the similarity set the bundle was "
            "certified for; a classifier for it cannot be individually fair about it",
        )
    if task not in meta.label_names:
        known = ", ".join(meta.label_names) or "none"
        raise UsageError(bundle.path, f"has no labels for task '{task}' (labels: {known})")
    return bundle.tensors[f"labels.{task}"]


def train_consumer_classifier(
    bundle_path: Path,
    task: str,
    out: Path,
    sigma: float,
    architecture: str = "linear",
    hidden: int = 256,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    val_fraction: float = 0.1,
    progress: bool = True,
    device: str | torch.device = "cpu",
    sigma_selection: Any = None,
) -> Path:
    """Train C_L with N(0, σ_cls² I) input noise on a bundle's z and write the classifier.

    ``device``: where C_L trains (initial weights and noise are CPU-seeded, then moved);
    ``sigma_selection``: how ``--sigma auto`` chose σ_cls, recorded in the card."""
    bundle = read_artifact(bundle_path, expect=RepresentationBundle)
    y_all = _task_labels(bundle, task)
    z_all = bundle.tensors["z"]
    if not 0 <= val_fraction < 1:
        raise UsageError(None, "--val-fraction must be in [0, 1)")
    order = np.random.default_rng(seed).permutation(len(z_all))
    n_val = int(round(val_fraction * len(z_all)))
    val, train = order[:n_val], order[n_val:]
    if len(train) < 1:
        raise UsageError(bundle_path, "has too few samples to train on")
    classes = bundle.meta.label_classes[task]
    model = make_classifier(architecture, bundle.meta.k, classes, hidden=hidden, seed=seed)
    model.to(device)
    history = train_classifier(
        model,
        torch.from_numpy(z_all[train]),
        torch.from_numpy(y_all[train]),
        sigma=sigma,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        z_val=torch.from_numpy(z_all[val]) if n_val else None,
        y_val=torch.from_numpy(y_all[val]) if n_val else None,
        progress=progress,
    )
    noisy = history["val_accuracy_noisy"][-1] if history["val_accuracy_noisy"] else None
    clean = history["val_accuracy_clean"][-1] if history["val_accuracy_clean"] else None
    parents = {"representations": bundle.sha256}
    parents.update(
        {k: v for k, v in bundle.meta.parents.items() if k in ("encoder", "similarity_spec")}
    )
    card = ClassifierCard(
        tool=TOOL,
        architecture=architecture,
        k=bundle.meta.k,
        hidden=hidden if architecture == "mlp" else 0,
        sigma_cls=sigma,
        task=task,
        classes=[str(c) for c in range(classes)],
        training=ClassifierTraining(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            n_train=len(train),
            val_accuracy_noisy=noisy,
            val_accuracy_clean=clean,
            seconds=float(history["seconds"]),
        ),
        parents=parents,
        sigma_selection=sigma_selection,
    )
    write_artifact(out, card, module_tensors(model, "classifier."))
    if progress and noisy is not None:
        print(f"validation accuracy under noise sigma={sigma}: {noisy:.3f} (clean {clean:.3f})")
    return out


def load_classifier(path: Path) -> tuple[torch.nn.Module, Artifact[ClassifierCard]]:
    """C_L from a classifier artifact, in eval mode, with its card."""
    artifact = read_artifact(path, expect=ClassifierCard)
    card = artifact.meta
    model = make_classifier(card.architecture, card.k, card.num_classes, hidden=card.hidden or 256)
    load_module(model, artifact.weights("classifier."), path)
    return model.eval(), artifact


def export_classifier_onnx(model: nn.Module, path: str | Path, k: int) -> Path:
    """Export C_L to a self-contained ONNX file: input ``z`` [batch, k] → ``logits`` [batch, C].

    The checked export of :func:`lassi.spec.onnx_check.export_checked_onnx`: symbolic batch
    dimension, weights inside the file, ``onnx.checker``, onnxruntime compared with torch.
    """
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    example = torch.zeros(2, k, dtype=torch.float32)
    export_checked_onnx(cpu_model, (example,), path, inputs=["z"], outputs=["logits"])
    return Path(path)
