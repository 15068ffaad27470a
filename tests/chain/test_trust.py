"""A dishonest producer and hostile files: one generator per class of attack.

Classes: races (a named pipe, a file swapped between reads), semantic lies with a recomputed
checksum (epsilon, attributes, centers, summaries), resource bombs (devices, huge counts),
path tricks (outputs onto inputs, onto devices, over keys), terminal escapes, lax JSON.
Every CLI case ends with its documented exit status, one line naming the file, no traceback,
no output or temporary file left, and every input byte-identical afterwards. The corpus holds
``len(CLI_CASES)`` CLI cases (63, asserted below); binding and policy, escapes and bounds are
in ``test_binding`` and ``test_hostile_values``.

Why one long module: the corpus is one table of cases, each builder beside the others of its
class.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from factories import forge, invoke_bounded, one_line
from lassi.consumer.cli import main as consumer
from lassi.producer.cli import main as producer
from lassi.regulator.cli import main as regulator
from lassi.spec import EXIT_CODES, read_artifact

USAGE, INVALID, INTEGRITY = (EXIT_CODES[k] for k in ("usage", "invalid_artifact", "integrity"))






def snapshot(paths: list[Path]) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths if p.is_file()}


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
    one_line(invoke_bounded(cli, args), case.code, name, case.message, warnings=True)  # peak memory < 1 GiB
    assert snapshot(list(before)) == before, "an input changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == listing, "an output or temp file was left"
