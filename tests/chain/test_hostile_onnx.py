"""Hostile ONNX graphs: a custom operator, external data outside the model's folder, inputs
that are not the card's, bytes that are no graph, and a valid graph padded to 2 GB; each refused
in one line naming the file (the padded one within 1 GiB of memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from factories import one_line, run_role_child, sparse_file
from lassi.consumer.cli import main as consumer
from lassi.regulator.cli import main as regulator
from lassi.spec import EXIT_CODES

INVALID = EXIT_CODES["invalid_artifact"]
pytestmark = pytest.mark.slow  # every test reads the session's chain
GIB = 1024**3


def _onnx_model(inputs: list[tuple[str, int]], node_domain: str = "", external: str | None = None):
    import onnx
    from onnx import TensorProto, helper

    values = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch"] + [4] * (rank - 1))
        for n, rank in inputs
    ]
    weight = helper.make_tensor(
        "w", TensorProto.FLOAT, [4, 10], np.ones(40, np.float32).tobytes(), raw=True
    )
    if external is not None:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        entry = weight.external_data.add()
        entry.key, entry.value = "location", external
    op = "Backdoor" if node_domain else "MatMul"
    node = helper.make_node(op, [inputs[0][0], "w"], ["logits"], domain=node_domain)
    graph = helper.make_graph(
        [node],
        "g",
        values,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [weight],
    )
    opsets = [helper.make_opsetid("", 18)] + (
        [helper.make_opsetid(node_domain, 1)] if node_domain else []
    )
    return onnx.helper.make_model(graph, opset_imports=opsets)


ONNX_CASES = {
    "custom_op": (
        lambda: _onnx_model([("z", 2)], node_domain="com.evil"),
        "unknown domain 'com.evil'",
    ),
    "external_data_traversal": (
        lambda: _onnx_model([("z", 2)], external="../../../etc/passwd"),
        "outside the model's folder",
    ),
    "inputs_do_not_match": (
        lambda: _onnx_model([("x", 2)]),
        "declares inputs ['x'], expected ['z']",
    ),
}


@pytest.mark.parametrize("name", sorted(ONNX_CASES))
def test_hostile_onnx_is_rejected(name: str, chain: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    build, message = ONNX_CASES[name]
    bad = tmp_path / "model" / f"{name}.onnx"
    bad.parent.mkdir()
    onnx.save(build(), str(bad))
    result = CliRunner().invoke(
        consumer, ["predict", "--onnx", str(bad), "--bundle", str(chain["test"]), "--n", "10"]
    )
    one_line(result, INVALID, bad.name, message, warnings=True)
    if name != "inputs_do_not_match":  # a well-formed graph with other inputs is a fine file for inspect
        result = CliRunner().invoke(regulator, ["inspect", str(bad)])
        one_line(result, INVALID, bad.name, message, warnings=True)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07" + b"\xff" * 64)
    result = CliRunner().invoke(consumer, ["inspect", str(garbage)])
    one_line(result, INVALID, garbage.name, "not a readable ONNX", warnings=True)


def test_a_2gb_sparse_onnx_is_refused_within_1gib(chain: dict[str, Path], tmp_path: Path) -> None:
    """An ONNX graph is parsed from memory, so its framing (the top-level protobuf fields must
    end exactly at the end of the file) is checked from the field headers first: a valid graph
    padded to 2 GB is refused without reading the padding."""
    import onnx

    good = tmp_path / "model.onnx"
    onnx.save(_onnx_model([("z", 2)]), str(good))
    assert CliRunner().invoke(consumer, ["inspect", str(good)]).exit_code == 0
    bad = sparse_file(tmp_path / "big.onnx", good.read_bytes(), 2 * GIB)
    for args in (["inspect", str(bad)], ["predict", "--onnx", str(bad), "--bundle", str(chain["test"])]):
        status, lines, peak = run_role_child("consumer", args)
        assert status == INVALID and len(lines) == 1, lines
        assert bad.name in lines[0] and "not a readable ONNX model (no valid field at byte" in lines[0]
        assert peak < GIB // 1024, f"{args[0]}: peak {peak} KiB"
