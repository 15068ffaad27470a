"""Hostile-input corpus: malformed or hostile artifacts, each rejected by every CLI.

Every case is generated here from the valid files of a tiny chain (no binary blobs). For each,
``inspect`` of all three role CLIs and the command that really consumes such a file must exit
with the documented status of its class, print one line naming the file and the problem, print
no traceback, write no output file, and finish quickly (headers are bounded before any tensor is
allocated). A hypothesis fuzz test then mutates bytes of valid files and finds no other outcome.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import DATA, invoke_bounded, write_raw
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import EXIT_CODES, LassiError, read_artifact
from lassi.spec.contract.io import parse_header

INVALID, INTEGRITY, USAGE = (
    EXIT_CODES["invalid_artifact"],
    EXIT_CODES["integrity"],
    EXIT_CODES["usage"],
)
CLIS = {"regulator": regulator, "producer": producer, "consumer": consumer}


# --------------------------------------------------------------------------- file surgery


def parts(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata dict, tensors) of a valid artifact."""
    artifact = read_artifact(path)
    return json.loads(artifact.meta.model_dump_json()), dict(artifact.tensors)


def rewrite(
    base: Path,
    out: Path,
    meta_edit: Callable[[dict], None] | None = None,
    tensor_edit: Callable[[dict], None] | None = None,
) -> None:
    """A copy of ``base`` with edited metadata/tensors and a *valid* checksum (a forger's file)."""
    meta, tensors = parts(base)
    if meta_edit:
        meta_edit(meta)
    if tensor_edit:
        tensor_edit(tensors)
    write_raw(out, json.dumps(meta), tensors)


def raw(base: Path) -> tuple[dict, bytes]:
    data = base.read_bytes()
    header, metadata, start = parse_header(data, base)
    header["__metadata__"] = metadata
    return header, data[start:]


def write_header(out: Path, header: dict | bytes, body: bytes, length: int | None = None) -> None:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    out.write_bytes(struct.pack("<Q", len(blob) if length is None else length) + blob + body)


def edit_header(base: Path, out: Path, edit: Callable[[dict], None]) -> None:
    header, body = raw(base)
    edit(header)
    write_header(out, header, body)


def first_two(header: dict) -> list[str]:
    return sorted(
        (k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0]
    )[:2]


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    name: str
    base: str  # which chain file the hostile file replaces: spec, encoder, test, classifier, glow, report
    build: Callable[[Path, Path], None]
    code: int
    message: str  # a fragment the one-line error must contain
    inspect_code: int | None = (
        None  # exit of `inspect` if it differs (contract-valid, model-invalid)
    )


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda meta: meta.__setitem__(key, value)


def _condition(given: str, groups: int, swap: bool = False) -> Callable[[dict], None]:
    """Claim the first attribute also has one vector per value of ``given`` (the tensor is
    untouched; with ``swap`` it does hold as many rows, but the names are out of order)."""

    def edit(meta: dict) -> None:
        attribute = meta["attributes"][0]
        own = attribute["vector_names"] or [attribute["name"]]
        extra = [f"{attribute['name']}_given_{given}_{g}" for g in range(groups)]
        if swap:  # as many names as rows: the last two own vectors renamed as conditional ones
            own, extra = own[:-2], extra[::-1]
        attribute.update(given=given, given_counts=[10] * groups, vector_names=own + extra)

    return edit


def _overlap(h: dict) -> None:
    a, b = first_two(h)
    h[b]["data_offsets"] = [
        h[a]["data_offsets"][0],
        h[a]["data_offsets"][0] + (h[b]["data_offsets"][1] - h[b]["data_offsets"][0]),
    ]


