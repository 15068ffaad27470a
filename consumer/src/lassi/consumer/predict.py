"""Smoothed prediction from the exported ONNX classifier with onnxruntime alone (no torch).

The consumer (or anyone it hands the ONNX file to) runs PREDICT of Cohen et al. around each
sample's z_CS (or z, for plain bundles and abstained centers) without lassi's training code.

It draws its own noise: numpy's generator on each sample's (seed, sample id) stream, where
``verify`` draws torch's (:mod:`lassi.consumer.randomized_smoothing`), and n draws where
``verify`` predicts on its n0 selection draws. So for the same sample the two can differ (most
often where PREDICT's test is close, one abstaining and the other not); each is a valid PREDICT,
and the auditable prediction, the one the certificate speaks for, is the one in verify's report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from lassi.consumer.onnx_runtime import onnx_logits_fn, ort_session
from lassi.consumer.randomized_smoothing import ABSTAIN, SmoothNumpy
from lassi.spec import (
    CenterStatus,
    IntegrityError,
    InvalidArtifactError,
    RepresentationBundle,
    read_artifact,
)
from lassi.spec.contract.onnx_check import load_checked_onnx, onnx_card


@contextlib.contextmanager
def onnx_errors(onnx_path: Path) -> Iterator[None]:
    """onnxruntime's own failures (wrong input shape or type, a kernel error) as exit 3 naming
    the ONNX file, in one line."""
    try:
        yield
    except Exception as error:
        if type(error).__module__.startswith("onnxruntime"):
            message = " ".join(str(error).split())[:160]
            raise InvalidArtifactError(onnx_path, f"onnxruntime fails on it ({message})") from None
        raise


def checked_logits(
    logits_fn: Callable[[np.ndarray], np.ndarray], num_classes: int, onnx_path: Path
) -> Callable[[np.ndarray], np.ndarray]:
    """``logits_fn`` whose output must be finite float logits [B, num_classes]."""

    def run(batch: np.ndarray) -> np.ndarray:
        with onnx_errors(onnx_path):
            out = np.asarray(logits_fn(batch))
        if out.shape != (len(batch), num_classes) or out.dtype.kind != "f":
            raise InvalidArtifactError(
                onnx_path,
                f"returns {out.dtype} logits of shape {list(out.shape)}, "
                f"expected float [{len(batch)}, {num_classes}]",
            )
        return out

    return run


def predict_bundle(
    onnx_path: Path,
    bundle_path: Path,
    n: int = 100_000,
    alpha: float = 0.001,
    seed: int = 0,
    prefer_gpu: bool = False,
    limit: int | None = None,
    threads: int | None = None,
) -> tuple[list[dict], str]:
    """Smoothed predictions for the samples of a bundle and the execution provider used
    (``threads``: onnxruntime's CPU threads, default all cores)."""
    model = load_checked_onnx(onnx_path, inputs={"z": 2}, outputs={"logits": 2})
    card = onnx_card(model, onnx_path)
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
    with onnx_errors(onnx_path):
        session, provider = ort_session(model, prefer_gpu=prefer_gpu, threads=threads)
    declared = card.get("num_classes") or session.get_outputs()[0].shape[1]
    if not isinstance(declared, int) or declared < 2:
        raise InvalidArtifactError(onnx_path, f"declares no class count (output shape {declared!r})")
    num_classes = int(declared)
    sigma = float(card.get("sigma_cls", 0.0))
    if not sigma > 0:
        raise IntegrityError(
            onnx_path, "records no sigma_cls (export it with lassi-consumer export-onnx)"
        )
    logits = checked_logits(onnx_logits_fn(session), num_classes, onnx_path)
    smooth = SmoothNumpy(logits, num_classes, sigma)
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

