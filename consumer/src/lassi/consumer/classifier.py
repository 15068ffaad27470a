"""The consumer's classifier C_L on representations: training, loading, ONNX export.

Following Cohen et al. (2019) and LASSI (paper Sec. 4.3, "Training C_L"), C_L is trained on
representations with Gaussian noise N(0, σ_cls² I) added to its inputs, so that the smoothed
classifier is accurate and the certified radii are large. Defaults: a linear head Linear(k, C),
batch 128, Adam lr 1e-3 (the paper states no values for them), trained to convergence: at most
:func:`auto_epochs` epochs (from the bundle's size), stopped early once the cross-entropy under
noise on the held-out validation part of the bundle has not improved for ``patience`` epochs, with
the best epoch's weights kept (deterministic for a seed). ``epochs=N`` trains exactly N epochs.
A classifier whose accuracy is at or below the majority-class rate is reported as such.

The trained classifier is shared as ONNX (dynamic batch) so that a party can run it without this
code; :mod:`lassi.consumer.onnx_runtime` runs it and reports the execution provider used.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
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
from lassi.spec.contract.errors import TrainingDiverged
from lassi.spec.contract.onnx_check import export_checked_onnx
from lassi.spec.contract.torch_state import load_module, module_tensors
from lassi.spec.runtime.seeding import Stage, torch_seed

__all__ = [
    "LinearClassifier",
    "MLPClassifier",
    "make_classifier",
    "train_classifier",
    "train_consumer_classifier",
    "load_classifier",
    "export_classifier_onnx",
]

from lassi.consumer.tool import TOOL

# Streams of the training stage: sample id 0 drives shuffling and training noise, sample id 1 the
# (fixed) validation noise, sample id 2 the parameter initialisation of make_classifier.
_TRAIN_STREAM, _VALIDATION_STREAM, _INIT_STREAM = 0, 1, 2

# Automatic epochs: at least AUTO_MIN_STEPS optimiser steps, between AUTO_MIN_EPOCHS and
# AUTO_MAX_EPOCHS epochs; stop after auto_patience epochs (at least PATIENCE, and at least
# PATIENCE_STEPS optimiser steps) without a validation-loss improvement of more than
# MIN_IMPROVEMENT (relative).
AUTO_MIN_STEPS, AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS = 2000, 10, 200
PATIENCE, PATIENCE_STEPS, MIN_IMPROVEMENT = 5, 100, 1e-2


def auto_patience(n_train: int, batch_size: int) -> int:
    """Epochs without improvement before a default run stops: PATIENCE epochs, or more on small
    bundles so that they span PATIENCE_STEPS optimiser steps."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    return max(PATIENCE, math.ceil(PATIENCE_STEPS / steps_per_epoch))


