"""ONNX graphs: the checked export of lassi's own models, and validation of received ones.

Export (:func:`export_checked_onnx`): torch's dynamo exporter with a dynamic batch dimension and
the weights inside the file, the model card in ``metadata_props``, ``onnx.checker`` with full shape
inference, the validation below, and an onnxruntime-versus-torch comparison at another batch size,
all before the file is renamed into place. torch and onnxruntime are imported inside it, so the
validation needs neither.

Validation (:func:`load_checked_onnx`) of graphs handed over by another party, before onnxruntime
sees them. Checks, in order: the file is a regular file of bounded size, read once (the bytes an
onnxruntime session is then built from, ``onnx_bytes``); it parses as an ONNX model; it has no
external data (every export of this toolkit embeds its weights); every operator comes from a
standard domain (no custom ops); ``onnx.checker`` accepts it; the declared inputs and outputs
are those the caller expects (names and ranks). Provenance travels as JSON in the model's
``metadata_props["lassi"]``, read strictly and typed (``onnx_card``).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lassi.spec.contract.errors import InvalidArtifactError, printable, validation_message
from lassi.spec.contract.files import protobuf_framing_problem, read_file
from lassi.spec.contract.io import atomic_path

STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml"}
MAX_ONNX_BYTES = int(os.environ.get("LASSI_MAX_ONNX_BYTES", 4 * 1024**3))
METADATA_KEY = "lassi"
EXPORT_TOLERANCE = 1e-3
# torch's exporter logs a notice per missing optional package ("torchvision is not installed")
_EXPORTER_LOGGER = "torch.onnx._internal.exporter._registration"


def _rank_of(value_info: Any) -> int:
    return len(value_info.type.tensor_type.shape.dim)


def load_checked_onnx(
    path: str | Path,
    inputs: Mapping[str, int] | None = None,
    outputs: Mapping[str, int] | None = None,
) -> Any:
    """Load and validate an ONNX model; ``inputs``/``outputs`` map expected names to ranks."""
    import onnx

    path = Path(path)
    data = onnx_bytes(path)
    try:
        model = onnx.load_from_string(data)
    except Exception as error:
        raise InvalidArtifactError(
            path, f"not a readable ONNX model ({type(error).__name__})"
        ) from None
    folder = path.parent.resolve()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in tensor.external_data}
            location = entries.get("location", "")
            target = (folder / location).resolve()
            if Path(location).is_absolute() or folder not in target.parents:
                raise InvalidArtifactError(
                    path, f"external data of '{tensor.name}' points outside the model's folder"
                )
            raise InvalidArtifactError(
                path, f"has external data for '{tensor.name}'; weights must be embedded"
            )
    for node in model.graph.node:
        if node.domain not in STANDARD_DOMAINS:
            raise InvalidArtifactError(
                path, f"uses operator '{node.op_type}' from unknown domain '{node.domain}'"
            )
    for opset in model.opset_import:
        if opset.domain not in STANDARD_DOMAINS and opset.domain != "":
            raise InvalidArtifactError(path, f"imports unknown operator domain '{opset.domain}'")
    try:
        onnx.checker.check_model(model)
    except Exception as error:
        message = " ".join(str(error).split())[:200]
        raise InvalidArtifactError(path, f"onnx.checker rejects the model ({message})") from None
    for kind, expected, declared in (
        ("input", inputs, model.graph.input),
        ("output", outputs, model.graph.output),
    ):
        if expected is None:
            continue
        initializers = {t.name for t in model.graph.initializer}
        got = {v.name: _rank_of(v) for v in declared if v.name not in initializers}
        if set(got) != set(expected):
            raise InvalidArtifactError(
                path, f"declares {kind}s {sorted(got)}, expected {sorted(expected)}"
            )
        for name, rank in expected.items():
            if got[name] != rank:
                raise InvalidArtifactError(
                    path, f"{kind} '{name}' has rank {got[name]}, expected {rank}"
                )
    return model


def onnx_bytes(path: str | Path) -> bytes:
    """The model file's bytes, read once and bounded; build sessions from these, not the path.
    The file's top-level protobuf framing is checked first from the field headers alone
    (``lassi.spec.contract.files.protobuf_framing_problem``), so padding or a file of zeros is refused
    before the whole file is read into memory."""
    problem = protobuf_framing_problem(path, MAX_ONNX_BYTES, "an ONNX model")
    if problem is not None:
        raise InvalidArtifactError(path, f"not a readable ONNX model ({problem})")
    return read_file(path, MAX_ONNX_BYTES, "an ONNX model")


def onnx_card(model: Any, where: str | Path | None = None) -> dict[str, Any]:
    """The lassi provenance stored in the model's metadata, validated (empty if none).

    The card is parsed as strict JSON and typed by ``OnnxCard`` (kind, k, num_classes,
    sigma_cls, task, parents: each typed and bounded); a malformed card is an invalid file.
    """
    from pydantic import ValidationError

    from lassi.spec.contract.io import strict_json
    from lassi.spec.contract.models import OnnxCard

    where = where if where is not None else "ONNX model"
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            raw = strict_json(prop.value, where, "the ONNX lassi card")
            try:
                card = OnnxCard.model_validate_json(json.dumps(raw), strict=True)
            except ValidationError as error:
                raise InvalidArtifactError(
                    where, validation_message(error, "ONNX card field")
                ) from None
            return card.model_dump(exclude_none=True)
    return {}


def set_onnx_card(model: Any, card: Mapping[str, Any]) -> None:
    """Store lassi provenance JSON in the model's metadata (replacing an earlier one)."""
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(dict(card), sort_keys=True)


