"""Attribute vectors other than the average difference (paper Sec. 4.1 uses that one; the
authors' code, eth-sri/lassi, also offers the three below, each a different answer to "who
counts as similar").

* ``perpendicular`` (Denton et al.): a linear classifier Linear(D, 1) of the sensitive
  attribute on the flattened Glow latent (BCE with logits, Adam, the epoch with the lowest
  validation loss kept); the vector is its weight w, unit norm unless asked otherwise.
* ``ramaswamy`` (Ramaswamy et al.): such classifiers for the sensitive attribute g and the task
  t; with w_g, b_g divided by ||w_g|| and w_t unit, a = w_g − (w_g·w_t) w_t is g's normal made
  orthogonal to the task's, a' = 2a / (1 − (w_g·w_t)²) the move that mirrors a latent across
  g's boundary (z − (z·w_g + b_g) a' has the opposite g-score and the same t-score), and the
  vector is a / ||a|| times the mean over the train latents of d(z) = ||(z·w_g + b_g) a'||.
* ``discover`` (Li & Xu 2021, "Discover the unknown biased attribute of an image classifier"):
  hyperplanes along whose normals a biased classifier's probability changes most
  (:mod:`lassi.regulator.discover`).

A multi-valued attribute (3D Shapes orientation) is a binary label for the linear classifiers:
the high half of its values against the low half, the middle value left out (as ``halves``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from tqdm import tqdm

from lassi.regulator.discover import classifier_probability, discover_directions
from lassi.regulator.glow import Glow, preprocess
from lassi.regulator.shapes3d import half_of_range
from lassi.spec import AttributeInfo, UsageError
from lassi.spec.contract.models import (
    AttributeMethod,
    DataProvenance,
    DiscoverSettings,
    LinearBoundary,
)

METHODS: tuple[str, ...] = ("average_diff", "perpendicular", "ramaswamy", "discover")
MAX_LATENT_BYTES = 4 * 2**30  # the learned methods hold the latents of their images in memory


def binary_labels(values: np.ndarray, num_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels in {0, 1} and which samples have one: a binary attribute as it is; a multi-valued
    one high half (1) against low half (0), the middle value (odd counts) left out."""
    values = np.asarray(values, dtype=np.int64)
    if num_values == 2:
        return values.astype(np.float32), np.ones(len(values), dtype=bool)
    half = half_of_range(values, num_values)
    return (half == 1).astype(np.float32), half != 0


@torch.no_grad()
def encode_latents(
    glow: Glow,
    source,
    ids: np.ndarray,
    batch_size: int = 128,
    progress: bool = True,
    images: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """E_G of the images ``ids`` as float32 [N, D] on the host (refused above 4 GiB).
    ``images``: how they are read (default: the source's ``images``; ``define`` passes
    :class:`lassi.regulator.attributes.HashedReads`)."""
    read = images or source.images
    d = glow.latent_dim
    if 4 * d * len(ids) > MAX_LATENT_BYTES:
        raise UsageError(
            None,
            f"{len(ids)} latents of size {d} need {4 * d * len(ids) / 2**30:.1f} GiB, over the "
            f"{MAX_LATENT_BYTES / 2**30:.0f} GiB the learned methods hold: use --max-images",
        )
    device = next(glow.parameters()).device
    out = np.empty((len(ids), d), dtype=np.float32)
    glow.eval()
    with glow.inverse_cached():
        for start in tqdm(
            range(0, len(ids), batch_size), desc="glow latents", disable=not progress, leave=False
        ):
            x = preprocess(read(ids[start : start + batch_size]), glow.n_bits)
            out[start : start + batch_size] = glow.encode(x.to(device)).float().cpu().numpy()
    return out


@dataclass
class FittedBoundary:
    """A trained linear classifier: weight w [D] and bias b (float64), and its record."""

    w: np.ndarray
    b: float
    record: LinearBoundary


def _bce(model: nn.Linear, z: Tensor, y: Tensor, batch_size: int) -> tuple[float, float]:
    """Mean BCE-with-logits loss and accuracy over (z, y), in batches."""
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(z), batch_size):
            logits = model(z[start : start + batch_size]).squeeze(1)
            target = y[start : start + batch_size]
            loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum")
            total += float(loss)
            correct += int(((logits > 0).float() == target).sum())
    return total / len(z), correct / len(z)