CASES = [
    Case("truncated", "test", lambda b, o: o.write_bytes(b.read_bytes()[:-100]), INVALID, "bytes"),
    Case("empty_file", "classifier", lambda b, o: o.write_bytes(b""), INVALID, "truncated"),
    Case(
        "header_beyond_file",
        "test",
        lambda b, o: o.write_bytes(struct.pack("<Q", b.stat().st_size) + b.read_bytes()[8:]),
        INVALID,
        "header claims",
    ),
    Case(
        "header_length_huge",
        "test",
        lambda b, o: o.write_bytes(struct.pack("<Q", 2**60) + b.read_bytes()[8:]),
        INVALID,
        "exceeds the limit",
    ),
    Case(
        "header_invalid_json",
        "classifier",
        lambda b, o: write_header(o, b'{"z": {"dtype": ', b""),
        INVALID,
        "not valid JSON",
    ),
    Case(
        "header_not_utf8",
        "classifier",
        lambda b, o: write_header(o, b'{"\xff\xfe": 1}', b""),
        INVALID,
        "UTF-8",
    ),
    Case(
        "header_not_object",
        "classifier",
        lambda b, o: write_header(o, b"[1, 2, 3]", b""),
        INVALID,
        "not a JSON object",
    ),
    Case(
        "no_metadata",
        "classifier",
        lambda b, o: edit_header(b, o, lambda h: h.pop("__metadata__")),
        INVALID,
        "no __metadata__",
    ),
    Case(
        "metadata_not_json",
        "classifier",
        lambda b, o: edit_header(b, o, lambda h: h["__metadata__"].__setitem__("lassi", "{oops")),
        INVALID,
        "not valid JSON",
    ),
    Case(
        "offsets_overlapping", "test", lambda b, o: edit_header(b, o, _overlap), INVALID, "overlaps"
    ),
    Case(
        "offsets_out_of_range",
        "test",
        lambda b, o: edit_header(
            b, o, lambda h: h[first_two(h)[0]].__setitem__("data_offsets", [0, 10**12])
        ),
        INVALID,
        "outside the data",
    ),
    Case(
        "dtype_unknown",
        "test",
        lambda b, o: edit_header(b, o, lambda h: h["r_cs"].__setitem__("dtype", "F8_E4M3")),
        INVALID,
        "dtype",
    ),
    Case(
        "dtype_not_declared",
        "test",
        lambda b, o: rewrite(
            b, o, tensor_edit=lambda t: t.__setitem__("r_cs", t["r_cs"].astype(np.float64))
        ),
        INVALID,
        "dtype F64, expected F32",
    ),
    Case(
        "shape_not_declared",
        "test",
        lambda b, o: rewrite(
            b,
            o,
            tensor_edit=lambda t: t.__setitem__("z", np.zeros((t["z"].shape[0], 3), np.float32)),
        ),
        INVALID,
        "'z' has shape",
    ),
    Case(
        "shape_terabytes",
        "test",
        lambda b, o: edit_header(b, o, lambda h: h["z"].__setitem__("shape", [10**7, 10**7])),
        INVALID,
        "needs",
    ),
    Case(
        "nan_in_weights",
        "classifier",
        lambda b, o: rewrite(
            b, o, tensor_edit=lambda t: t["classifier.weight"].__setitem__((0, 0), np.nan)
        ),
        INVALID,
        "NaN or Inf",
    ),
    Case(
        "inf_in_radii",
        "test",
        lambda b, o: rewrite(b, o, tensor_edit=lambda t: t["r_cs"].__setitem__(0, np.inf)),
        INVALID,
        "NaN or Inf",
    ),
    Case(
        "negative_r_cs",
        "test",
        lambda b, o: rewrite(b, o, tensor_edit=lambda t: t["r_cs"].__setitem__(0, -1.0)),
        INVALID,
        "negative radii",
    ),
    Case(
        "epsilon_zero",
        "spec",
        lambda b, o: rewrite(b, o, meta_edit=_set("epsilon", 0.0)),
        INVALID,
        "epsilon",
    ),
    Case(
        "epsilon_nan",
        "spec",
        lambda b, o: rewrite(b, o, meta_edit=_set("epsilon", float("nan"))),
        INVALID,
        "epsilon",
    ),
    Case(
        "attribute_vector_wrong_size",
        "spec",
        lambda b, o: rewrite(
            b,
            o,
            tensor_edit=lambda t: t.__setitem__(
                "attribute_vectors", t["attribute_vectors"][:, :-3].copy()
            ),
        ),
        INVALID,
        "attribute_vectors",
    ),
    Case(
        "conditional_vectors_missing",  # names claim 8 vectors per scale the tensor does not hold
        "spec",
        lambda b, o: rewrite(b, o, meta_edit=_condition("scale", 8)),
        INVALID,
        "attribute_vectors",
    ),
    Case(
        "conditioned_on_itself",
        "spec",
        lambda b, o: rewrite(b, o, meta_edit=_condition("orientation", 15)),
        INVALID,
        "conditioned on itself",
    ),
    Case(
        "conditional_names_out_of_order",
        "spec",
        lambda b, o: rewrite(b, o, meta_edit=_condition("scale", 2, swap=True)),
        INVALID,
        "vector_names must be its own vectors",
    ),
    Case(
        "unknown_kind",
        "classifier",
        lambda b, o: rewrite(b, o, meta_edit=_set("kind", "trojan")),
        INVALID,
        "unknown artifact kind",
    ),
    Case(
        "newer_schema_version",
        "encoder",
        lambda b, o: rewrite(b, o, meta_edit=_set("schema_version", 7)),
        INVALID,
        "newer than this tool supports",
    ),
    Case(
        "missing_tensor",
        "test",
        lambda b, o: rewrite(b, o, tensor_edit=lambda t: t.pop("z_cs")),
        INVALID,
        "'z_cs' is missing",
    ),
    Case(
        "unexpected_tensor",
        "test",
        lambda b, o: rewrite(
            b, o, tensor_edit=lambda t: t.__setitem__("payload", np.zeros(3, np.float32))
        ),
        INVALID,
        "unexpected tensor",
    ),
    Case(
        "extra_metadata_field",
        "classifier",
        lambda b, o: rewrite(b, o, meta_edit=_set("run_this", "rm -rf /")),
        INVALID,
        "run_this",
    ),
    Case(
        "labels_out_of_range",
        "test",
        lambda b, o: rewrite(b, o, tensor_edit=lambda t: t["labels.object_hue"].__setitem__(0, 99)),
        INVALID,
        "labels outside",
    ),
    Case(
        "repeated_ids",
        "test",
        lambda b, o: rewrite(b, o, tensor_edit=lambda t: t["ids"].__setitem__(1, t["ids"][0])),
        INVALID,
        "repeated sample ids",
    ),
    Case(
        "unknown_status",
        "test",
        lambda b, o: rewrite(b, o, tensor_edit=lambda t: t["status"].__setitem__(0, 9)),
        INVALID,
        "unknown status",
    ),
    Case(
        "flipped_byte",
        "classifier",
        lambda b, o: o.write_bytes(b.read_bytes()[:-1] + bytes([b.read_bytes()[-1] ^ 1])),
        INTEGRITY,
        "checksum",
    ),
    Case(
        "weights_wrong_shape_for_model",
        "classifier",
        lambda b, o: rewrite(
            b, o, tensor_edit=lambda t: t.__setitem__("classifier.bias", np.zeros(3, np.float32))
        ),
        INVALID,
        "the model needs",
        inspect_code=0,
    ),
    Case(
        "encoder_keep_last_names_another_epoch",
        "encoder",
        lambda b, o: rewrite(
            b, o, meta_edit=lambda m: m["training"].update(keep="last", epochs=5, best_epoch=1)
        ),
        INVALID,
        "keep 'last' names epoch 1",
    ),
    Case(
        "encoder_best_epoch_past_training",
        "encoder",
        lambda b, o: rewrite(
            b, o, meta_edit=lambda m: m["training"].update(epochs=2, best_epoch=2**40)
        ),
        INVALID,
        "is past the last epoch",
    ),
    Case(
        "parent_hash_mismatch",
        "encoder",
        lambda b, o: rewrite(
            b, o, meta_edit=lambda m: m["parents"].__setitem__("similarity_spec", "0" * 64)
        ),
        INTEGRITY,
        "was made from similarity_spec",
        inspect_code=0,
    ),
    Case(
        "bundle_k_differs_from_classifier",
        "test",
        lambda b, o: rewrite(
            b,
            o,
            meta_edit=_set("k", 8),
            tensor_edit=lambda t: [t.__setitem__(n, t[n][:, :8].copy()) for n in ("z", "z_cs")],
        ),
        INTEGRITY,
        "size 8",
        inspect_code=0,
    ),
    Case(
        "wrong_kind_for_command",
        "test",
        lambda b, o: o.write_bytes(b.with_name("classifier.safetensors").read_bytes()),
        INVALID,
        "expected representations",
        inspect_code=0,
    ),
]


