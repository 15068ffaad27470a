"""A dishonest producer and hostile files: one generator per class of attack.

Classes: races (a named pipe, a file swapped between reads), semantic lies with a recomputed
checksum (epsilon, attributes, centers, summaries), resource bombs (devices, huge counts),
path tricks (outputs onto inputs, onto devices, over keys), terminal escapes, lax JSON.
Every CLI case ends with its documented exit status, one line naming the file, no traceback,
no output or temporary file left, and every input byte-identical afterwards. The corpus holds
``len(CLI_CASES)`` CLI cases (63, asserted below) plus the API-level and hypothesis tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from factories import invoke_bounded, run_child, write_raw
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import EXIT_CODES, SCHEMA_VERSION, LassiError, read_artifact
from lassi.spec.contract.binding import check_binding, read_spec_header
from lassi.spec.contract.files import pinned_reads, read_file
from lassi.spec.contract.models import (
    CertificateScope,
    CertificationPolicy,
    Coverage,
    RepresentationBundle,
    SimilaritySpec,
    VerificationReport,
)
from lassi.spec.runtime.center_smoothing import CenterSmoothing

USAGE, INVALID, INTEGRITY, SIGNATURE = (EXIT_CODES[k] for k in ("usage", "invalid_artifact", "integrity", "signature"))


def parts(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    artifact = read_artifact(path)
    return json.loads(artifact.meta.model_dump_json()), dict(artifact.tensors)


def forge(base: Path, out: Path, meta_edit=None, tensor_edit=None, meta_text=None) -> Path:
    """A producer's lie: edited metadata/tensors under a correctly recomputed checksum."""
    meta, tensors = parts(base)
    if meta_edit:
        meta_edit(meta)
    if tensor_edit:
        tensor_edit(tensors)
    write_raw(out, meta_text(meta) if meta_text else json.dumps(meta), tensors)
    return out


def snapshot(paths: list[Path]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths if p.is_file()}


def check_clean(result, code: int, name: str, message: str) -> None:
    __tracebackhide__ = True
    assert result.exit_code == code, result.output
    # verify may warn (one "warning:" line) before a run starts; the error is the one other line
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("warning:")]
    text = "\n".join(lines)
    assert "Traceback" not in result.output and len(lines) == 1, result.output
    assert name in text and message in text, text


# --------------------------------------------------------------------------- the CLI corpus


@dataclass(frozen=True)
class CliCase:
    name: str
    # (chain, tmp) -> (cli, args, name the message must contain, inputs that must stay intact)
    build: Callable[[dict[str, Path], Path], tuple[object, list[str], str, list[Path]]]
    code: int
    message: str


def _fifo(chain, tmp):
    fifo = tmp / "pipe.safetensors"
    os.mkfifo(fifo)
    return consumer, ["inspect", str(fifo)], fifo.name, []


def _fifo_signed(chain, tmp):
    fifo = tmp / "pipe.safetensors"
    os.mkfifo(fifo)
    key = tmp / "k.key"
    assert CliRunner().invoke(producer, ["keygen", "--out", str(key)]).exit_code == 0
    return consumer, ["verify-signature", str(fifo), "--trusted-key", f"{key}.pub"], fifo.name, []


def _device(chain, tmp):
    return regulator, ["inspect", "/dev/zero"], "/dev/zero", []


def _folder(chain, tmp):
    return producer, ["inspect", str(tmp)], tmp.name, []


def _certificate_lie(key: str, value: object, audit: bool = False):
    """A bundle whose certificate records another ``key`` than the spec's (epsilon 0.001: a
    smaller ball; m = 1: t-noise in fewer directions than the spec's 49 vectors), given to
    ``verify --spec`` or to the audit."""

    def build(chain, tmp):
        bad = forge(chain["test"], tmp / f"{key}.safetensors", lambda m: m["certificate"].__setitem__(key, value))
        if audit:
            args = ["audit", "--spec", str(chain["spec"]), "--base-function", str(tmp / "unused.onnx"),
                    "--bundle", str(bad)]
            return regulator, args, bad.name, [bad, chain["spec"]]
        args = ["verify", "--spec", str(chain["spec"]), "--classifier", str(chain["classifier"]),
                "--bundle", str(bad), "--n", "10", "--out", str(tmp / "r.safetensors")]
        return consumer, args, bad.name, [bad, chain["spec"], chain["classifier"]]

    return build


def _attribute_lie(chain, tmp):
    bad = forge(chain["test"], tmp / "attr.safetensors", lambda m: m.__setitem__("attributes", ["shape"]))
    args = ["verify", "--spec", str(chain["spec"]), "--classifier", str(chain["classifier"]),
            "--bundle", str(bad), "--n", "10", "--out", str(tmp / "r.safetensors")]
    return consumer, args, bad.name, [bad]


def _delta_unreplayable(chain, tmp):
    bad = forge(chain["test"], tmp / "delta.safetensors", lambda m: m["certificate"].__setitem__("delta", 0.6))
    return consumer, ["inspect", str(bad)], bad.name, [bad]


def _alpha_sum(chain, tmp):
    def edit(m):
        m["certificate"].update(alpha1=0.6, alpha2=0.5)

    bad = forge(chain["test"], tmp / "alpha.safetensors", edit)
    return consumer, ["inspect", str(bad)], bad.name, [bad]


def _nan_literal(chain, tmp):
    bad = forge(chain["test"], tmp / "nan.safetensors",
                meta_text=lambda m: json.dumps(m).replace('"beta": 2.0', '"beta": NaN'))
    return consumer, ["inspect", str(bad)], bad.name, [bad]


def _duplicate_key(chain, tmp):
    bad = forge(chain["test"], tmp / "dup.safetensors",
                meta_text=lambda m: json.dumps(m)[:-1] + ', "certified": false}')
    return consumer, ["inspect", str(bad)], bad.name, [bad]


def _yes_is_not_true(chain, tmp):
    bad = forge(chain["test"], tmp / "yes.safetensors", lambda m: m.__setitem__("certified", "yes"))
    return consumer, ["inspect", str(bad)], bad.name, [bad]


