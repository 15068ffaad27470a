"""Running an ONNX classifier in onnxruntime: a session over checked bytes and a logits callable.

:class:`lassi.consumer.randomized_smoothing.SmoothNumpy` smooths any numpy logits callable; these two
helpers make one from an ONNX classifier. They import no torch, so ``lassi-consumer predict`` runs
where torch is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def ort_session(
    model: str | Path | bytes | Any, prefer_gpu: bool = False, threads: int | None = None
) -> tuple[Any, str]:
    """An onnxruntime session for ``model`` and the execution provider it actually uses.

    ``model`` is the checked ``onnx.ModelProto`` (preferred: the session then runs exactly the
    bytes that were validated, never a second read of a file that may have changed), its
    serialised bytes, or a path (read once, bounded).

    CUDA is requested only when ``prefer_gpu`` and the installed onnxruntime offers it; the provider
    reported is ``session.get_providers()[0]`` (what runs), not what is merely available. Idle
    intra-op threads do not spin: smoothing runs large batches, and spinning threads starve the
    noise generation running beside them. ``threads``: onnxruntime's intra-op threads (default:
    its own choice, all cores), checked by ``lassi.spec.runtime.cli.check_threads``.
    """
    import onnxruntime as ort

    from lassi.spec.runtime.cli import check_threads

    providers = ["CPUExecutionProvider"]
    if prefer_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if check_threads(threads):
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if isinstance(model, (str, Path)):
        from lassi.spec.contract.onnx_check import onnx_bytes

        data = onnx_bytes(model)
    elif isinstance(model, bytes):
        data = model
    else:
        data = model.SerializeToString()
    session = ort.InferenceSession(data, options, providers=providers)
    return session, session.get_providers()[0]


def onnx_logits_fn(session: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A logits callable [B, k] → [B, C] running the single-input graph of an onnxruntime session."""
    input_name = session.get_inputs()[0].name

    def logits_fn(batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return session.run(None, {input_name: batch})[0]

    return logits_fn