def consuming_command(
    case: Case, chain: dict[str, Path], bad: Path, out: Path
) -> tuple[object, list[str]]:
    """The CLI command that reads a file of the case's kind in real use."""
    c = {k: str(v) for k, v in chain.items()}
    if case.base == "spec":
        return producer, [
            "encode",
            "--spec",
            str(bad),
            "--encoder",
            c["encoder"],
            *DATA,
            "--limit",
            "2",
            "--out",
            str(out),
        ]
    if case.base == "encoder":
        return producer, [
            "encode",
            "--spec",
            c["spec"],
            "--encoder",
            str(bad),
            *DATA,
            "--limit",
            "2",
            "--out",
            str(out),
        ]
    if case.base == "classifier":
        return consumer, [
            "verify",
            "--classifier",
            str(bad),
            "--bundle",
            c["test"],
            "--n",
            "10",
            "--out",
            str(out),
        ]
    return consumer, [
        "verify",
        "--classifier",
        c["classifier"],
        "--bundle",
        str(bad),
        "--n",
        "10",
        "--out",
        str(out),
    ]


def check_one_line(result, path: Path, code: int, message: str) -> None:
    __tracebackhide__ = True
    assert result.exit_code == code, result.output
    text = result.output.strip()
    errors = [line for line in text.splitlines() if not line.startswith("warning:")]
    assert "Traceback" not in text and len(errors) == 1, text
    assert path.name in text and message in text, text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_cli_rejects_the_hostile_file(
    case: Case, chain: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / f"{case.name}.safetensors"
    case.build(chain[case.base], bad)
    out = tmp_path / "out.safetensors"
    start = time.perf_counter()
    for name, cli in CLIS.items():
        result = invoke_bounded(cli, ["inspect", str(bad)])  # peak memory < 1 GiB
        if case.inspect_code == 0:
            assert result.exit_code == 0, f"{name}: {result.output}"
        else:
            check_one_line(result, bad, case.code, case.message)
    cli, args = consuming_command(case, chain, bad, out)
    check_one_line(invoke_bounded(cli, args), bad, case.code, case.message)
    assert not out.exists() and not list(tmp_path.glob(".out.safetensors*"))
    if case.base == "spec":  # the producer's second spec reader: train --attack-spec
        args = ["train", "--spec", str(chain["spec"]), "--attack-spec", str(bad), *DATA,
                "--task", "object_hue", "--quiet", "--out", str(out)]  # fmt: skip
        check_one_line(invoke_bounded(producer, args), bad, case.code, case.message)
        assert not out.exists() and not list(tmp_path.glob(".out.safetensors*"))
    assert time.perf_counter() - start < 30


def test_corpus_has_at_least_25_distinct_cases() -> None:
    assert len({c.name for c in CASES}) >= 25


# --------------------------------------------------------------------------- ONNX


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
    check_one_line(result, bad, INVALID, message)
    if (
        name != "inputs_do_not_match"
    ):  # a well-formed graph with other inputs is a fine file for inspect
        check_one_line(CliRunner().invoke(regulator, ["inspect", str(bad)]), bad, INVALID, message)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07" + b"\xff" * 64)
    check_one_line(
        CliRunner().invoke(consumer, ["inspect", str(garbage)]),
        garbage,
        INVALID,
        "not a readable ONNX",
    )


# --------------------------------------------------------------------------- fuzzing


@st.composite
def mutations(draw) -> tuple[str, list]:
    base = draw(st.sampled_from(["classifier", "test", "report", "encoder"]))
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "set", "truncate", "insert"]),
                st.integers(0, 2**31),
                st.integers(0, 255),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return base, ops