def _deep_nesting(chain, tmp):
    bad = forge(chain["classifier"], tmp / "deep.safetensors",
                meta_text=lambda m: json.dumps(m)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return consumer, ["inspect", str(bad)], bad.name, [bad]


def _out_is_input(chain, tmp):
    bundle = tmp / "bundle.safetensors"
    bundle.write_bytes(chain["test"].read_bytes())
    args = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(bundle), "--n", "10",
            "--out", str(bundle)]
    return consumer, args, bundle.name, [bundle]


def _out_collides_with_side_file(chain, tmp):
    out = tmp / "report.json"
    args = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]),
            "--n", "10", "--out", str(out)]
    return consumer, args, out.name, [chain["test"]]


def _out_is_fifo(chain, tmp):
    out = tmp / "out.safetensors"
    os.mkfifo(out)
    args = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]),
            "--n", "10", "--out", str(out)]
    return consumer, args, out.name, [chain["test"]]


def _out_name_too_long(chain, tmp):
    out = tmp / ("r" * 250 + ".safetensors")
    args = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]),
            "--n", "10", "--out", str(out)]
    return consumer, args, "rrrr", [chain["test"]]


def _keygen_over_public_key(chain, tmp):
    public = tmp / "k.key.pub"
    public.write_text("someone's public key\n")
    return producer, ["keygen", "--out", str(tmp / "k.key")], public.name, [public]


def _define_bad_policy(chain, tmp):
    args = ["define", "--glow", str(chain["glow"]), "--attribute", "orientation",
            "--sigma-enc-min", "2", "--sigma-enc-max", "1", "--out", str(tmp / "s.safetensors")]
    return regulator, args, "policy", [chain["glow"]]


def _define_out_is_glow(chain, tmp):
    glow = tmp / "glow.safetensors"
    glow.write_bytes(chain["glow"].read_bytes())
    args = ["define", "--glow", str(glow), "--attribute", "orientation", "--out", str(glow)]
    return regulator, args, glow.name, [glow]


def _class_count_bomb(chain, tmp):
    bad = forge(chain["encoder"], tmp / "classes.safetensors", lambda m: m.__setitem__("num_classes", 10**9))
    return producer, ["inspect", str(bad)], bad.name, [bad]


def _hidden_width_bomb(chain, tmp):
    bad = forge(chain["classifier"], tmp / "hidden.safetensors", lambda m: m.__setitem__("hidden", 10**9))
    return consumer, ["inspect", str(bad)], bad.name, [bad]


# --- semantic lies about architectures (a recomputed checksum), refused before any model is built


def _glow_bomb_spec(chain, tmp):
    bad = forge(chain["spec"], tmp / "bomb.safetensors", lambda m: m["flow"].update(n_steps=64, hidden=2048))
    args = ["export-onnx", "--spec", str(bad), "--encoder", str(chain["encoder"]), "--out-dir", str(tmp / "o")]
    return producer, args, bad.name, [bad, chain["encoder"]]


def _glow_width_lie(chain, tmp):
    bad = forge(chain["spec"], tmp / "width.safetensors", lambda m: m["flow"].update(hidden=17))
    args = ["encode", "--spec", str(bad), "--encoder", str(chain["encoder"]), "--out", str(tmp / "b.safetensors")]
    return producer, args, bad.name, [bad]


def _glow_artifact_depth_lie(chain, tmp):
    bad = forge(chain["glow"], tmp / "depth.safetensors", lambda m: m["flow"].update(n_steps=3))
    args = ["define", "--glow", str(bad), "--attribute", "orientation", "--out", str(tmp / "s.safetensors")]
    return regulator, args, bad.name, [bad]


def _encoder_hidden_lie(chain, tmp):
    bad = forge(chain["encoder"], tmp / "enc.safetensors", lambda m: m.__setitem__("hidden", [64, 33]))
    args = ["encode", "--spec", str(chain["spec"]), "--encoder", str(bad), "--out", str(tmp / "b.safetensors")]
    return producer, args, bad.name, [bad]


def _encoder_input_lie(chain, tmp):
    bad = forge(chain["encoder"], tmp / "enc.safetensors", lambda m: m.__setitem__("input_dim", 3 * 1024 * 1024))
    return producer, ["inspect", str(bad)], bad.name, [bad]


def _classifier_k_lie(chain, tmp):
    bad = forge(chain["classifier"], tmp / "cls.safetensors", lambda m: m.__setitem__("k", 17))
    args = ["verify", "--classifier", str(bad), "--bundle", str(chain["test"]), "--n", "10",
            "--out", str(tmp / "r.safetensors")]
    return consumer, args, bad.name, [bad]


def _classifier_classes_lie(chain, tmp):
    bad = forge(chain["classifier"], tmp / "cls.safetensors", lambda m: m["classes"].append("extra"))
    return consumer, ["inspect", str(bad)], bad.name, [bad]


# --- outputs that cannot destroy data, in every writing command


def _copy(chain, tmp, key):
    path = tmp / f"{key}.safetensors"
    path.write_bytes(chain[key].read_bytes())
    return path


def _train_out_is_spec(chain, tmp):
    spec = _copy(chain, tmp, "spec")
    args = ["train", "--spec", str(spec), "--task", "object_hue", "--out", str(spec)]
    return producer, args, spec.name, [spec]


def _encode_out_is_encoder(chain, tmp):
    encoder = _copy(chain, tmp, "encoder")
    args = ["encode", "--spec", str(chain["spec"]), "--encoder", str(encoder), "--out", str(encoder)]
    return producer, args, encoder.name, [encoder]


def _encode_out_name_too_long(chain, tmp):
    args = ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]),
            "--out", str(tmp / ("b" * 250 + ".safetensors"))]
    return producer, args, "bbbb", []


def _export_onnx_fifo(chain, tmp):
    (tmp / "o").mkdir()
    os.mkfifo(tmp / "o" / "pipeline.onnx")
    args = ["export-onnx", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), "--out-dir", str(tmp / "o")]
    return producer, args, "pipeline.onnx", []


