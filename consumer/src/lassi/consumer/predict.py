"""Smoothed prediction from the exported ONNX classifier with onnxruntime alone (no torch).

The consumer (or anyone it hands the ONNX file to) runs PREDICT of Cohen et al. around each
sample's z_CS (or z, for plain bundles and abstained centers) without lassi's training code.
"""

from __future__ import annotations

from pathlib import Path

from lassi.consumer.randomized_smoothing import ABSTAIN, SmoothNumpy, onnx_logits_fn, ort_session
from lassi.spec import CenterStatus, IntegrityError, RepresentationBundle, read_artifact
from lassi.spec.onnx_check import load_checked_onnx, onnx_card


def predict_bundle(
    onnx_path: Path,
    bundle_path: Path,
    n: int = 100_000,
    alpha: float = 0.001,
    seed: int = 0,
    prefer_gpu: bool = False,
    limit: int | None = None,
) -> tuple[list[dict], str]:
    """Smoothed predictions for the samples of a bundle and the execution provider used."""
    model = load_checked_onnx(onnx_path, inputs={"z": 2}, outputs={"logits": 2})
    card = onnx_card(model)
    bundle = read_artifact(bundle_path, expect=RepresentationBundle)
    if card.get("k") not in (None, bundle.meta.k):
        raise IntegrityError(
            bundle_path,
            f"has representations of size {bundle.meta.k}, the classifier takes {card['k']}",
        )
    encoder = card.get("parents", {}).get("encoder")
    if encoder is not None and bundle.meta.parents.get("encoder") not in (None, encoder):
        raise IntegrityError(
            bundle_path, "was made with another encoder than the one the classifier was trained on"
        )
    session, provider = ort_session(onnx_path, prefer_gpu=prefer_gpu)
    num_classes = int(card.get("num_classes") or session.get_outputs()[0].shape[1])
    sigma = float(card.get("sigma_cls", 0.0))
    if not sigma > 0:
        raise IntegrityError(
            onnx_path, "records no sigma_cls (export it with lassi-consumer export-onnx)"
        )
    smooth = SmoothNumpy(onnx_logits_fn(session), num_classes, sigma)
    t = bundle.tensors
    count = bundle.meta.n_samples if limit is None else min(limit, bundle.meta.n_samples)
    files = bundle.meta.file_names
    rows = []
    for i in range(count):
        use_center = bundle.meta.certified and t["status"][i] == CenterStatus.CERTIFIED
        z = t["z_cs"][i] if use_center else t["z"][i]
        prediction = smooth.predict(z, n, alpha, seed, int(t["ids"][i]))
        rows.append(
            {
                "id": int(t["ids"][i]),
                **({"file": files[i]} if files is not None else {}),
                "prediction": None if prediction == ABSTAIN else prediction,
                "input": "z_cs" if use_center else "z",
            }
        )
    return rows, provider