def auto_epochs(n_train: int, batch_size: int) -> int:
    """The most epochs a default run trains on ``n_train`` samples: enough epochs for
    AUTO_MIN_STEPS steps of ``batch_size``, within [AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS]."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    wanted = math.ceil(AUTO_MIN_STEPS / steps_per_epoch)
    return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, wanted)))


def majority_rate(y: np.ndarray) -> tuple[int, float]:
    """The most frequent label (lowest on ties) and its rate: the accuracy of a constant guess."""
    y = np.asarray(y)
    if y.size == 0:
        return 0, 0.0
    values, counts = np.unique(y, return_counts=True)
    top = int(np.argmax(counts))
    return int(values[top]), float(counts[top]) / y.size


def majority_warning(accuracy: float, what: str, label: int, rate: float, classes: list[str]) -> str | None:
    """A warning when ``accuracy`` is at or below the majority-class rate, else None."""
    if accuracy > rate:
        return None
    name = classes[label] if 0 <= label < len(classes) else str(label)
    shown = str(label) if name == str(label) else f"{label} ({name})"
    return (
        f"warning: {what} {accuracy:.3f} is at or below the majority-class rate {rate:.3f} "
        f"(always predicting class {shown}): the classifier has learned nothing useful; train "
        "longer (drop --epochs for training to convergence) or use a smaller sigma_cls"
    )


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
def evaluate(
    model: nn.Module,
    z: torch.Tensor,
    y: torch.Tensor,
    sigma: float = 0.0,
    seed: int = 0,
    batch_size: int = 4096,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on (z, y), with one N(0, σ² I) draw per sample
    when σ > 0 (seeded: the same draws at every call)."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    generator = _generator(seed, _VALIDATION_STREAM)
    correct, loss = 0, 0.0
    for start in range(0, len(z), batch_size):
        batch = z[start : start + batch_size].to(dtype=torch.float32)
        if sigma > 0:
            batch = batch + sigma * torch.randn(batch.shape, generator=generator)
        logits = model(batch.to(device)).cpu()
        targets = y[start : start + batch_size]
        correct += int((logits.argmax(dim=1) == targets).sum())
        loss += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
    model.train(was_training)
    return correct / max(1, len(z)), loss / max(1, len(z))


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
    patience: int | None = None,
) -> dict[str, Any]:
    """Train C_L with Gaussian noise augmentation: minimise CE(C_L(z + ε), y), ε ~ N(0, σ² I), Adam.

    Shuffling and noise come from one CPU generator seeded from (seed, TRAINING), so the run is
    deterministic for a seed on a given device. Returns the history per epoch: mean training loss,
    training accuracy under noise, and when (z_val, y_val) are given the validation accuracy and
    cross-entropy under noise (one seeded draw per validation sample, the same draws every epoch)
    and the accuracy without noise. ``patience`` (with validation data): early stopping, after
    ``patience`` epochs without a relative improvement of the validation loss under noise by more
    than MIN_IMPROVEMENT; the best epoch's weights are restored (``history["best_epoch"]``).
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
        "val_loss_noisy": [],
        "sigma": float(sigma),
        "best_epoch": None,
    }
    has_val = z_val is not None and y_val is not None
    if has_val:
        z_v = torch.as_tensor(z_val, dtype=torch.float32).cpu()
        y_v = torch.as_tensor(y_val, dtype=torch.int64).cpu()
    best_loss, best_state, stale = math.inf, None, 0
    start_time = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(z), generator=generator)
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(
            range(0, len(z), batch_size),
            desc=f"C_L epoch {epoch}/{epochs}" + (" (at most; early stopping)" if patience else ""),
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
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    None,
                    f"classifier training diverged (loss is {float(loss.detach())} at epoch {epoch}); "
                    "lower --lr",
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(index)
            correct += int((logits.detach().argmax(dim=1) == targets).sum())
            seen += len(index)
            bar.set_postfix(  # this epoch's running training figures, under noise
                train_loss=f"{total_loss / seen:.4f}",
                train_acc_noisy=f"{correct / seen:.3f}",
                refresh=False,
            )
        history["epoch"].append(epoch)
        history["loss"].append(total_loss / seen)
        history["train_accuracy_noisy"].append(correct / seen)
        if has_val:
            accuracy, val_loss = evaluate(model, z_v, y_v, sigma=sigma, seed=seed)
            history["val_accuracy_noisy"].append(accuracy)
            history["val_loss_noisy"].append(val_loss)
            history["val_accuracy_clean"].append(evaluate(model, z_v, y_v)[0])
            if patience is not None:
                if best_state is None or val_loss < best_loss - MIN_IMPROVEMENT * abs(best_loss):
                    best_loss, stale, history["best_epoch"] = val_loss, 0, epoch
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
                    if stale >= patience:
                        break
    if best_state is not None:
        model.load_state_dict(best_state)
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
    epochs: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    val_fraction: float = 0.1,
    progress: bool = True,
    device: str | torch.device = "cpu",
    sigma_selection: Any = None,
    warn: Callable[[str], None] | None = None,
    report: bool | None = None,
) -> Path:
    """Train C_L with N(0, σ_cls² I) input noise on a bundle's z and write the classifier.

    ``epochs``: None (the default) trains to convergence: at most :func:`auto_epochs` epochs,
    early stopping on the held-out ``val_fraction`` of the bundle (PATIENCE), the best epoch kept;
    an integer trains exactly that many epochs. ``device``: where C_L trains (initial weights and
    noise are CPU-seeded, then moved); ``sigma_selection``: how ``--sigma auto`` chose σ_cls,
    recorded in the card. ``warn``: receives the warning of :func:`majority_warning` (default:
    printed). ``report``: print the validation accuracy (default: with ``progress``)."""
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
    present = np.unique(y_all[train])
    if classes < 2 or len(present) < 2:  # before training: a classifier needs two classes
        raise UsageError(
            bundle_path,
            f"has one class of '{task}' only (label {int(present[0])} in all "
            f"{len(train)} training samples); a classifier needs at least two",
        )
    model = make_classifier(architecture, bundle.meta.k, classes, hidden=hidden, seed=seed)
    model.to(device)
    max_epochs = auto_epochs(len(train), batch_size) if epochs is None else epochs
    history = train_classifier(
        model,
        torch.from_numpy(z_all[train]),
        torch.from_numpy(y_all[train]),
        sigma=sigma,
        epochs=max_epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        z_val=torch.from_numpy(z_all[val]) if n_val else None,
        y_val=torch.from_numpy(y_all[val]) if n_val else None,
        progress=progress,
        patience=auto_patience(len(train), batch_size) if epochs is None else None,
    )
    # the figures of the kept weights: the best epoch's when stopped early, else the last one's
    kept = (history["best_epoch"] or len(history["epoch"])) - 1
    noisy = history["val_accuracy_noisy"][kept] if history["val_accuracy_noisy"] else None
    clean = history["val_accuracy_clean"][kept] if history["val_accuracy_clean"] else None
    names = class_names(bundle.meta, task)
    label, rate = majority_rate(y_all[val] if n_val else y_all[train])
    accuracy = noisy if noisy is not None else history["train_accuracy_noisy"][-1]
    what = (  # named as the --sigma auto table names it
        f"held-out accuracy under noise (sigma_cls = {sigma:g})"
        if noisy is not None
        else f"training accuracy under noise (sigma_cls = {sigma:g})"
    )
    warning = majority_warning(accuracy, what, label, rate, names)
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
        classes=names,
        training=ClassifierTraining(
            epochs=len(history["epoch"]),
            max_epochs=max_epochs,
            best_epoch=history["best_epoch"],
            majority_rate=rate,
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
    if progress if report is None else report:
        print(training_summary(card))
    if warning is not None:
        (warn or print)(warning)
    return out


def training_summary(card: ClassifierCard) -> str:
    """One line: epochs trained (and why it stopped), the held-out accuracy, the majority rate."""
    t = card.training
    if t.best_epoch is not None:
        epochs = f"{t.epochs} epochs (early stop; kept epoch {t.best_epoch} of at most {t.max_epochs})"
    else:
        epochs = f"{t.epochs} epochs"
    line = f"trained C_L for {epochs} on {t.n_train} samples"
    if t.val_accuracy_noisy is None:
        return line + " (no validation split)"
    line += (
        f"; held-out validation accuracy under noise sigma_cls={card.sigma_cls:g} (one draw per "
        f"sample): {t.val_accuracy_noisy:.3f}, without noise {t.val_accuracy_clean:.3f}"
    )
    if t.majority_rate is not None:
        line += f", majority-class rate {t.majority_rate:.3f}"
    return line


def class_names(meta: RepresentationBundle, task: str) -> list[str]:
    """The task's class names where the bundle's data source defines them: a CelebA attribute's
    labels are 0 = absent, 1 = present ("not Smiling", "Smiling"); elsewhere the indices."""
    count = meta.label_classes[task]
    if meta.data is not None and meta.data.dataset == "celeba" and count == 2:
        return [f"not {task}", task]
    return [str(c) for c in range(count)]


def load_classifier(path: Path) -> tuple[torch.nn.Module, Artifact[ClassifierCard]]:
    """C_L from a classifier artifact, in eval mode, with its card."""
    artifact = read_artifact(path, expect=ClassifierCard)
    card = artifact.meta
    model = make_classifier(card.architecture, card.k, card.num_classes, hidden=card.hidden or 256)
    load_module(model, artifact.weights("classifier."), path)
    return model.eval(), artifact


def export_classifier_onnx(model: nn.Module, path: str | Path, k: int) -> Path:
    """Export C_L to a self-contained ONNX file: input ``z`` [batch, k] → ``logits`` [batch, C].

    The checked export of :func:`lassi.spec.contract.onnx_check.export_checked_onnx`: symbolic batch
    dimension, weights inside the file, ``onnx.checker``, onnxruntime compared with torch.
    """
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    example = torch.zeros(2, k, dtype=torch.float32)
    export_checked_onnx(cpu_model, (example,), path, inputs=["z"], outputs=["logits"])
    return Path(path)