def _train_glow_folder_is_a_file(chain, tmp):
    (tmp / "file").write_text("not a folder")
    return regulator, ["train-glow", "--out", str(tmp / "file" / "g.safetensors")], "g.safetensors", [tmp / "file"]


def _train_glow_checkpoint_fifo(chain, tmp):
    os.mkfifo(tmp / "g.safetensors.ckpt")
    return regulator, ["train-glow", "--out", str(tmp / "g.safetensors")], "g.safetensors.ckpt", []


def _show_out_is_spec(chain, tmp):
    spec = _copy(chain, tmp, "spec")
    return regulator, ["show", str(spec), "--out", str(spec)], spec.name, [spec]


def _consumer_train_out_is_bundle(chain, tmp):
    bundle = _copy(chain, tmp, "train")
    args = ["train", "--bundle", str(bundle), "--task", "object_hue", "--out", str(bundle)]
    return consumer, args, bundle.name, [bundle]


def _consumer_export_out_is_classifier(chain, tmp):
    classifier = _copy(chain, tmp, "classifier")
    return consumer, ["export-onnx", "--classifier", str(classifier), "--out", str(classifier)], classifier.name, [classifier]


def _sign_over_fifo(chain, tmp):
    key = tmp / "k.key"
    assert CliRunner().invoke(producer, ["keygen", "--out", str(key)]).exit_code == 0
    bundle = _copy(chain, tmp, "test")
    os.mkfifo(tmp / "test.safetensors.sig")
    return producer, ["sign", str(bundle), "--key", str(key)], "test.safetensors.sig", [bundle, key]


# --- exit classes of what remains


def _damaged_checkpoint(chain, tmp):
    out = tmp / "r.safetensors"
    checkpoint = tmp / "r.safetensors.ckpt"
    checkpoint.write_bytes(chain["classifier"].read_bytes()[:100])  # a run killed mid-write elsewhere
    args = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]),
            "--n0", "10", "--n", "10", "--quiet", "--out", str(out)]
    return consumer, args, checkpoint.name, [checkpoint]


def _bad_data_options_in_spec(chain, tmp):
    bad = forge(chain["spec"], tmp / "data.safetensors", lambda m: m["data"]["options"].update(correlate="a:b:7"))
    return regulator, ["show", str(bad), "--out", str(tmp / "s.png")], bad.name, [bad]


def _onnx_file(tmp, name, input_type, width, card):
    import onnx
    from onnx import TensorProto, helper

    from lassi.spec.contract.onnx_check import set_onnx_card

    node = helper.make_node("Identity", ["z"], ["logits"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("z", input_type, ["b", width])],
        [helper.make_tensor_value_info("logits", input_type, ["b", width])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    set_onnx_card(model, card)
    path = tmp / name
    onnx.save(model, str(path))
    return path, TensorProto


def _predict_wrong_output_shape(chain, tmp):
    k = read_artifact(chain["test"]).meta.k
    path, _ = _onnx_file(tmp, "shape.onnx", 1, k, {"num_classes": 3, "sigma_cls": 0.5, "k": k})
    args = ["predict", "--onnx", str(path), "--bundle", str(chain["test"]), "--n", "10", "--limit", "1"]
    return consumer, args, path.name, [path]


def _predict_wrong_input_type(chain, tmp):
    from onnx import TensorProto

    k = read_artifact(chain["test"]).meta.k
    path, _ = _onnx_file(tmp, "type.onnx", TensorProto.INT64, k, {"num_classes": 3, "sigma_cls": 0.5, "k": k})
    args = ["predict", "--onnx", str(path), "--bundle", str(chain["test"]), "--n", "10", "--limit", "1"]
    return consumer, args, path.name, [path]



# --- options checked against the machine and before any work (exit 2, one line)


def _verify_args(chain, tmp, *extra):
    return ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]), "--n0", "10",
            "--n", "10", "--quiet", *extra, "--out", str(tmp / "r.safetensors")]


def _threads(role: str, value: str):
    def build(chain, tmp):
        if role == "consumer":
            return consumer, _verify_args(chain, tmp, "--threads", value), "--threads", [chain["test"]]
        if role == "producer":
            args = ["encode", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), "--limit", "2",
                    "--threads", value, "--out", str(tmp / "b.safetensors")]
            return producer, args, "--threads", [chain["spec"]]
        if role == "predict":
            args = ["predict", "--onnx", str(tmp / "m.onnx"), "--bundle", str(chain["test"]), "--threads", value]
            return consumer, args, "--threads", [chain["test"]]
        if role == "show":
            return regulator, ["show", str(chain["spec"]), "--threads", value, "--out", str(tmp / "s.png")], \
                "--threads", [chain["spec"]]
        return regulator, ["train-glow", "--threads", value, "--out", str(tmp / "g.safetensors")], "--threads", []

    return build


def _sigma_grid(value: str):
    def build(chain, tmp):
        args = ["train", "--bundle", str(chain["train"]), "--task", "object_hue", "--sigma", "auto", "--sigma-grid",
                value, "--quiet", "--out", str(tmp / "c.safetensors")]
        return consumer, args, "--sigma-grid", [chain["train"]]

    return build


def _sigma_huge(chain, tmp):
    args = ["train", "--bundle", str(chain["train"]), "--task", "object_hue", "--sigma", "1e308", "--quiet",
            "--out", str(tmp / "c.safetensors")]
    return consumer, args, "--sigma", [chain["train"]]


# --- internal errors that are the user's: each now its documented class


def _classifier_of_a_sensitive_attribute(chain, tmp):
    bad = forge(chain["classifier"], tmp / "cls.safetensors", lambda m: m.__setitem__("task", "orientation"))
    args = ["verify", "--spec", str(chain["spec"]), "--classifier", str(bad), "--bundle", str(chain["test"]),
            "--n0", "10", "--n", "10", "--quiet", "--out", str(tmp / "r.safetensors")]
    return consumer, args, bad.name, [bad, chain["spec"]]


