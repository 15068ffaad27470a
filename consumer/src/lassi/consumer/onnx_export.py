"""Export of the consumer's classifier as a self-describing ONNX file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lassi.consumer.classifier import load_classifier
from lassi.spec.contract.onnx_check import export_checked_onnx


def export_classifier(classifier_path: Path, out: Path) -> float:
    """Write C_L as ONNX with its card (k, classes, σ_cls, parents); return max |ort − torch|."""
    model, artifact = load_classifier(classifier_path)
    card = artifact.meta
    z = np.random.default_rng(0).normal(size=(7, card.k)).astype(np.float32)
    return export_checked_onnx(
        model,
        (torch.zeros(2, card.k, dtype=torch.float32),),
        out,
        inputs=["z"],
        outputs=["logits"],
        card={
            "kind": "classifier_onnx",
            "k": card.k,
            "num_classes": card.num_classes,
            "sigma_cls": card.sigma_cls,
            "task": card.task,
            "parents": {**card.parents, "classifier": artifact.sha256},
        },
        compare=(z,),
    )
