"""Training the regulator's Glow by maximum likelihood (bits/dim), resumable.

All randomness is derived from ``(seed, step)`` (which images, which dequantisation noise), so a
run stopped at any point and started again from its last checkpoint follows the very same
trajectory as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from tqdm import tqdm

from lassi.regulator.content_hash import CheckedImages
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.glow import Glow, postprocess, preprocess
from lassi.regulator.tool import TOOL
from lassi.spec import GlowArtifact, GlowConfig, GlowTraining, Preprocessing, write_artifact
from lassi.spec.contract.errors import TrainingDiverged
from lassi.spec.contract.torch_state import (
    load_checkpoint,
    module_tensors,
    run_key,
    save_checkpoint,
)
from lassi.spec.runtime.distributed import Ranks, data_parallel
from lassi.spec.runtime.seeding import Stage, numpy_rng, torch_seed

ACTNORM_INIT_BATCH = 256
VALIDATION_NOISE = 1  # seeding purpose of the validation dequantisation noise


class GlowTrainConfig(BaseModel):
    """Everything that determines a Glow training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flow: GlowConfig
    data: DatasetConfig
    steps: int = Field(2_000, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(200, ge=0)
    grad_clip: float = Field(50.0, gt=0)
    seed: int = Field(0, ge=0)
    checkpoint_every: int = Field(100, ge=1)


def build_glow(flow: GlowConfig) -> Glow:
    return Glow(
        image_size=flow.image_size,
        n_levels=flow.n_levels,
        n_steps=flow.n_steps,
        hidden=flow.hidden,
        coupling=flow.coupling,
        n_bits=flow.n_bits,
        channels=flow.channels,
    )


def batch_ids(train_ids: np.ndarray, seed: int, step: int, batch_size: int) -> np.ndarray:
    """The images of one step: a seeded draw (without replacement) from the train split."""
    rng = numpy_rng(seed, step, Stage.TRAINING)
    return np.sort(rng.choice(train_ids, size=min(batch_size, len(train_ids)), replace=False))


def learning_rate(config: GlowTrainConfig, step: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps`` steps, then constant."""
    if config.warmup_steps == 0:
        return config.lr
    return config.lr * min(1.0, (step + 1) / config.warmup_steps)


DIVERGENCE_HISTORY = 5  # finite bits/dim values a divergence message shows


def divergence_message(
    config: GlowTrainConfig, step: int, value: float, history: list[tuple[int, float]],
    lowest: tuple[int, float] | None, x: Tensor, fresh: bool,
) -> str:  # fmt: skip
    """Why a non-finite bits/dim at ``step`` stopped the training, in what was observed, and the
    remedies that fit: ``history`` the last finite (step, bits/dim) of this process, ``lowest``
    its lowest, ``x`` the dequantised batch (pixels in [-0.5, 0.5] by construction), ``fresh``
    whether the run started at step 0 (its first step comes before any update)."""
    lr = learning_rate(config, step)
    warming = config.warmup_steps > 0 and step + 1 < config.warmup_steps
    schedule = (
        f"learning rate {lr:.3g}, warm-up step {step + 1} of {config.warmup_steps} to --lr {config.lr:g}"
        if warming
        else f"learning rate {lr:g} (--lr)"
    )
    seen = [f"bits/dim {value} at step {step} of {config.steps}"]
    if history:
        shown = ", ".join(f"{v:.3f} (step {s})" for s, v in history)
        seen.append(f"before it {shown}")
    if lowest is not None and history and history[-1][1] > lowest[1] + 0.5:
        seen.append(f"risen from its lowest, {lowest[1]:.3f} at step {lowest[0]}")
    seen.append(schedule)
    level = 1.0 / 2**config.flow.n_bits
    spread = float(x.detach().float().std(dim=(0, 2, 3)).max()) if x.shape[0] * x[0, 0].numel() > 1 else 0.0
    constant = spread < level
    if constant:
        seen.append(
            f"the batch's images are nearly constant (largest per-channel std {spread:.2g}, below one "
            f"{config.flow.n_bits}-bit level {level:g}: only the dequantisation noise varies)"
        )
    advice = []
    if constant:
        advice.append("check the images (blank or identical files under --data-root)")
    if fresh and step == 0:
        advice.append(
            "the first step comes before any update, so --lr is not the cause: the initial flow "
            "overflows on these images; try a smaller flow (--levels, --depth, --hidden)"
            + (" or --coupling additive" if config.flow.coupling == "affine" else "")
        )
    else:
        advice.append(f"lower --lr (e.g. --lr {config.lr / 10:g})")
        if warming or config.warmup_steps < step + 1 <= 2 * max(config.warmup_steps, 1):
            advice.append(f"a longer --warmup (now {config.warmup_steps})")
        if config.flow.coupling == "affine":
            advice.append("--coupling additive (the more stable coupling)")
    return f"training diverged: {'; '.join(seen)}. Try: {'; or '.join(advice)}"


def dequantize(x: Tensor, n_bits: int, generator: torch.Generator) -> Tensor:
    """Quantised x + u, u ~ U[0, 1/2**n_bits) per dimension (RealNVP Sec. 4.1; Glow Sec. 5)."""
    return x + torch.rand(x.shape, generator=generator, dtype=x.dtype) / 2**n_bits


def validation_noise(ids: np.ndarray, shape: tuple[int, ...], n_bits: int, seed: int) -> Tensor:
    """The dequantisation noise of each validation image, drawn from its own (seed, id) stream."""
    noise = torch.empty(len(ids), *shape)
    for row, sample_id in enumerate(ids):
        generator = torch.Generator().manual_seed(
            torch_seed(seed, int(sample_id), Stage.ESTIMATION, purpose=VALIDATION_NOISE)
        )
        noise[row] = torch.rand(shape, generator=generator) / 2**n_bits
    return noise


def _shard_batch(
    images: CheckedImages, ids: np.ndarray, n_bits: int, noise: torch.Generator, ranks: Ranks
) -> Tensor:
    """This rank's contiguous slice of the dequantised global batch ``ids``: only its images
    are loaded, and the noise of the whole batch is drawn (then sliced) so that every image gets
    the very noise a single-process run gives it."""
    rows = ranks.shard(len(ids))
    x = preprocess(images(ids[rows]), n_bits)
    u = dequantize(torch.zeros((len(ids), *x.shape[1:]), dtype=x.dtype), n_bits, noise)
    return x + u[rows]


def _device_of(glow: Glow) -> torch.device:
    return next(glow.parameters()).device


@torch.no_grad()
def evaluate_bits_per_dim(
    glow: Glow, source, ids: np.ndarray, n_bits: int, seed: int = 0, batch_size: int = 128
) -> float:
    """Mean dequantised bits/dim of the images ``ids`` (the figure training minimises).

    Each quantised image gets uniform noise in [0, 1/2**n_bits) (seeded per image), and
    bits/dim = -(log p(x + u) - D log 2**n_bits) / (D ln 2), which includes the discretisation
    term; its expectation over u bounds the discrete model's code length, so it is >= 0
    (Glow Sec. 5, RealNVP Sec. 4.1). Un-noised images would score a density at lattice points,
    which is not a likelihood and can come out negative.
    """
    glow.eval()
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        x = preprocess(source.images(batch), n_bits)
        x = (x + validation_noise(batch, tuple(x.shape[1:]), n_bits, seed)).to(_device_of(glow))
        total += float(glow.bits_per_dim(x).sum())
        count += len(x)
    return total / max(count, 1)


def save_sample_grid(
    glow: Glow, path: Path, n: int = 36, temperature: float = 0.7, seed: int = 0
) -> None:
    """Write a PNG grid of images sampled from the Glow's priors."""
    glow.eval()
    generator = torch.Generator().manual_seed(seed)
    with glow.inverse_cached():
        images = postprocess(glow.sample(n, temperature, generator))
    save_image_grid(images, path, columns=int(math.ceil(math.sqrt(n))))


def save_image_grid(images: np.ndarray, path: Path, columns: int, pad: int = 2) -> None:
    """uint8 [N, H, W, 3] -> one PNG with ``columns`` images per row, written atomically."""
    from PIL import Image

    from lassi.spec import atomic_path

    n, h, w, _ = images.shape
    rows = int(math.ceil(n / columns))
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = image
    with atomic_path(path) as tmp:
        Image.fromarray(canvas).save(tmp, format="PNG")


def optimisation_step(
    glow: Glow,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    grad_clip: float,
    ranks: Ranks | None = None,
) -> Tensor:
    """One maximum-likelihood step on the dequantised batch ``x``; returns its mean bits/dim.

    Under torchrun (``ranks`` active) the gradients are averaged over the ranks before clipping.
    """
    bpd = glow.bits_per_dim(x).mean()
    optimizer.zero_grad(set_to_none=True)
    bpd.backward()
    if ranks is not None:
        ranks.average_gradients(glow.parameters())
    torch.nn.utils.clip_grad_norm_(glow.parameters(), grad_clip)
    optimizer.step()
    return bpd.detach()


def train_glow(
    config: GlowTrainConfig, out: Path, progress: bool = True, device: str | torch.device = "cpu"
) -> Path:
    """Train a Glow on the configured data and write it as a ``glow`` artifact to ``out``.

    A checkpoint beside ``out`` (``<out>.ckpt``) is written every ``checkpoint_every`` steps;
    running the same configuration again resumes from it (on any device). ``device``: where the
    flow trains; initial weights, batches and dequantisation noise are drawn on the CPU and moved,
    so they do not depend on it. Under torchrun the run is data-parallel
    (:mod:`lassi.spec.runtime.distributed`): ``batch_size`` is the global batch, each rank trains on its
    slice and rank 0 alone writes the checkpoint, the artifact and the sample grid.
    """
    with data_parallel(device) as (ranks, device):
        return _train_glow(config, Path(out), progress and ranks.is_main, device, ranks)


def _train_glow(
    config: GlowTrainConfig, out: Path, progress: bool, device: torch.device, ranks: Ranks
) -> Path:
    source = make_source(config.data)
    train_ids = source.split_ids("train")
    val_ids = source.split_ids("val")
    ranks.check_batch_size(min(config.batch_size, len(train_ids)))
    torch.manual_seed(config.seed)
    glow = build_glow(config.flow).to(device)
    optimizer = torch.optim.Adam(glow.parameters(), lr=config.lr)
    checkpoint = out.with_name(out.name + ".ckpt")
    key = run_key(config=config.model_dump(mode="json"))
    # the train images' files hashed once (rendered data: its generator parameters, in the
    # config); every batch is checked against these hashes, and the checkpoint resumes only
    # over the same data
    images = CheckedImages(
        source,
        train_ids,
        rendered=config.data.model_dump(mode="json"),  # (and a 3dshapes.h5's rows, hashed there)
        progress="hash train images" if progress else None,
    )
    start, seconds = 0, 0.0
    restored = load_checkpoint(
        checkpoint,
        stage="train-glow",
        key=key,
        modules={"glow": glow},
        optimizer=optimizer,
        data=images.identity,
    )
    if restored is not None:
        start, state, _ = restored
        seconds = float(state.get("seconds", 0.0))
        if progress:
            print(f"resuming {out.name} from step {start} ({checkpoint})")
    else:
        init_ids = batch_ids(train_ids, config.seed, 10**9, ACTNORM_INIT_BATCH)
        init = preprocess(images(init_ids), config.flow.n_bits)
        glow.initialize_actnorm(init.to(device))
    ranks.broadcast(glow)  # every rank starts from rank 0's (identical) weights

    bar = tqdm(
        total=config.steps,
        initial=start,
        desc="train-glow",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    bpd_avg = float("nan")
    history: list[tuple[int, float]] = []  # the last finite bits/dim, for a divergence message
    lowest: tuple[int, float] | None = None
    glow.train()
    for step in range(start, config.steps):
        t0 = time.perf_counter()
        ids = batch_ids(train_ids, config.seed, step, config.batch_size)
        noise = torch.Generator().manual_seed(torch_seed(config.seed, step, Stage.TRAINING))
        if ranks.active:
            x = _shard_batch(images, ids, config.flow.n_bits, noise, ranks).to(device)
        else:
            x = preprocess(images(ids), config.flow.n_bits)
            x = dequantize(x, config.flow.n_bits, noise).to(device)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        bpd = optimisation_step(glow, optimizer, x, config.grad_clip, ranks)
        value = float(ranks.sum(bpd) / ranks.world if ranks.active else bpd)
        if not math.isfinite(value):
            message = divergence_message(config, step, value, history, lowest, x, start == 0)
            raise TrainingDiverged(None, message)
        history = [*history[1 - DIVERGENCE_HISTORY :], (step, value)]
        lowest = (step, value) if lowest is None or value < lowest[1] else lowest
        bpd_avg = value if math.isnan(bpd_avg) else 0.95 * bpd_avg + 0.05 * value
        elapsed = time.perf_counter() - t0
        seconds += elapsed
        # labelled as what they are: a moving average of bits/dim, the latest step's throughput
        bar.set_postfix(
            bpd_ema=f"{bpd_avg:.3f}", last_img_s=f"{len(ids) / elapsed:.0f}", refresh=False
        )
        bar.update(1)
        if ranks.is_main and (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            save_checkpoint(
                checkpoint,
                tool=TOOL,
                stage="train-glow",
                key=key,
                step=step + 1,
                modules={"glow": glow},
                optimizer=optimizer,
                state={"seconds": seconds},
                data=images.identity,
            )
    bar.close()
    if not ranks.is_main:
        return out

    val_bpd = evaluate_bits_per_dim(
        glow, source, val_ids[:512], config.flow.n_bits, seed=config.seed
    )
    meta = GlowArtifact(
        tool=TOOL,
        flow=config.flow,
        preprocessing=Preprocessing.for_flow(config.flow),
        data=config.data.provenance("train", len(train_ids)).with_content(images.content_sha256),
        training=GlowTraining(
            steps=config.steps,
            batch_size=config.batch_size,
            lr=config.lr,
            warmup_steps=config.warmup_steps,
            seed=config.seed,
            train_bits_per_dim=None if math.isnan(bpd_avg) else bpd_avg,
            val_bits_per_dim=val_bpd,
            seconds=seconds,
        ),
    )
    write_artifact(out, meta, module_tensors(glow, "glow."))
    glow.to("cpu")  # the sample grid is drawn from a CPU generator
    save_sample_grid(glow, out.with_name(out.stem + ".samples.png"), seed=config.seed)
    checkpoint.unlink(missing_ok=True)
    if progress:
        print(
            f"wrote {out} (validation bits/dim {val_bpd:.3f} dequantised, "
            f"{seconds / 60:.1f} min of training)"
        )
    return out