def _summary_disagrees_with_statuses(chain, tmp):
    def edit(m):
        m["summary"].update(certified_fairness=1.0, not_certified=0.0)

    bad = forge(chain["report"], tmp / "report.safetensors", edit)
    return consumer, ["inspect", str(bad)], bad.name, [bad]


def _one_class_bundle(chain, tmp):
    def edit(t):
        t["labels.object_hue"] = np.zeros_like(t["labels.object_hue"])

    bad = forge(chain["train"], tmp / "one.safetensors", lambda m: m["label_classes"].update(object_hue=1), edit)
    args = ["train", "--bundle", str(bad), "--task", "object_hue", "--sigma", "0.5", "--quiet",
            "--out", str(tmp / "c.safetensors")]
    return consumer, args, bad.name, [bad]


def _diverging_training(chain, tmp):
    """Representations of scale 1e37 (finite float32): the loss overflows in the first epoch."""
    bad = forge(chain["train"], tmp / "huge.safetensors",
                tensor_edit=lambda t: t.__setitem__("z", (t["z"] * np.float32(1e37)).astype(np.float32)))
    args = ["train", "--bundle", str(bad), "--task", "object_hue", "--sigma", "0.5", "--epochs", "2", "--quiet",
            "--out", str(tmp / "c.safetensors")]
    return consumer, args, "--lr", [bad]


def _lr(role: str, value: str):
    def build(chain, tmp):
        if role == "consumer":
            args = ["train", "--bundle", str(chain["train"]), "--task", "object_hue", "--lr", value,
                    "--out", str(tmp / "c.safetensors")]
            return consumer, args, "--lr", [chain["train"]]
        return regulator, ["train-glow", "--lr", value, "--out", str(tmp / "g.safetensors")], "--lr", []

    return build


def _checkpoint_with_short_rows(chain, tmp):
    """A verify checkpoint of this very run (same options and data) whose rows are shorter than
    the samples it says are done (valid checksum: a bug or an edit, not a torn write)."""
    from unittest import mock

    from lassi.spec.runtime.per_sample import PerSampleLoop

    with mock.patch.dict(os.environ, {"LASSI_CHECKPOINT_SECONDS": "0"}), \
            mock.patch.object(PerSampleLoop, "finish", lambda self: None):  # keep the checkpoint
        assert CliRunner().invoke(consumer, _verify_args(chain, tmp)).exit_code == 0
    checkpoint = tmp / "r.safetensors.ckpt"
    for path in tmp.iterdir():
        if path != checkpoint:
            path.unlink()
    forge(checkpoint, checkpoint, tensor_edit=lambda t: t.update(
        {name: value[:1].copy() for name, value in t.items() if name.startswith("extra.")}))
    return consumer, _verify_args(chain, tmp), checkpoint.name, [checkpoint]


def _predict_names_the_onnx_file(chain, tmp):
    k = read_artifact(chain["test"]).meta.k
    path, _ = _onnx_file(tmp, "card.onnx", 1, k, {"num_classes": 3, "sigma_cls": 0.5, "k": k})
    import onnx

    from lassi.spec.contract.onnx_check import METADATA_KEY

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps({"num_classes": 10**9})
    onnx.save(model, str(path))
    args = ["predict", "--onnx", str(path), "--bundle", str(chain["test"]), "--n", "10", "--limit", "1"]
    return consumer, args, path.name, [path]


