"""The sibling probe: per-image accuracy on the real orientation siblings of the *unsmoothed*
pipeline C_L(E_L(E_G(x_j))) (no noise), for an encoder trained with a Table 2 protocol (the
authors' 49 pair vectors or the spec ``--condition-on scale``, fully correlated split) and one
knob changed. It backs the results page's control (pairs against ``--condition-on scale``).

Why a probe: in the full Table 2 runs every sibling the unsmoothed pipeline misclassifies is also
misclassified (or abstained on) by the full certification, and the certification adds few errors
of its own; the certified-but-unfair samples are made of those per-image errors, so one encoder
training ranks encoder variants before a full ground-truth run is spent on them.

``attack_scale`` s trains against the random attack on the s·ε ball (the vectors scaled by s
during training only; the encoder is then evaluated on the regulator's spec as is). A producer
may train on any radius; the certificate is still for ε. Without an attack scale the probe
reuses a Table 2 encoder of the same configuration (and Table 2 reuses the probe's).

Writes <out>/sibling-probe/<name>/ (encoder, train bundle, consumer classifier, result.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lassi.consumer.classifier import load_classifier
from lassi.experiments.ground_truth import probe_figures, siblings_of
from lassi.experiments.workspace import Workspace, data_config
from lassi.producer.base_function import load_encoder
from lassi.producer.encode import select_ids
from lassi.producer.training import train_encoder
from lassi.regulator.data_config import make_source
from lassi.regulator.shapes3d import Shapes3D
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import EncoderCard, UsageError, read_artifact
from lassi.spec.contract.io import atomic_write_bytes


def sibling_latents(
    sim: SimilaritySet, ids: np.ndarray, renderer=None
) -> tuple[np.ndarray, torch.Tensor]:
    """The factors [N, 15, 6] of the 15 orientation siblings of each sample and their Glow
    latents E_G(x_j) [N · 15, D] (``renderer``: the data source's; default the built-in one)."""
    factors = np.stack([siblings_of(int(i))[0] for i in ids])
    renderer = renderer or Shapes3D(sim.glow.image_size)
    with torch.no_grad():
        z_g = sim.encode_images(renderer.render(factors.reshape(-1, 6)))
    return factors, z_g


def sibling_accuracy(
    sim: SimilaritySet, encoder: Path, classifier: Path, ids: np.ndarray, renderer=None
) -> dict:
    """Unsmoothed predictions on the 15 siblings of each test sample: accuracy (overall and per
    object scale), ground-truth unfair (the 15 predictions differ), the wrong siblings and their
    hue confusions, and the error on hue-orientation pairs the split never shows."""
    base, _, _ = load_encoder(encoder, sim)
    model, _ = load_classifier(classifier)
    factors, z_g = sibling_latents(sim, ids, renderer)
    with torch.no_grad():
        pred = model(base(z_g)).argmax(1).numpy().reshape(factors.shape[:2])
    return probe_figures(pred, factors)


def trained_scale(mark: Path) -> float:
    """The attack scale a probe folder's encoder was trained with: its mark's, 1 without one."""
    if not mark.exists():
        return 1.0
    try:
        scale = json.loads(mark.read_text())["attack_scale"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(mark, f"is not a probe's training mark ({error}); remove its folder") from error
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        raise UsageError(mark, "records no numeric attack_scale; remove its folder")
    return float(scale)


def probe_name(ws: Workspace, args: argparse.Namespace) -> str:
    """The probe's folder name: its protocol, seed and every knob."""
    e = ws.settings.encoder
    return args.name or (
        ("" if args.protocol == "authors" else f"{args.protocol}-")
        + f"seed{args.seed}-epochs{args.epochs}-scale{args.attack_scale}-adv{args.adv}-contr{args.contr}"
        + (f"-n{args.producer_train}" if args.producer_train else "")
        + ("" if (list(args.hidden), args.k) == (list(e.hidden), e.k)
           else f"-mlp{'x'.join(map(str, args.hidden))}-k{args.k}")
    )  # fmt: skip


def sibling_probe(ws: Workspace, args: argparse.Namespace) -> dict:
    """Train (or reuse) the probe's encoder, train bundle and consumer head; the probe's
    figures, also written to its folder's result.json."""
    protocol = ws.settings.protocols[args.protocol]
    data = data_config(args.glow, protocol.correlate, ws.data_root)
    if args.producer_train is not None:
        data = data.model_copy(update={"n_train": args.producer_train})
    spec = ws.protocol_spec(args.glow, args.protocol)
    name = probe_name(ws, args)
    folder = ws.out / "sibling-probe" / name
    folder.mkdir(parents=True, exist_ok=True)
    sim = SimilaritySet.load(spec)
    encoder = folder / "encoder.safetensors"
    plain = args.attack_scale == 1.0  # Table 2's own configuration
    loss = ws.settings.methods["adversarial+contrastive"].loss.model_copy(
        update={"adv": args.adv, "contr": args.contr}
    )
    config = ws.encoder_config(data, loss, args.seed, args.epochs, ws.settings.sibling_probe.keep)
    config = config.model_copy(update={"hidden": list(args.hidden), "k": args.k})
    mark = folder / ws.VARIANT_MARK
    wanted = ws.encoder_wanted(config, spec)
    scale = ("attack scale", trained_scale(mark), args.attack_scale)
    if not ws.reused(encoder, EncoderCard, lambda a: [*wanted(a.meta), scale]):
        # a variant's card looks like Table 2's: its mark keeps every run from reusing it
        if plain:
            mark.unlink(missing_ok=True)
        else:
            atomic_write_bytes(mark, json.dumps({"attack_scale": args.attack_scale, "variant": None}).encode())
        if not (plain and ws.trained_twin(config, spec, encoder)):
            original = sim.vectors.clone()
            sim.vectors.mul_(args.attack_scale)  # the attack's radius during training only
            try:
                train_encoder(config, sim, encoder, cache_dir=ws.cache, device=ws.device)
            finally:
                sim.vectors.copy_(original)
    train = ws.bundle_run(spec, encoder, data, "train", folder / "train.safetensors", progress=False)
    classifier = ws.classifier_run(
        train, ws.settings.encoder.task, ws.settings.sibling_probe.sigma_cls,
        folder / "classifier.safetensors", args.seed, epochs=None,
    )  # fmt: skip
    ids = select_ids(make_source(data), "test", args.test, 1)  # the samples Table 2 certifies
    result = {"name": name, "args": {k: str(v) for k, v in vars(args).items() if k != "func"}}
    result |= sibling_accuracy(sim, encoder, classifier, ids, make_source(data).renderer)
    training = read_artifact(encoder).meta.training
    result |= {"encoder_seconds": training.seconds, "val_accuracy": training.val_accuracy}
    atomic_write_bytes(folder / "result.json", json.dumps(result, indent=1).encode())
    return result
