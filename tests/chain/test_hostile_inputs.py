"""Hostile-input corpus: malformed or hostile artifacts, each rejected by every CLI.

Every case is generated here from the valid files of a tiny chain (no binary blobs). For each,
``inspect`` of all three role CLIs and the command that really consumes such a file must exit
with the documented status of its class, print one line naming the file and the problem, print
no traceback, write no output file, and finish quickly (headers are bounded before any tensor is
allocated). Hostile ONNX graphs, fuzzed bytes and multi-GB files: ``test_hostile_onnx``,
``test_fuzzed_files`` and ``test_huge_files``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from factories import DATA, edit_header, forge, invoke_bounded, one_line, write_header
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import EXIT_CODES

INVALID, INTEGRITY, USAGE = (
    EXIT_CODES["invalid_artifact"],
    EXIT_CODES["integrity"],
    EXIT_CODES["usage"],
)
CLIS = {"regulator": regulator, "producer": producer, "consumer": consumer}


def first_two(header: dict) -> list[str]:
    return sorted(
        (k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0]
    )[:2]


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
        lambda b, o: forge(
            b, o, tensor_edit=lambda t: t.__setitem__("r_cs", t["r_cs"].astype(np.float64))
        ),
        INVALID,
        "dtype F64, expected F32",
    ),
    Case(
        "shape_not_declared",
        "test",
        lambda b, o: forge(
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
        lambda b, o: forge(
            b, o, tensor_edit=lambda t: t["classifier.weight"].__setitem__((0, 0), np.nan)
        ),
        INVALID,
        "NaN or Inf",
    ),
    Case(
        "inf_in_radii",
        "test",
        lambda b, o: forge(b, o, tensor_edit=lambda t: t["r_cs"].__setitem__(0, np.inf)),
        INVALID,
        "NaN or Inf",
    ),
    Case(
        "negative_r_cs",
        "test",
        lambda b, o: forge(b, o, tensor_edit=lambda t: t["r_cs"].__setitem__(0, -1.0)),
        INVALID,
        "negative radii",
    ),
    Case(
        "epsilon_zero",
        "spec",
        lambda b, o: forge(b, o, meta_edit=_set("epsilon", 0.0)),
        INVALID,
        "epsilon",
    ),
    Case(
        "epsilon_nan",
        "spec",
        lambda b, o: forge(b, o, meta_edit=_set("epsilon", float("nan"))),
        INVALID,
        "epsilon",
    ),
    Case(
        "attribute_vector_wrong_size",
        "spec",
        lambda b, o: forge(
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
        lambda b, o: forge(b, o, meta_edit=_condition("scale", 8)),
        INVALID,
        "attribute_vectors",
    ),
    Case(
        "conditioned_on_itself",
        "spec",
        lambda b, o: forge(b, o, meta_edit=_condition("orientation", 15)),
        INVALID,
        "conditioned on itself",
    ),
    Case(
        "conditional_names_out_of_order",
        "spec",
        lambda b, o: forge(b, o, meta_edit=_condition("scale", 2, swap=True)),
        INVALID,
        "vector_names must be its own vectors",
    ),
    Case(
        "unknown_kind",
        "classifier",
        lambda b, o: forge(b, o, meta_edit=_set("kind", "trojan")),
        INVALID,
        "unknown artifact kind",
    ),
    Case(
        "newer_schema_version",
        "encoder",
        lambda b, o: forge(b, o, meta_edit=_set("schema_version", 7)),
        INVALID,
        "newer than this tool supports",
    ),
    Case(
        "missing_tensor",
        "test",
        lambda b, o: forge(b, o, tensor_edit=lambda t: t.pop("z_cs")),
        INVALID,
        "'z_cs' is missing",
    ),
    Case(
        "unexpected_tensor",
        "test",
        lambda b, o: forge(
            b, o, tensor_edit=lambda t: t.__setitem__("payload", np.zeros(3, np.float32))
        ),
        INVALID,
        "unexpected tensor",
    ),
    Case(
        "extra_metadata_field",
        "classifier",
        lambda b, o: forge(b, o, meta_edit=_set("run_this", "rm -rf /")),
        INVALID,
        "run_this",
    ),
    Case(
        "labels_out_of_range",
        "test",
        lambda b, o: forge(b, o, tensor_edit=lambda t: t["labels.object_hue"].__setitem__(0, 99)),
        INVALID,
        "labels outside",
    ),
    Case(
        "repeated_ids",
        "test",
        lambda b, o: forge(b, o, tensor_edit=lambda t: t["ids"].__setitem__(1, t["ids"][0])),
        INVALID,
        "repeated sample ids",
    ),
    Case(
        "unknown_status",
        "test",
        lambda b, o: forge(b, o, tensor_edit=lambda t: t["status"].__setitem__(0, 9)),
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
        lambda b, o: forge(
            b, o, tensor_edit=lambda t: t.__setitem__("classifier.bias", np.zeros(3, np.float32))
        ),
        INVALID,
        "the model needs",
        inspect_code=0,
    ),
    Case(
        "encoder_keep_last_names_another_epoch",
        "encoder",
        lambda b, o: forge(
            b, o, meta_edit=lambda m: m["training"].update(keep="last", epochs=5, best_epoch=1)
        ),
        INVALID,
        "keep 'last' names epoch 1",
    ),
    Case(
        "encoder_best_epoch_past_training",
        "encoder",
        lambda b, o: forge(
            b, o, meta_edit=lambda m: m["training"].update(epochs=2, best_epoch=2**40)
        ),
        INVALID,
        "is past the last epoch",
    ),
    Case(
        "parent_hash_mismatch",
        "encoder",
        lambda b, o: forge(
            b, o, meta_edit=lambda m: m["parents"].__setitem__("similarity_spec", "0" * 64)
        ),
        INTEGRITY,
        "was made from similarity_spec",
        inspect_code=0,
    ),
    Case(
        "bundle_k_differs_from_classifier",
        "test",
        lambda b, o: forge(
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
    """One line (besides warnings) naming the hostile file and the problem."""
    __tracebackhide__ = True
    one_line(result, code, path.name, message, warnings=True)


@pytest.mark.slow
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