def train_linear_boundary(
    name: str,
    z_train: np.ndarray,
    y_train: np.ndarray,
    z_val: np.ndarray,
    y_val: np.ndarray,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> FittedBoundary:
    """Linear(D, 1) on latents z [N, D] for labels y ∈ {0, 1}: BCE with logits, Adam, shuffled
    batches; the weights of the epoch with the lowest validation loss are kept."""
    for split, y in (("train", y_train), ("validation", y_val)):
        if len(y) == 0 or y.min() == y.max():
            raise UsageError(
                None, f"attribute '{name}' needs both labels among its {split} images to train a boundary"
            )
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise UsageError(None, "the linear classifiers need epochs >= 1, batch size >= 1, lr > 0")
    generator = torch.Generator().manual_seed(seed)
    model = nn.Linear(z_train.shape[1], 1)
    with torch.no_grad():  # nn.Linear's default init, drawn from this seed only
        bound = 1.0 / np.sqrt(z_train.shape[1])
        model.weight.uniform_(-bound, bound, generator=generator)
        model.bias.uniform_(-bound, bound, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    zt, yt = torch.from_numpy(z_train), torch.from_numpy(y_train.astype(np.float32))
    zv, yv = torch.from_numpy(z_val), torch.from_numpy(y_val.astype(np.float32))
    best: tuple[float, float, int, Tensor, float] | None = None
    for epoch in range(epochs):
        order = torch.randperm(len(zt), generator=generator)
        for start in range(0, len(zt), batch_size):
            idx = order[start : start + batch_size]
            loss = nn.functional.binary_cross_entropy_with_logits(model(zt[idx]).squeeze(1), yt[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val_loss, val_acc = _bce(model, zv, yv, 1024)
        if not np.isfinite(val_loss):
            raise UsageError(None, f"the boundary of '{name}' diverged (validation loss {val_loss})")
        if best is None or val_loss < best[0]:
            best = (val_loss, val_acc, epoch, model.weight.detach()[0].clone(), float(model.bias.detach()))
    assert best is not None
    val_loss, val_acc, epoch, w, b = best
    record = LinearBoundary(
        attribute=name,
        val_accuracy=val_acc,
        val_loss=val_loss,
        best_epoch=epoch,
        n_train=len(zt),
        n_val=len(zv),
    )
    return FittedBoundary(w.double().numpy(), b, record)


def perpendicular_vector(boundary: FittedBoundary, normalize: bool = True) -> np.ndarray:
    """Denton et al.: the classifier's weight w (unit norm when ``normalize``)."""
    w = boundary.w
    norm = np.linalg.norm(w)
    if not norm > 0:
        raise UsageError(None, f"the boundary of '{boundary.record.attribute}' has a zero weight")
    return w / norm if normalize else w.copy()


@dataclass
class MirrorMove:
    """Ramaswamy et al.'s geometry for one sensitive boundary g against the task boundary t."""

    w_g: np.ndarray  # unit
    b_g: float  # divided by ||w_g|| like w_g
    w_t: np.ndarray  # unit
    a: np.ndarray  # w_g − (w_g·w_t) w_t
    a_scaled: np.ndarray  # 2a / (1 − (w_g·w_t)²)

    def mirror(self, z: np.ndarray) -> np.ndarray:
        """z − (z·w_g + b_g) a': the point with the opposite g-score and the same t-score."""
        return z - (z @ self.w_g + self.b_g)[:, None] * self.a_scaled[None]

    def distances(self, z: np.ndarray) -> np.ndarray:
        """d(z) = ||(z·w_g + b_g) a'|| for latents z [N, D]."""
        return np.abs(z @ self.w_g + self.b_g) * np.linalg.norm(self.a_scaled)


def mirror_move(sensitive: FittedBoundary, task: FittedBoundary) -> MirrorMove:
    """w_g, b_g / ||w_g||, w_t unit; a and a' (refused when the two boundaries are parallel)."""
    norm_g, norm_t = np.linalg.norm(sensitive.w), np.linalg.norm(task.w)
    if not (norm_g > 0 and norm_t > 0):
        raise UsageError(None, "a linear boundary has a zero weight")
    w_g, b_g, w_t = sensitive.w / norm_g, sensitive.b / norm_g, task.w / norm_t
    dot = float(w_g @ w_t)
    if 1.0 - dot * dot < 1e-9:
        raise UsageError(
            None,
            f"the boundaries of '{sensitive.record.attribute}' and the task "
            f"'{task.record.attribute}' are parallel: no direction changes one and not the other",
        )
    a = w_g - dot * w_t
    return MirrorMove(w_g, b_g, w_t, a, 2.0 * a / (1.0 - dot * dot))


def ramaswamy_vector(
    sensitive: FittedBoundary, task: FittedBoundary, z_train: np.ndarray, batch_size: int = 4096
) -> np.ndarray:
    """a / ||a|| times the mean of d(z) over ``z_train`` (Ramaswamy et al.; not normalised)."""
    move = mirror_move(sensitive, task)
    total = 0.0
    for start in range(0, len(z_train), batch_size):
        total += float(move.distances(z_train[start : start + batch_size].astype(np.float64)).sum())
    return move.a / np.linalg.norm(move.a) * (total / len(z_train))


class MethodConfig(BaseModel):
    """``lassi-regulator define --method`` and its settings (defaults: the authors' README
    commands; ``step`` None means ε/2: the authors walk ±5 and certify their discovered unit
    vectors at ε = 10)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["average_diff", "perpendicular", "ramaswamy", "discover"] = "average_diff"
    task: str | None = None
    normalize: bool = True
    epochs: int = Field(3, ge=1)
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    batch_size: int = Field(64, ge=1)
    seed: int = Field(0, ge=0)
    classifier: Path | None = None
    class_index: int = Field(1, ge=0)
    directions: int = Field(3, ge=1, le=16)
    iterations: int = Field(2000, ge=1)
    discover_batch_size: int = Field(4, ge=1)
    discover_lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    lambda_orth: float = Field(10.0, ge=0, allow_inf_nan=False)
    step: float | None = Field(None, gt=0, allow_inf_nan=False)

    def check(self, attributes: Sequence[str]) -> None:
        """Refuse combinations the method cannot use (one line each, named as on the CLI)."""
        name = "average" if self.method == "average_diff" else self.method
        if name in ("ramaswamy", "discover") and self.task is None:
            raise UsageError(None, f"--method {name} needs --task (the task it is computed against)")
        if name == "discover" and self.classifier is None:
            raise UsageError(None, "--method discover needs --classifier (the biased classifier)")
        if name != "discover" and self.classifier is not None:
            raise UsageError(None, "--classifier is only used by --method discover")
        if name == "discover" and attributes:
            raise UsageError(
                None, "--method discover finds its own attributes (biased_attr_i): drop --attribute"
            )
        if name != "discover" and not attributes:
            raise UsageError(None, f"--method {name} needs at least one --attribute")
        if self.task is not None and self.task in attributes:
            raise UsageError(None, f"--task {self.task} is also a sensitive --attribute")
        if name in ("average", "perpendicular") and self.task is not None:
            raise UsageError(None, f"--task is not used by --method {name}")


def _labelled(source, attribute: str, ids: np.ndarray, z: np.ndarray):
    """(latents, {0,1} labels, counts per value) of the images ``ids`` that have a label."""
    values = source.attributes(ids)[attribute]
    labels, keep = binary_labels(values, source.num_classes(attribute))
    counts = np.bincount(values, minlength=source.num_classes(attribute))
    return z[keep], labels[keep], counts


def learned_vectors(
    glow: Glow,
    source,
    attributes: list[str],
    ids: np.ndarray,
    val_ids: np.ndarray,
    epsilon: float,
    config: MethodConfig,
    validation: Callable[[np.ndarray], DataProvenance],
    progress: bool = True,
    images: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, list[AttributeInfo], AttributeMethod]:
    """The spec's vectors [m, D] (float32), one AttributeInfo per attribute (discover: per
    direction) and the method's record, for ``perpendicular``, ``ramaswamy`` or ``discover``.
    ``images``: how the train and validation images are read (see :func:`encode_latents`);
    ``validation``: the provenance of the validation images ``val_ids`` once read (recorded)."""
    from lassi.regulator.attributes import describe_split

    config.check(attributes)
    for attribute in [*attributes, *([config.task] if config.task else [])]:
        source.check_attribute(attribute)
    if len(val_ids) == 0:
        raise UsageError(None, f"--method {config.method} needs validation images (none in the val split)")
    z_train = encode_latents(glow, source, ids, progress=progress, images=images)
    z_val = encode_latents(glow, source, val_ids, progress=progress, images=images)

    def boundary(attribute: str) -> tuple[FittedBoundary, np.ndarray]:
        zt, yt, counts = _labelled(source, attribute, ids, z_train)
        zv, yv, _ = _labelled(source, attribute, val_ids, z_val)
        fitted = train_linear_boundary(
            attribute, zt, yt, zv, yv, config.epochs, config.lr, config.batch_size, config.seed
        )
        if progress:
            r = fitted.record
            print(
                f"linear boundary of {attribute}: validation accuracy {r.val_accuracy:.3f}, "
                f"loss {r.val_loss:.4f} (epoch {r.best_epoch})"
            )
        return fitted, counts

    sensitive = [boundary(a) for a in attributes]
    task = boundary(config.task) if config.task is not None else None
    rows: list[np.ndarray] = []
    infos: list[AttributeInfo] = []
    discover = None
    if config.method in ("perpendicular", "ramaswamy"):
        for attribute, (fitted, counts) in zip(attributes, sensitive, strict=True):
            if config.method == "perpendicular":
                vector = perpendicular_vector(fitted, config.normalize)
            else:
                assert task is not None
                vector = ramaswamy_vector(fitted, task[0], z_train)
            positive, negative = describe_split(source, attribute)
            half = half_of_range(np.arange(len(counts)), len(counts))
            rows.append(vector)
            infos.append(
                AttributeInfo(
                    name=attribute,
                    num_values=len(counts),
                    positive=positive,
                    negative=negative,
                    n_positive=int(counts[half == 1].sum()),
                    n_negative=int(counts[half == -1].sum()),
                    vector_norm=float(np.linalg.norm(vector)),
                    vectors="halves",
                    vector_names=[attribute],
                    value_counts=[int(c) for c in counts],
                )
            )
    else:
        assert task is not None and config.classifier is not None
        glow.requires_grad_(False)
        probability, sha, classifier_task = classifier_probability(
            config.classifier, glow, config.class_index
        )
        step = config.step if config.step is not None else epsilon / 2
        steps = (-step, 0.0, step)
        with glow.inverse_cached():
            found = discover_directions(
                probability,
                z_train,
                [task[0].w],
                config.directions,
                config.iterations,
                config.discover_batch_size,
                config.discover_lr,
                config.lambda_orth,
                steps,
                config.seed,
                progress,
            )
        for i, direction in enumerate(found):
            rows.append(direction.vector)
            name = f"biased_attr_{i}"
            infos.append(
                AttributeInfo(
                    name=name,
                    num_values=2,
                    positive=f"train images walked +{step:g} along discovered direction {i}",
                    negative=f"train images walked -{step:g} along discovered direction {i}",
                    n_positive=len(z_train),
                    n_negative=len(z_train),
                    vector_norm=float(np.linalg.norm(direction.vector)),
                    vector_names=[name],
                )
            )
        discover = DiscoverSettings(
            classifier=sha,
            classifier_task=classifier_task,
            class_index=config.class_index,
            directions=config.directions,
            iterations=config.iterations,
            batch_size=config.discover_batch_size,
            lr=config.discover_lr,
            lambda_orth=config.lambda_orth,
            steps=list(steps),
            final_tv_loss=[d.tv_loss for d in found],
            max_known_cosine=[d.max_known_cosine for d in found],
        )
    record = AttributeMethod(
        name=config.method,
        normalized=config.method == "discover" or (config.method == "perpendicular" and config.normalize),
        task=config.task,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        seed=config.seed,
        boundaries=[f.record for f, _ in sensitive] + ([task[0].record] if task else []),
        discover=discover,
        validation=validation(val_ids),
    )
    return np.stack(rows).astype(np.float32), infos, record
