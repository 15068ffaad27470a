"""Export of the consumer's classifier as a self-describing ONNX file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lassi.consumer.classifier import export_classifier_onnx
from lassi.consumer.randomized_smoothing import ort_session
from lassi.consumer.verification import load_classifier
from lassi.spec import atomic_path
from lassi.spec.onnx_check import load_checked_onnx, set_onnx_card


def export_classifier(classifier_path: Path, out: Path) -> float:
    """Write C_L as ONNX with its card (k, classes, σ_cls, parents); return max |ort − torch|."""
    import onnx

    model, artifact = load_classifier(classifier_path)
    card = artifact.meta
    with atomic_path(out) as tmp:
        export_classifier_onnx(model, tmp, card.k)
        graph = onnx.load(str(tmp))
        set_onnx_card(
            graph,
            {
                "kind": "classifier_onnx",
                "k": card.k,
                "num_classes": card.num_classes,
                "sigma_cls": card.sigma_cls,
                "task": card.task,
                "parents": {**card.parents, "classifier": artifact.sha256},
            },
        )
        onnx.save(graph, str(tmp))
        load_checked_onnx(tmp, inputs={"z": 2}, outputs={"logits": 2})
        session, _ = ort_session(tmp)
        z = np.random.default_rng(0).normal(size=(7, card.k)).astype(np.float32)
        got = session.run(None, {"z": z})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(z)).numpy()
    return float(np.abs(got - want).max())