def mutate(data: bytes, ops: list) -> bytes:
    buf = bytearray(data)
    for op, where, value in ops:
        if not buf:
            break
        i = where % len(buf)
        if op == "flip":
            buf[i] ^= 1 << (value % 8)
        elif op == "set":
            buf[i] = value
        elif op == "truncate":
            del buf[i:]
        else:
            buf[i:i] = bytes([value])
    return bytes(buf)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=mutations())
def test_fuzzed_files_are_rejected_cleanly(
    case: tuple[str, list], chain: dict[str, Path], tmp_path: Path
) -> None:
    base, ops = case
    original = chain[base].read_bytes()
    data = mutate(original, ops)
    path = tmp_path / "fuzzed.safetensors"
    path.write_bytes(data)
    try:
        read_artifact(path)
    except LassiError as error:
        assert error.exit_code in (INVALID, INTEGRITY) and "\n" not in str(error)
    else:
        # a mutation that leaves a valid artifact must leave its content intact
        assert read_artifact(path).sha256 == read_artifact(path).sha256
    result = CliRunner().invoke(consumer, ["inspect", str(path)])
    assert result.exit_code in (0, INVALID, INTEGRITY), result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- multi-GB files

GIB = 1024**3
# The child's own peak is its VmHWM (the high-water mark of its address space after exec):
# ru_maxrss would also count the test session's pages resident when the child was forked.
_MEASURED = """
import sys
from lassi.{role}.cli import main
try:
    main(sys.argv[1:])
finally:
    peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    sys.stderr.write("\\npeak_kib=%s\\n" % peak)
"""