CLI_CASES = [
    CliCase("fifo_artifact", _fifo, USAGE, "named pipe"),
    CliCase("fifo_signed_file", _fifo_signed, USAGE, "named pipe"),
    CliCase("device_dev_zero", _device, USAGE, "device"),
    CliCase("folder_as_artifact", _folder, USAGE, "folder"),
    CliCase("epsilon_lie_consumer", _certificate_lie("epsilon", 0.001), INTEGRITY, "epsilon = 0.001"),
    CliCase("epsilon_lie_audit", _certificate_lie("epsilon", 0.001, audit=True), INTEGRITY, "epsilon = 0.001"),
    CliCase("attribute_lie", _attribute_lie, INTEGRITY, "attributes"),
    CliCase("m_lie_consumer", _certificate_lie("m", 1), INTEGRITY, "t-noise in 1 dimensions, the spec has m = 49"),
    CliCase("m_lie_audit", _certificate_lie("m", 1, audit=True), INTEGRITY, "t-noise in 1 dimensions, the spec has m = 49"),
    CliCase("delta_not_replayable", _delta_unreplayable, INVALID, "delta"),
    CliCase("alpha_sum_not_replayable", _alpha_sum, INVALID, "alpha1 + alpha2"),
    CliCase("nan_literal", _nan_literal, INVALID, "NaN"),
    CliCase("duplicate_key", _duplicate_key, INVALID, "duplicate key"),
    CliCase("yes_is_not_true", _yes_is_not_true, INVALID, "certified"),
    CliCase("deep_nesting", _deep_nesting, INVALID, "nested too deeply"),
    CliCase("out_is_input", _out_is_input, USAGE, "also an input"),
    CliCase("out_collides_with_side_file", _out_collides_with_side_file, USAGE,
            "is both the output and a side file this command writes beside it (such as its .json "
            "or .ckpt); give the output its own name, e.g. report.safetensors"),
    CliCase("out_is_fifo", _out_is_fifo, USAGE, "not a regular file"),
    CliCase("out_name_too_long", _out_name_too_long, USAGE, "too long"),
    CliCase("keygen_over_public_key", _keygen_over_public_key, USAGE, "refusing to overwrite"),
    CliCase("define_bad_policy", _define_bad_policy, USAGE, "sigma_enc_min"),
    CliCase("define_out_is_glow", _define_out_is_glow, USAGE, "also an input"),
    CliCase("class_count_bomb", _class_count_bomb, INVALID, "num_classes"),
    CliCase("hidden_width_bomb", _hidden_width_bomb, INVALID, "hidden"),
    CliCase("glow_bomb_spec", _glow_bomb_spec, INVALID, "over the limit"),
    CliCase("glow_width_lie", _glow_width_lie, INVALID, "architecture and weights disagree"),
    CliCase("glow_artifact_depth_lie", _glow_artifact_depth_lie, INVALID, "architecture and weights disagree"),
    CliCase("encoder_hidden_lie", _encoder_hidden_lie, INVALID, "encoder layers"),
    CliCase("encoder_input_lie", _encoder_input_lie, INVALID, "encoder declares"),
    CliCase("classifier_k_lie", _classifier_k_lie, INVALID, "classifier layers"),
    CliCase("classifier_classes_lie", _classifier_classes_lie, INVALID, "classifier layers"),
    CliCase("producer_train_out_is_spec", _train_out_is_spec, USAGE, "also an input"),
    CliCase("encode_out_is_encoder", _encode_out_is_encoder, USAGE, "also an input"),
    CliCase("encode_out_name_too_long", _encode_out_name_too_long, USAGE, "too long"),
    CliCase("export_onnx_into_fifo", _export_onnx_fifo, USAGE, "not a regular file"),
    CliCase("train_glow_folder_is_a_file", _train_glow_folder_is_a_file, USAGE, "is not a folder"),
    CliCase("train_glow_checkpoint_is_fifo", _train_glow_checkpoint_fifo, USAGE, "not a regular file"),
    CliCase("show_out_is_spec", _show_out_is_spec, USAGE, "also an input"),
    CliCase("consumer_train_out_is_bundle", _consumer_train_out_is_bundle, USAGE, "also an input"),
    CliCase("consumer_export_out_is_classifier", _consumer_export_out_is_classifier, USAGE, "also an input"),
    CliCase("sign_over_fifo", _sign_over_fifo, USAGE, "not a regular file"),
    CliCase("damaged_checkpoint", _damaged_checkpoint, INVALID, "checkpoint is damaged"),
    CliCase("bad_data_options_in_spec", _bad_data_options_in_spec, INVALID, "data options that are not valid"),
    CliCase("predict_wrong_output_shape", _predict_wrong_output_shape, INVALID, "expected float"),
    CliCase("predict_wrong_input_type", _predict_wrong_input_type, INVALID, "onnxruntime fails"),
    CliCase("threads_huge_verify", _threads("consumer", "1000000"), USAGE, "--threads must be between 1 and"),
    CliCase("threads_negative_encode", _threads("producer", "-5"), USAGE, "got -5"),
    CliCase("threads_zero_predict", _threads("predict", "0"), USAGE, "--threads must be between"),
    CliCase("threads_huge_show", _threads("show", "1000000"), USAGE, "--threads must be between"),
    CliCase("threads_huge_train_glow", _threads("train-glow", "99999999999"), USAGE, "--threads must be"),
    CliCase("sigma_grid_nan", _sigma_grid("1,nan"), USAGE, "got nan"),
    CliCase("sigma_grid_huge", _sigma_grid("1e308"), USAGE, "finite number in (0, 1e+06]"),
    CliCase("sigma_grid_inf", _sigma_grid("inf,2"), USAGE, "got inf"),
    CliCase("sigma_grid_negative", _sigma_grid("-1,2"), USAGE, "got -1.0"),
    CliCase("sigma_huge", _sigma_huge, USAGE, "finite number in (0, 1e+06]"),
    CliCase("classifier_of_a_sensitive_attribute", _classifier_of_a_sensitive_attribute, USAGE,
            "a sensitive attribute of the similarity set"),
    CliCase("summary_disagrees_with_statuses", _summary_disagrees_with_statuses, INVALID,
            "disagrees with the per-sample statuses"),
    CliCase("one_class_bundle", _one_class_bundle, USAGE, "a classifier needs at least two"),
    CliCase("diverging_training", _diverging_training, USAGE, "training diverged"),
    CliCase("lr_nan", _lr("consumer", "nan"), USAGE, "--lr must be a finite number"),
    CliCase("lr_overflows_float32", _lr("train-glow", "1e38"), USAGE, "--lr must be a finite number"),
    CliCase("checkpoint_with_short_rows", _checkpoint_with_short_rows, INVALID, "checkpoint is damaged"),
    CliCase("predict_names_the_onnx_file", _predict_names_the_onnx_file, INVALID, "num_classes"),
]


def test_cli_corpus_size() -> None:
    assert len({c.name for c in CLI_CASES}) == len(CLI_CASES) == 63


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
@pytest.mark.slow
def test_hostile_case_ends_cleanly(case: CliCase, chain: dict[str, Path], tmp_path: Path) -> None:
    cli, args, name, inputs = case.build(chain, tmp_path)
    before = snapshot(inputs + [chain[k] for k in ("spec", "test", "classifier", "glow")])
    listing = sorted(p.name for p in tmp_path.iterdir())
    check_clean(invoke_bounded(cli, args), case.code, name, case.message)  # peak memory < 1 GiB
    assert snapshot(list(before)) == before, "an input changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == listing, "an output or temp file was left"


# --------------------------------------------------------------------------- races


@pytest.mark.slow
def test_signature_vouches_for_the_bytes_that_are_parsed(chain: dict[str, Path], tmp_path: Path) -> None:
    """A file swapped after the signature check is not what the command parses."""
    from lassi.spec.contract.signing import sign_file, verify_file

    key = tmp_path / "p.key"
    assert CliRunner().invoke(producer, ["keygen", "--out", str(key)]).exit_code == 0
    path = tmp_path / "bundle.safetensors"
    path.write_bytes(chain["test"].read_bytes())
    sign_file(path, key)
    genuine = read_artifact(path).sha256
    forged = forge(chain["test"], tmp_path / "forged.safetensors",
                   tensor_edit=lambda t: t.__setitem__("r_cs", (t["r_cs"] * 0.5).astype(np.float32)))
    with pinned_reads():
        verify_file(path, [f"{key}.pub"])  # streamed through the hash: the content is pinned
        os.replace(forged, path)  # the swap on a shared folder
        for read in (lambda: read_artifact(path), lambda: read_file(path, 1 << 30)):
            with pytest.raises(LassiError, match="changed while this command was reading it") as error:
                read()
            assert error.value.exit_code == INTEGRITY
    with pinned_reads():  # a file read whole keeps its bytes: a second reader gets the first read
        first = read_file(path, 1 << 30)
        path.write_bytes(chain["test"].read_bytes())
        assert read_file(path, 1 << 30) == first != path.read_bytes()
    assert read_artifact(path).sha256 == genuine  # outside a command, the file is read anew


