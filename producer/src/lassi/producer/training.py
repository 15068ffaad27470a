"""Training the producer's fair encoder E_L (paper Sec. 4.2).

Loss = CE(aux(E_L(z)), y) + λ_adv · adversarial + λ_contr · contrastive (+ λ_rec · ||dec(E_L(z)) − z||²),
z = E_G(x) the Glow latent (cached: it never changes). The adversary is the random attack
(:func:`lassi.producer.losses.random_attack`): points t uniform in the m-dimensional ε-ball, the
farthest representation taken with the encoder in eval mode; a producer may train it over a larger
set than the spec's (``attack_spec``, the regulator's extension of it), as it may over the cube
around the ball. λ = 0 is the baseline. The epoch
with the best validation accuracy is written (``keep="best"``) or the last one (``keep="last"``);
every epoch is checkpointed and a rerun with the same arguments resumes. Batch order and attack draws
derive from ``(seed, epoch/step)``.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn
from tqdm import tqdm

from lassi.producer.base_function import BaseFunction, build_base_function, load_spec
from lassi.producer.latents import TOOL, glow_identity, glow_latents_of
from lassi.producer.losses import (
    LassiLoss,
    augmented_latents,
    contrastive_loss,
    random_attack,
    sample_attack,
)
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.regulator.encoders import AuxClassifier, LatentDecoder
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import (
    AttackSet,
    EncoderArchitecture,
    EncoderCard,
    EncoderTraining,
    LossWeights,
    UsageError,
    write_artifact,
)
from lassi.spec.contract.errors import TrainingDiverged
from lassi.spec.contract.torch_state import (
    load_checkpoint,
    module_tensors,
    run_key,
    save_checkpoint,
)
from lassi.spec.runtime.distributed import Ranks, data_parallel, sync_batch_norm
from lassi.spec.runtime.seeding import Stage, numpy_rng, torch_seed

PURPOSE_ORDER, PURPOSE_ATTACK, PURPOSE_AUGMENT = 1, 2, 3


class EncoderTrainConfig(EncoderArchitecture):
    """Everything that determines an encoder training run: the architecture (as the card records
    it) and how it is trained."""

    task: str
    loss: LossWeights = LossWeights()
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(500, ge=2)
    lr: float = Field(1e-3, gt=0)
    seed: int = Field(0, ge=0)
    data: DatasetConfig
    max_train: int | None = Field(None, ge=1)
    # Which epoch's weights are written: "best" validation accuracy, or the "last" epoch (the
    # authors' code certifies the last). Validation accuracy saturates within a few epochs while
    # the fairness terms keep shrinking the spread along the similarity set, so "best" can keep an
    # early, less invariant encoder.
    keep: Literal["best", "last"] = "best"
    # The data-augmentation baseline: N points t drawn uniformly from the set (loss.attack_region)
    # per sample, z + t A trained on with the sample's label, cross-entropy only. Left out of the
    # dump when 0, so the run keys of other runs stay what they were.
    augment: int = Field(0, ge=0, le=10_000, exclude_if=lambda v: v == 0)

    @model_validator(mode="after")
    def _augment_is_task_loss_only(self) -> EncoderTrainConfig:
        if self.augment and (self.loss.adv > 0 or self.loss.contr > 0):
            raise ValueError(
                "--augment trains with the task loss only: use it with --lambda-adv 0 and "
                "--lambda-contr 0"
            )
        return self


def _accuracy(
    base: BaseFunction,
    aux: nn.Module,
    z: torch.Tensor,
    y: torch.Tensor,
    batch: int = 1024,
    device: torch.device | None = None,
) -> float:
    base.eval()
    aux.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(z), batch):
            logits = aux(base(z[start : start + batch].to(device)))
            correct += int((logits.argmax(1).cpu() == y[start : start + batch]).sum())
    return correct / max(len(z), 1)


def train_encoder(
    config: EncoderTrainConfig,
    spec: Path | SimilaritySet,
    out: Path,
    cache_dir: Path | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    attack_spec: Path | SimilaritySet | None = None,
) -> Path:
    """Train E_L on the producer's data for ``config.task`` and write the ``encoder`` artifact.

    ``attack_spec``: a larger similarity set for the random attack only, a second spec of the same
    regulator that extends ``spec`` (:meth:`SimilaritySet.check_extends`; e.g. ``define
    --condition-on``'s over the pairs spec). The encoder stays ``spec``'s: its parent, its
    certificates; the card records the attack set.

    ``device``: where the models train; latents and labels stay on the CPU and each batch moves
    (initial weights, batch order and attack draws are CPU-seeded, so they do not depend on it).
    Under torchrun the run is data-parallel (:mod:`lassi.spec.runtime.distributed`): ``batch_size`` is
    the global batch, each rank trains on its slice of it with BatchNorm statistics and the
    contrastive pairs taken over the global batch, and rank 0 alone writes the checkpoints and
    the artifact.
    """
    with data_parallel(device) as (ranks, device):
        return _train_encoder(
            config, spec, Path(out), cache_dir, progress and ranks.is_main, device, ranks,
            attack_spec,
        )  # fmt: skip


def _train_encoder(
    config: EncoderTrainConfig,
    spec: Path | SimilaritySet,
    out: Path,
    cache_dir: Path | None,
    progress: bool,
    device: torch.device,
    ranks: Ranks,
    attack_spec: Path | SimilaritySet | None = None,
) -> Path:
    sim = load_spec(spec)
    attack, attack_set = sim, None
    if attack_spec is not None:
        attack = load_spec(attack_spec)
        extra = attack.check_extends(sim)
        attack_set = AttackSet(spec=attack.sha256, extra_vectors=extra)
    data = config.data
    if data.image_size != sim.glow.image_size:
        raise UsageError(
            None,
            f"data image size {data.image_size} differs from the spec's Glow ({sim.glow.image_size})",
        )
    source = make_source(data)
    source.check_attribute(config.task)
    sensitive = {name for s in (sim, attack) for name in s.meta.attribute_names + s.meta.vector_names}
    if config.task in sensitive:
        raise UsageError(
            None,
            f"task {config.task!r} is a sensitive attribute of the spec; the encoder must not "
            "be trained to predict it",
        )
    num_classes = source.num_classes(config.task)
    train_ids = source.split_ids("train")
    if config.max_train is not None:
        train_ids = train_ids[: config.max_train]
    val_ids = source.split_ids("val")
    cache_dir = Path(cache_dir) if cache_dir is not None else out.parent / ".cache"
    n = len(train_ids)
    ranks.check_batch_size(config.batch_size)
    if ranks.active and 2 <= n % config.batch_size < ranks.world:
        raise UsageError(
            None,
            f"the last batch of each epoch has {n % config.batch_size} images, fewer than the "
            f"{ranks.world} torchrun processes; choose another --batch-size or --max-train",
        )
    # rank 0 fills the latent cache, the others read it under rank 0's key: the Glow's identity
    # includes its latents of probe images, which another GPU may compute in other last bits
    glow_key = ranks.main_text(glow_identity(sim))
    with ranks.main_first():
        train_latents = glow_latents_of(sim, source, data, train_ids, cache_dir, progress=progress,
                                        desc="glow latents (train)", glow_key=glow_key)  # fmt: skip
        val_latents = glow_latents_of(sim, source, data, val_ids, cache_dir, progress=progress,
                                      desc="glow latents (val)", glow_key=glow_key)  # fmt: skip
    z_train, z_val = train_latents.z, val_latents.z
    # the checkpoint resumes only over the same data: each image file's hash (or the generator
    # parameters of rendered data), as read now; a run never rereads its images
    data_identity = run_key(
        train=train_latents.identity(source, data), val=val_latents.identity(source, data)
    )
    y_train = torch.from_numpy(source.attributes(train_ids)[config.task].astype(np.int64))
    y_val = torch.from_numpy(source.attributes(val_ids)[config.task].astype(np.int64))

    torch.manual_seed(config.seed)
    base = build_base_function(config, attack)  # E_L with the attack set's A (E_L alone is saved)
    aux = AuxClassifier(config.k, num_classes)
    decoder = (
        LatentDecoder(config.k, sim.glow.latent_dim, hidden=max(config.hidden or [256]))
        if config.loss.rec > 0
        else None
    )
    modules: dict[str, nn.Module] = {"encoder": base.encoder, "aux": aux}
    if decoder is not None:
        modules["decoder"] = decoder
    base.to(device)  # moves the encoder (and Glow, vectors) in place
    for module in modules.values():
        module.to(device)
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    best = {name: copy.deepcopy(m) for name, m in modules.items()}
    checkpoint = out.with_name(out.name + ".ckpt")
    extends = {} if attack_set is None else {"attack": attack.sha256}
    key = run_key(config=config.model_dump(mode="json"), spec=sim.sha256, **extends)
    start_epoch, state = 0, {"best_val": -1.0, "best_epoch": 0, "train_acc": 0.0, "seconds": 0.0}
    restored = load_checkpoint(
        checkpoint,
        stage="train-encoder",
        key=key,
        modules={**modules, **{f"best_{n}": m for n, m in best.items()}},
        optimizer=optimizer,
        data=data_identity,
    )
    if restored is not None:
        start_epoch, state, _ = restored
        if progress:
            print(f"resuming {out.name} after epoch {start_epoch} ({checkpoint})")
    for module in modules.values():
        ranks.broadcast(module)  # every rank starts from rank 0's (identical) weights
        if ranks.active:
            sync_batch_norm(module)

    lam = config.loss
    objective = LassiLoss.from_weights(lam)
    active_terms = objective.active_terms
    if ranks.active:  # the contrastive pairs span the global batch: computed below
        objective = LassiLoss(lam.adv, 0.0, lam.rec, lam.delta_adv, lam.delta_contr)
    steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        desc="train encoder",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        order = numpy_rng(config.seed, epoch, Stage.TRAINING, PURPOSE_ORDER).permutation(n)
        correct = 0
        for step in range(steps_per_epoch):
            idx = torch.from_numpy(order[step * config.batch_size : (step + 1) * config.batch_size])
            if len(idx) < 2:
                continue
            batch, rows = len(idx), ranks.shard(len(idx))
            if ranks.active:
                idx_global, idx = idx, idx[rows]
            z, y = z_train[idx].to(device), y_train[idx].to(device)
            for m in modules.values():
                m.train()
            base.train()
            r_adv = r_aug = y_aug = None
            if config.augment:
                n_aug = config.augment
                generator = torch.Generator().manual_seed(
                    torch_seed(
                        config.seed, epoch * steps_per_epoch + step, Stage.TRAINING, PURPOSE_AUGMENT
                    )
                )
                t_aug = sample_attack(
                    generator, batch * n_aug, base.m, sim.epsilon, lam.attack_region, dtype=z.dtype
                ).reshape(batch, n_aug, base.m)
                if ranks.active:
                    t_aug = t_aug[rows]
                z_aug = augmented_latents(base, z, t_aug.to(z.device))
                both = base(torch.cat([z, z_aug]))  # one pass: shared BatchNorm statistics
                r, r_aug = both[: len(z)], both[len(z) :]
                y_aug = y.repeat_interleave(n_aug)
            elif lam.adv > 0:
                generator = torch.Generator().manual_seed(
                    torch_seed(
                        config.seed, epoch * steps_per_epoch + step, Stage.TRAINING, PURPOSE_ATTACK
                    )
                )
                points = None
                if ranks.active:  # this rank's rows of the global batch's draws
                    points = sample_attack(
                        generator, batch * lam.attack_points, base.m, sim.epsilon,
                        lam.attack_region, dtype=z.dtype,
                    ).reshape(batch, lam.attack_points, base.m)[rows]  # fmt: skip
                z_adv = random_attack(
                    base, z, sim.epsilon, lam.attack_points, generator, points=points,
                    region=lam.attack_region,
                )  # fmt: skip
                # one joint pass: BatchNorm normalises z and z_adv with the same batch statistics
                both = base(torch.cat([z, z_adv]))
                r, r_adv = both[: len(z)], both[len(z) :]
            else:
                r = base(z)
            parts = objective(
                r, y, aux, r_adv=r_adv, z=z, decoder=decoder, r_aug=r_aug, y_aug=y_aug
            )
            loss, logits = parts["loss"], parts["logits"]
            if ranks.active:
                loss = loss * ranks.share(batch)
                if lam.contr > 0:
                    y_all = y_train[idx_global].to(device)
                    r_all = ranks.gather_rows(r, batch)
                    parts["contr"] = contrastive_loss(r_all, y_all, lam.delta_contr)
                    loss = loss + lam.contr * parts["contr"]
            terms = {name: parts[name] for name in active_terms}
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    None,
                    f"encoder training diverged (loss is {float(loss.detach())} at epoch "
                    f"{epoch + 1}; terms "
                    + ", ".join(f"{k} {float(v.detach()):.3g}" for k, v in terms.items())
                    + "); lower --lr or the loss weights",
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ranks.average_gradients(params)
            optimizer.step()
            correct += int((logits.argmax(1) == y).sum())  # (one sync per step)
            bar.set_postfix(  # the latest batch's loss terms, labelled as such
                {f"batch_{k}": f"{float(v.detach()):.3f}" for k, v in terms.items()}, refresh=False
            )
            bar.update(1)
        if ranks.active:
            correct = int(ranks.sum(torch.tensor(correct)))
        train_acc = correct / n
        val_acc = _accuracy(base, aux, z_val, y_val, device=device)
        state["seconds"] = float(state["seconds"]) + time.perf_counter() - t0
        if val_acc > float(state["best_val"]) or config.keep == "last":
            state.update(best_val=val_acc, best_epoch=epoch, train_acc=train_acc)
            for name, module in modules.items():
                best[name].load_state_dict(module.state_dict())
        if progress:
            bar.write(
                f"epoch {epoch + 1}/{config.epochs}: train acc {train_acc:.3f}, val acc {val_acc:.3f}"
            )
        if not ranks.is_main:
            continue
        save_checkpoint(
            checkpoint,
            tool=TOOL,
            stage="train-encoder",
            key=key,
            step=epoch + 1,
            modules={**modules, **{f"best_{n}": m for n, m in best.items()}},
            optimizer=optimizer,
            state=state,
            data=data_identity,
        )
    bar.close()
    if not ranks.is_main:
        return out

    card = EncoderCard(
        tool=TOOL,
        **config.encoder_architecture().model_dump(),
        input_dim=sim.glow.latent_dim,
        task=config.task,
        num_classes=num_classes,
        loss=config.loss,
        training=EncoderTraining(
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=config.seed,
            best_epoch=int(state["best_epoch"]),
            keep=config.keep,
            train_accuracy=float(state["train_acc"]),
            val_accuracy=max(float(state["best_val"]), 0.0),
            n_train=n,
            seconds=float(state["seconds"]),
            attack_set=attack_set,
            augment=config.augment,
        ),
        data=data.provenance("train", n).with_content(train_latents.content_sha256(source)),
        parents={"similarity_spec": sim.sha256},
    )
    tensors: dict[str, np.ndarray] = {}
    for name, module in best.items():
        tensors.update(module_tensors(module, f"{name}."))
    write_artifact(out, card, tensors)
    checkpoint.unlink(missing_ok=True)
    if progress:
        print(
            f"wrote {out} ({config.keep} val acc "
            f"{card.training.val_accuracy:.3f} at epoch {card.training.best_epoch + 1})"
        )
    return out