def run_measured(role: str, args: list[str], timeout: float = 240) -> tuple[int, list[str], int]:
    """A role CLI in a child process: (exit status, its stderr lines, its own peak RSS in KiB)."""
    import subprocess
    import sys

    code = _MEASURED.format(role=role)
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=timeout)  # fmt: skip
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("peak_kib="), run.stderr
    return run.returncode, lines[:-1], int(lines[-1].split("=")[1])


def _sparse(path: Path, head: bytes, size: int) -> Path:
    """``head`` followed by zeros up to ``size`` bytes, without writing the zeros (a hole)."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def _padded(base: Path, out: Path) -> Path:
    """A valid artifact with 2 GB of zeros appended (``truncate -s 2G``)."""
    return _sparse(out, base.read_bytes(), 2 * GIB)


def _declared_big(base: Path, out: Path) -> Path:
    """A plain bundle whose metadata and header both declare ~2 GB of samples (consistent
    shapes that tile the file exactly), the checksum left as it was: a forger's or a corrupted
    multi-GB file. The reader must refuse it without allocating the tensors."""
    header, _ = raw(base)
    meta = json.loads(header.pop("__metadata__")["lassi"])
    k = meta["k"]
    per_sample = 4 * k + 8 + 8 * len(meta["label_names"])
    n = 2 * GIB // per_sample
    meta["n_samples"], meta["file_names"] = n, None
    entries, offset = {}, 0
    for name in sorted(header, key=lambda t: header[t]["data_offsets"][0]):
        shape = [n, k] if name == "z" else [n]
        nbytes = n * (4 * k if name == "z" else 8)
        entries[name] = {"dtype": header[name]["dtype"], "shape": shape,
                         "data_offsets": [offset, offset + nbytes]}  # fmt: skip
        offset += nbytes
    checksum = json.loads(json.dumps(raw(base)[0]["__metadata__"]))["lassi.content_sha256"]
    entries["__metadata__"] = {"lassi": json.dumps(meta), "lassi.content_sha256": checksum}
    blob = json.dumps(entries).encode()
    return _sparse(out, struct.pack("<Q", len(blob)) + blob, 8 + len(blob) + offset)


@pytest.mark.parametrize(
    ("build", "code", "message"),
    [(_padded, INVALID, "data section has"), (_declared_big, INTEGRITY, "checksum")],
    ids=["valid_file_padded_to_2GB", "consistent_2GB_header_wrong_checksum"],
)
def test_a_2gb_sparse_artifact_is_refused_within_1gib(
    build, code: int, message: str, chain: dict[str, Path], tmp_path: Path
) -> None:
    """Memory stays bounded for every artifact, not only for small ones: the header is checked
    against the file's size before any tensor byte is read, a large data section is checked
    in chunks before anything is allocated, and the hash is streamed (also with --trusted-key)."""
    bad = build(chain["train"], tmp_path / "big.safetensors")
    assert bad.stat().st_size >= 2 * GIB - 1024 and bad.stat().st_blocks * 512 < 64 * 1024**2
    before = (bad.stat().st_size, bad.stat().st_mtime_ns)
    status, lines, peak = run_measured("consumer", ["inspect", str(bad)])
    assert status == code and len(lines) == 1 and bad.name in lines[0] and message in lines[0], lines
    assert peak < GIB // 1024, f"inspect: peak {peak} KiB"
    out = tmp_path / "c.safetensors"
    key = tmp_path / "k.key"
    assert CliRunner().invoke(consumer, ["keygen", "--out", str(key)]).exit_code == 0
    args = ["train", "--bundle", str(bad), "--task", "object_hue", "--sigma", "0.5", "--quiet",
            "--trusted-key", f"{key}.pub", "--out", str(out)]  # fmt: skip
    status, lines, peak = run_measured("consumer", args)  # unsigned: refused after streaming
    assert status == EXIT_CODES["signature"] and len(lines) == 1 and "not signed" in lines[0]
    assert peak < GIB // 1024, f"train --trusted-key: peak {peak} KiB"
    args.remove("--trusted-key"), args.remove(f"{key}.pub")
    status, lines, peak = run_measured("consumer", args)
    assert status == code and len(lines) == 1 and message in lines[0], lines
    assert peak < GIB // 1024, f"train: peak {peak} KiB"
    assert not out.exists() and (bad.stat().st_size, bad.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.safetensors", "k.key", "k.key.pub"]


def test_a_2gb_sparse_onnx_is_refused_within_1gib(chain: dict[str, Path], tmp_path: Path) -> None:
    """An ONNX graph is parsed from memory, so its framing (the top-level protobuf fields must
    end exactly at the end of the file) is checked from the field headers first: a valid graph
    padded to 2 GB is refused without reading the padding."""
    import onnx

    good = tmp_path / "model.onnx"
    onnx.save(_onnx_model([("z", 2)]), str(good))
    assert CliRunner().invoke(consumer, ["inspect", str(good)]).exit_code == 0
    bad = _sparse(tmp_path / "big.onnx", good.read_bytes(), 2 * GIB)
    for args in (["inspect", str(bad)], ["predict", "--onnx", str(bad), "--bundle", str(chain["test"])]):
        status, lines, peak = run_measured("consumer", args)
        assert status == INVALID and len(lines) == 1, lines
        assert bad.name in lines[0] and "not a readable ONNX model (no valid field at byte" in lines[0]
        assert peak < GIB // 1024, f"{args[0]}: peak {peak} KiB"