# --------------------------------------------------------------------------- binding and policy


@pytest.mark.slow
def test_spec_header_is_read_without_torch_and_hashes_the_file(chain: dict[str, Path]) -> None:
    code = (
        "import sys; from lassi.spec.contract.binding import read_spec_header; "
        f"m, h = read_spec_header({str(chain['spec'])!r}); "
        "print(h, m.epsilon, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    digest, epsilon, torch_loaded = out.stdout.split()
    assert digest == read_artifact(chain["spec"]).sha256
    assert float(epsilon) == read_artifact(chain["spec"]).meta.epsilon and torch_loaded == "False"


@pytest.mark.slow
def test_policy_is_enforced(chain: dict[str, Path]) -> None:
    spec, digest = read_spec_header(chain["spec"])
    bundle = read_artifact(chain["test"], expect=RepresentationBundle).meta
    check_binding(spec, digest, bundle, "b")  # the honest chain passes
    c = bundle.certificate
    for policy, fragment in (
        (CertificationPolicy(min_n=c.n + 1), "n = "),
        (CertificationPolicy(sigma_enc_min=c.sigma * 2), "sigma_enc"),
        (CertificationPolicy(sigma_enc_max=c.sigma / 2), "sigma_enc"),
        (CertificationPolicy(max_alpha=(c.alpha1 + c.alpha2) / 2), r"alpha1 \+ alpha2"),
    ):
        strict = spec.model_copy(update={"policy": policy})
        with pytest.raises(LassiError, match=fragment) as error:
            check_binding(strict, digest, bundle, "b")
        assert error.value.exit_code == INTEGRITY
    assert SimilaritySpec.model_validate_json(
        spec.model_copy(update={"policy": CertificationPolicy(min_n=5)}).model_dump_json()
    ).policy.min_n == 5


@pytest.mark.slow
def test_binding_checks_the_recorded_dimension_of_the_t_noise(chain: dict[str, Path]) -> None:
    spec, digest = read_spec_header(chain["spec"])
    bundle = read_artifact(chain["test"], expect=RepresentationBundle).meta
    assert bundle.certificate.m == len(spec.vector_names) == 49  # encode --certify records it
    for m in (1, 48, 50):
        other = bundle.model_copy(update={"certificate": bundle.certificate.model_copy(update={"m": m})})
        with pytest.raises(LassiError, match=f"t-noise in {m} dimensions") as error:
            check_binding(spec, digest, other, "b")
        assert error.value.exit_code == INTEGRITY


@pytest.mark.slow
def test_consumer_report_names_the_spec_or_the_producers_word(chain: dict[str, Path], tmp_path: Path) -> None:
    base = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]), "--n", "20",
            "--n0", "10", "--quiet"]
    digest = read_artifact(chain["spec"]).sha256
    bound = CliRunner().invoke(consumer, [*base, "--spec", str(chain["spec"]), "--out", str(tmp_path / "a.safetensors")])
    assert bound.exit_code == 0, bound.output
    assert f"bound to similarity spec sha256 {digest}" in bound.output
    loose = CliRunner().invoke(consumer, [*base, "--out", str(tmp_path / "b.safetensors")])
    assert loose.exit_code == 0 and "taken on the producer's word" in loose.output


@pytest.mark.slow
def test_report_records_what_the_certificates_cover(chain: dict[str, Path], tmp_path: Path) -> None:
    """The report file, not only the terminal, says which set the certificates speak for: the
    bound spec's hash, m and the regulator's coverage of real siblings, or the producer's word."""
    base = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]), "--n", "20",
            "--n0", "10", "--quiet"]
    spec = read_artifact(chain["spec"], expect=SimilaritySpec)
    assert spec.meta.coverage is not None  # define measured it (3D Shapes, orientation)
    bound = CliRunner().invoke(consumer, [*base, "--spec", str(chain["spec"]), "--out", str(tmp_path / "a.safetensors")])
    assert bound.exit_code == 0, bound.output
    scope = read_artifact(tmp_path / "a.safetensors", expect=VerificationReport).meta.scope
    assert scope is not None and scope.spec_sha256 == spec.sha256
    assert scope.m == len(spec.meta.vector_names) and scope.coverage == spec.meta.coverage
    assert scope.vectors == {a.name: a.vectors for a in spec.meta.attributes}
    text = (tmp_path / "a.md").read_text()
    assert "## What the certificates cover" in text and f"m = {scope.m} attribute vectors" in text
    assert f"leaves {spec.meta.coverage.latent_residual:.3f} of a real sibling's latent move" in text
    assert "coverage (the regulator's measurement" in bound.output
    assert json.loads((tmp_path / "a.json").read_text())["scope"]["spec_sha256"] == spec.sha256

    loose = CliRunner().invoke(consumer, [*base, "--out", str(tmp_path / "b.safetensors")])
    assert loose.exit_code == 0, loose.output
    scope = read_artifact(tmp_path / "b.safetensors", expect=VerificationReport).meta.scope
    assert scope is not None and scope.spec_sha256 is None and scope.coverage is None
    assert "taken on the producer's word" in (tmp_path / "b.md").read_text()


def test_scope_without_a_spec_cannot_claim_coverage() -> None:
    """m, vectors and coverage come from the regulator's spec; a report cannot state them unbound."""
    cov = Coverage(vectors="pairs", m=49, epsilon=1.0, latent_residual=0.9, latent_residual_span=0.8,
                   pixel_ratio=0.95, per_shape={}, on_boundary=0.5, n_images=4, n_siblings=40)
    with pytest.raises(ValidationError, match="need spec_sha256"):
        CertificateScope(attributes=["orientation"], epsilon=1.0, coverage=cov)
    with pytest.raises(ValidationError, match="need spec_sha256"):
        CertificateScope(attributes=["orientation"], epsilon=1.0, m=49)
    with pytest.raises(ValidationError, match="exactly the scope's attributes"):
        CertificateScope(spec_sha256="a" * 64, attributes=["orientation"], epsilon=1.0, vectors={"scale": "pairs"})