def describe_onnx(path: str | Path) -> str:
    """Human-readable summary of a validated ONNX file (``inspect``)."""
    model = load_checked_onnx(path)

    def shape(v: Any) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    lines = [f"file:    {printable(path)}", "kind:    onnx"]
    lines += [f"opset:   {printable(o.domain or 'ai.onnx')} {o.version}" for o in model.opset_import]
    lines += [f"input:   {printable(v.name)} {printable(shape(v))}" for v in model.graph.input]
    lines += [f"output:  {printable(v.name)} {printable(shape(v))}" for v in model.graph.output]
    lines.append(f"nodes:   {len(model.graph.node)}")
    card = onnx_card(model, path)
    if card:
        lines.append("metadata:")
        lines += ["  " + line for line in json.dumps(card, indent=2).splitlines()]
    return "\n".join(lines)


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence torch's exporter notices and warnings for the duration of one export."""
    logger = logging.getLogger(_EXPORTER_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_checked_onnx(
    module: Any,
    example: Sequence[Any],
    path: str | Path,
    *,
    inputs: Sequence[str],
    outputs: Sequence[str],
    card: Mapping[str, Any] | None = None,
    compare: Sequence[Any] | None = None,
    tolerance: float = EXPORT_TOLERANCE,
) -> float:
    """Export ``module`` (eval mode, CPU) atomically to ``path``; return max |ort − torch|.

    ``example``: the tensors to trace with; dimension 0 of every input is a dynamic batch.
    ``card``: provenance JSON for ``metadata_props["lassi"]``. ``compare``: the inputs (tensors or
    arrays) of the comparison, by default ``example`` with its first row repeated, so that the
    dynamic batch is exercised at another size. The export is refused (RuntimeError) when the
    largest difference exceeds ``tolerance`` × max(1, max |torch output|).
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    if compare is None:
        compare = [torch.cat([a, a[:1]]) for a in example]
    feeds = {
        name: np.ascontiguousarray(torch.as_tensor(value).numpy())
        for name, value in zip(inputs, compare, strict=True)
    }
    with torch.no_grad():
        wanted = module(*(torch.from_numpy(v) for v in feeds.values()))
    wanted = wanted if isinstance(wanted, tuple | list) else (wanted,)
    want = [w.numpy() for w in wanted]
    with atomic_path(path) as tmp:
        with _quiet_exporter(), torch.no_grad():
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                module,
                tuple(example),
                str(tmp),
                dynamo=True,
                external_data=False,
                verbose=False,
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_shapes=tuple({0: batch} for _ in inputs),
            )
        if card is not None:
            graph = onnx.load(str(tmp))
            set_onnx_card(graph, card)
            onnx.save(graph, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
        load_checked_onnx(
            tmp,
            inputs={name: v.ndim for name, v in feeds.items()},
            outputs={name: w.ndim for name, w in zip(outputs, want, strict=True)},
        )
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(list(outputs), feeds)
        error = max(float(np.abs(g - w).max(initial=0.0)) for g, w in zip(got, want, strict=True))
        scale = max([1.0] + [float(np.abs(w).max(initial=0.0)) for w in want])
        if not error <= tolerance * scale:
            raise RuntimeError(f"{Path(path).name}: onnxruntime differs from torch by {error:.2e}")
    return error