# --------------------------------------------------------------------------- the audit


@pytest.fixture(scope="module")
def base_function(chain: dict[str, Path], tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    result = CliRunner().invoke(
        producer,
        ["export-onnx", "--spec", str(chain["spec"]), "--encoder", str(chain["encoder"]), "--out-dir", str(out)],
    )
    assert result.exit_code == 0, result.output
    return out / "base_function.onnx"


@pytest.mark.slow
def test_audit_flags_a_center_far_from_the_replay(chain, base_function, tmp_path) -> None:
    bundle = read_artifact(chain["test"], expect=RepresentationBundle)
    certified = bundle.tensors["ids"][bundle.tensors["status"] == 0][:1]
    bad = forge(chain["test"], tmp_path / "far.safetensors",
                tensor_edit=lambda t: t.__setitem__("z_cs", (t["z_cs"] + 200).astype(np.float32)))
    args = ["audit", "--spec", str(chain["spec"]), "--base-function", str(base_function), "--bundle", str(bad),
            "--ids", str(int(certified[0]))]
    result = CliRunner().invoke(regulator, args)
    assert result.exit_code == INTEGRITY and "center_mismatch" in result.output, result.output


@pytest.mark.slow
def test_auditing_nothing_is_an_error(chain, base_function) -> None:
    args = ["audit", "--spec", str(chain["spec"]), "--base-function", str(base_function),
            "--bundle", str(chain["test"]), "--ids", ","]
    check_clean(CliRunner().invoke(regulator, args), USAGE, chain["test"].name, "no sample to audit")


# --------------------------------------------------------------------------- output that cannot be spoofed


@pytest.mark.slow
def test_inspect_escapes_terminal_controls(chain: dict[str, Path], tmp_path: Path) -> None:
    evil = "x\x1b[2J\x07\r\nparent:  glow " + "0" * 64 + "\nkind:    glow"
    bad = forge(chain["classifier"], tmp_path / "evil.safetensors", lambda m: m.__setitem__("tool", evil))
    text = CliRunner().invoke(consumer, ["inspect", str(bad)]).output
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert [line for line in text.splitlines() if line.startswith("kind:")] == [f"kind:    classifier (schema_version {SCHEMA_VERSION})"]
    parents = read_artifact(bad).meta.parents
    assert len([line for line in text.splitlines() if line.startswith("parent:")]) == len(parents)
    as_json = CliRunner().invoke(consumer, ["inspect", "--json", str(bad)])
    assert json.loads(as_json.output)["metadata"]["tool"] == evil


def test_errors_escape_controls_in_paths(tmp_path: Path) -> None:
    name = tmp_path / "a\x1b[31mb\nerror: all fine"
    result = CliRunner().invoke(consumer, ["inspect", str(name)])
    assert result.exit_code == USAGE and "\x1b" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_onnx_card_is_typed_and_bounded(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from lassi.spec.contract.onnx_check import set_onnx_card

    node = helper.make_node("Identity", ["z"], ["logits"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    for card, fragment in (
        ({"num_classes": 10**9}, "num_classes"),
        ({"parents": {"encoder": "not a hash"}}, "parents"),
        ({"sigma_cls": "0.5"}, "sigma_cls"),
    ):
        set_onnx_card(model, card)
        path = tmp_path / "m.onnx"
        onnx.save(model, str(path))
        check_clean(CliRunner().invoke(consumer, ["inspect", str(path)]), INVALID, path.name, fragment)


# --------------------------------------------------------------------------- resources


@pytest.mark.parametrize("target", ["/dev/zero", "bomb"])
@pytest.mark.slow
def test_peak_memory_of_a_cli_run_is_bounded(target: str, chain: dict[str, Path], tmp_path: Path) -> None:
    """Run in a child process; its peak resident memory stays far below 1 GB."""
    if target == "bomb":  # a header claiming a 10**12-element tensor
        bomb = forge(chain["test"], tmp_path / "bomb.safetensors")
        data = bomb.read_bytes()
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        header["z"]["shape"] = [10**6, 10**6]
        blob = json.dumps(header).encode()
        bomb.write_bytes(len(blob).to_bytes(8, "little") + blob + data[8 + header_len :])
        target = str(bomb)
    code = "from lassi.consumer.cli import main; main()"
    run, peak_kib = run_child(code, ["inspect", target])
    assert run.returncode in (USAGE, INVALID) and "Traceback" not in run.stderr, run.stderr
    assert peak_kib < 1024 * 1024, f"peak {peak_kib} KiB"


def test_the_peak_memory_measure_of_the_corpus_can_fail() -> None:
    """invoke_bounded (used for every CLI case) catches a command that allocates past its limit."""
    import click

    @click.command()
    def hungry() -> None:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
        click.echo(block.sum())

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("no /proc/self/clear_refs here: the corpus runs unmeasured")
    assert invoke_bounded(hungry, [], limit_kib=256 * 1024).exit_code == 0
    with pytest.raises(AssertionError, match="peak memory grew"):
        invoke_bounded(hungry, [], limit_kib=32 * 1024)


# --------------------------------------------------------------------------- metadata values


_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.dictionaries(
    st.sampled_from(["sigma", "epsilon", "n0", "n", "alpha1", "alpha2", "delta", "beta", "seed"]),
    _values, min_size=1, max_size=3))
@pytest.mark.slow
def test_any_certificate_the_schema_accepts_can_be_replayed(edits, chain, tmp_path) -> None:
    meta, tensors = parts(chain["test"])
    meta["certificate"].update(edits)
    text = json.dumps(meta)  # NaN/Infinity become bare literals, which strict JSON refuses
    path = tmp_path / "values.safetensors"
    write_raw(path, text, tensors)
    try:
        bundle = read_artifact(path, expect=RepresentationBundle)
    except LassiError as error:
        assert error.exit_code == INVALID and "\n" not in str(error)
        return
    CenterSmoothing(lambda t: t, bundle.meta.certificate.m, bundle.meta.certificate)  # never raises



# --------------------------------------------------------------------------- architectures


@pytest.mark.parametrize(("size", "levels", "steps", "hidden", "coupling"),
                         [(16, 2, 2, 16, "additive"), (32, 3, 1, 8, "affine"), (8, 1, 3, 4, "additive")])
@pytest.mark.slow
def test_glow_weight_count_matches_the_real_glow(size, levels, steps, hidden, coupling) -> None:
    """The count the reader checks before building equals the state dict a real Glow has
    (built on the meta device: nothing is allocated)."""
    import torch

    from lassi.regulator.training import build_glow
    from lassi.spec.contract.architecture import glow_weight_count
    from lassi.spec.contract.models import GlowConfig

    flow = GlowConfig(image_size=size, n_levels=levels, n_steps=steps, hidden=hidden, coupling=coupling)
    with torch.device("meta"):
        state = build_glow(flow).state_dict()
    assert glow_weight_count(size, levels, steps, hidden, coupling) == (
        sum(v.numel() for v in state.values()), len(state))


@pytest.mark.slow
def test_a_huge_declared_glow_is_refused_within_bounded_memory(chain: dict[str, Path], tmp_path: Path) -> None:
    """A small spec declaring a Glow of ~5e8 weights: refused before building, peak RSS < 1 GB."""
    bad = forge(chain["spec"], tmp_path / "bomb.safetensors", lambda m: m["flow"].update(n_steps=64, hidden=2048))
    code = "from lassi.producer.cli import main; main()"
    args = ["export-onnx", "--spec", str(bad), "--encoder", str(chain["encoder"]), "--out-dir", str(tmp_path / "o")]
    run, peak_kib = run_child(code, args)
    assert run.returncode == INVALID and "over the limit" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert peak_kib < 1024 * 1024, f"peak {peak_kib} KiB"
    assert bad.stat().st_size < 5 * 1024 * 1024 and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_report_and_side_files_are_all_or_nothing(chain: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    """A failure while rendering the figure leaves neither the report nor any side file."""
    import lassi.consumer.report as report

    def broken(*_args, **_kwargs):
        raise OSError(28, "No space left on device", "r.png")

    monkeypatch.setattr(report, "plot_radii", broken)
    args = ["verify", "--classifier", str(chain["classifier"]), "--bundle", str(chain["test"]), "--n0", "10",
            "--n", "20", "--quiet", "--out", str(tmp_path / "r.safetensors")]
    result = CliRunner().invoke(consumer, args)
    assert result.exit_code == USAGE and "No space left" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_spec_header_refuses_a_declared_architecture_its_weights_do_not_back(chain, tmp_path) -> None:
    """``verify --spec`` reads only the header; the architecture check runs there too."""
    bad = forge(chain["spec"], tmp_path / "lie.safetensors", lambda m: m["flow"].update(hidden=17))
    with pytest.raises(LassiError, match="architecture and weights disagree") as error:
        read_spec_header(bad)
    assert error.value.exit_code == INVALID


@pytest.mark.slow
def test_forged_report_scope_is_refused_at_read(chain: dict[str, Path], tmp_path: Path) -> None:
    """A report file that claims m and coverage without a bound spec (valid checksum) is refused
    by every reader with a one-line error, not shown as if a spec had vouched for it."""
    bad = forge(chain["report"], tmp_path / "report.safetensors",
                meta_edit=lambda m: m.update(scope={"attributes": ["orientation"], "epsilon": 1.0, "m": 49}))
    result = CliRunner().invoke(consumer, ["inspect", str(bad)])
    assert result.exit_code == INVALID, result.output
    assert "need spec_sha256" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- derived bounds


def test_an_attack_extension_of_349_vectors_is_valid_and_hostile_sizes_stay_bounded(tmp_path: Path) -> None:
    """The card of an encoder trained against a regulator's extension of 349 vectors (300 beyond
    the spec's 49) was refused by a hard cap of 256 after training; the bound is now
    MAX_VECTORS, the rows a spec file can reasonably hold, for every count of attribute vectors."""
    from lassi.spec.contract.models import MAX_VECTORS, AttackSet, CenterSmoothingParams, OnnxCard

    sha = "0" * 64
    assert len(AttackSet(spec=sha, extra_vectors=[f"v{i}" for i in range(300)]).extra_vectors) == 300
    assert OnnxCard(m=349).m == 349
    params = dict(sigma=0.1, epsilon=1.0, n0=10, n=10, alpha1=0.01, alpha2=0.01, delta=0.1, seed=0,
                  bounds="hoeffding")
    assert CenterSmoothingParams(**params, m=349).m == 349
    for build in (
        lambda: AttackSet(spec=sha, extra_vectors=[f"v{i}" for i in range(MAX_VECTORS + 1)]),
        lambda: OnnxCard(m=MAX_VECTORS + 1),
        lambda: CenterSmoothingParams(**params, m=10**9),  # t-noise in 10**9 dimensions: refused
    ):
        with pytest.raises(ValidationError):
            build()


def test_nan_weights_at_a_checkpoint_say_training_diverged(tmp_path: Path) -> None:
    """A run whose weights became NaN used to fail writing its own checkpoint, blamed as an
    invalid artifact (exit 3); it is the training that diverged (exit 2), and nothing is written."""
    from lassi.spec.contract.io import write_artifact
    from lassi.spec.contract.models import Checkpoint

    meta = Checkpoint(tool="test", stage="glow", run_key="k", step=17)
    path = tmp_path / "run.ckpt"
    with pytest.raises(LassiError, match=r"training diverged \(glow: the weights are NaN or Inf at step 17\); lower --lr") as error:
        write_artifact(path, meta, {"model.w": np.array([1.0, np.nan], np.float32)})
    assert error.value.exit_code == USAGE and list(tmp_path.iterdir()) == []
