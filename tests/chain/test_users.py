"""Real users' data and choices: label policy, CelebA layouts, no silent fallbacks (CLIs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from factories import CELEBA_ATTRIBUTES, DATA, N_FACES, write_celeba
from lassi.spec import RepresentationBundle, read_artifact


def invoke(main, args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args])


def encode_args(chain: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["encode", "--spec", chain["spec"], "--encoder", chain["encoder"], *DATA,
            "--split", "val", "--limit", "5", "--quiet", "--out", out, *extra]  # fmt: skip


# ------------------------------------------------------------------------------- label policy


@pytest.mark.slow
def test_bundle_carries_only_the_task_label_by_default(chain):
    meta = read_artifact(chain["train"], expect=RepresentationBundle).meta
    assert meta.label_names == ["object_hue"]
    assert meta.sensitive_labels == []


@pytest.mark.slow
def test_encode_exports_the_labels_asked_for(chain, tmp_path):
    from lassi.producer.cli import main

    out = tmp_path / "b.safetensors"
    result = invoke(main, encode_args(chain, out, "--labels", "shape,floor_hue"))
    assert result.exit_code == 0, result.output
    bundle = read_artifact(out, expect=RepresentationBundle)
    assert bundle.meta.label_names == ["floor_hue", "shape"]
    assert set(k for k in bundle.tensors if k.startswith("labels.")) == {
        "labels.floor_hue",
        "labels.shape",
    }


@pytest.mark.slow
def test_sensitive_label_needs_the_explicit_flag(chain, tmp_path):
    from lassi.producer.cli import main

    out = tmp_path / "b.safetensors"
    result = invoke(main, encode_args(chain, out, "--labels", "object_hue,orientation"))
    assert result.exit_code == 2
    assert "orientation" in result.output and "--include-sensitive-labels" in result.output
    assert not out.exists()
    result = invoke(main, encode_args(chain, out, "--include-sensitive-labels"))
    assert result.exit_code == 0, result.output
    meta = read_artifact(out, expect=RepresentationBundle).meta
    assert meta.label_names == ["object_hue", "orientation"]
    assert meta.sensitive_labels == ["orientation"]


@pytest.mark.slow
def test_consumer_refuses_to_train_on_a_sensitive_label(chain, tmp_path):
    from lassi.consumer.cli import main as consumer
    from lassi.producer.cli import main as producer

    bundle = tmp_path / "b.safetensors"
    result = invoke(producer, encode_args(chain, bundle, "--include-sensitive-labels"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "c.safetensors"
    result = invoke(consumer, ["train", "--bundle", bundle, "--task", "orientation",
                               "--sigma", "0.5", "--quiet", "--out", out])  # fmt: skip
    assert result.exit_code == 2
    assert "sensitive" in result.output and not out.exists()


@pytest.mark.slow
def test_encoder_training_on_a_sensitive_attribute_is_a_usage_error(chain, tmp_path):
    from lassi.producer.cli import main

    out = tmp_path / "e.safetensors"
    result = invoke(main, ["train", "--spec", chain["spec"], *DATA, "--task", "orientation",
                           "--epochs", "1", "--quiet", "--out", out])  # fmt: skip
    assert result.exit_code == 2
    assert "sensitive" in result.output and not out.exists()


# ------------------------------------------------------------------------- CelebA layouts


@pytest.fixture()
def celeba(tmp_path: Path) -> Path:
    """The miniature CelebA of tests/factories, in the official layout."""
    return write_celeba(tmp_path / "celeba")


def celeba_csv_layout(official: Path, root: Path, nested: bool) -> Path:
    """The widespread CSV redistribution of the official files ``official`` under ``root``."""
    import shutil

    lines = (official / "list_attr_celeba.txt").read_text().splitlines()
    names = lines[1].split()
    rows = [",".join(line.split()) for line in lines[2:]]
    images = root / "img_align_celeba" / ("img_align_celeba" if nested else "")
    shutil.copytree(official / "img_align_celeba", images)
    (root / "list_attr_celeba.csv").write_text("image_id," + ",".join(names) + "\n" + "\n".join(rows) + "\n")
    partition = (official / "list_eval_partition.txt").read_text().split()
    pairs = [f"{partition[i]},{partition[i + 1]}" for i in range(0, len(partition), 2)]
    (root / "list_eval_partition.csv").write_text("image_id,partition\n" + "\n".join(pairs) + "\n")
    return root


@pytest.mark.parametrize("nested", [False, True])
def test_celeba_csv_layout_loads_the_same_labels_and_splits(celeba, tmp_path, nested):
    from lassi.regulator.datasets import CelebASource

    official = CelebASource(celeba, image_size=8)
    csv = CelebASource(celeba_csv_layout(celeba, tmp_path / "kaggle", nested), image_size=8)
    assert (official.layout, csv.layout) == ("official", "csv")
    assert csv.attribute_names == official.attribute_names == CELEBA_ATTRIBUTES
    ids = np.arange(N_FACES)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(csv.split_ids(split), official.split_ids(split))
    for name, labels in official.attributes(ids).items():
        np.testing.assert_array_equal(csv.attributes(ids)[name], labels)
    np.testing.assert_array_equal(csv.images(ids), official.images(ids))
    # ids are 0-based rows, CelebA file names 1-based
    assert csv.file_names(np.array([0, 5])) == ["000001.jpg", "000006.jpg"]


def test_celeba_without_attribute_file_names_both_layouts(celeba):
    from lassi.regulator.datasets import CelebASource, DataError

    (celeba / "list_attr_celeba.txt").unlink()
    with pytest.raises(DataError) as error:
        CelebASource(celeba)
    message = str(error.value)
    assert "\n" not in message and str(celeba) in message
    assert "list_attr_celeba.txt" in message and "list_attr_celeba.csv" in message


def test_celeba_csv_errors_name_file_and_line(celeba, tmp_path):
    from lassi.regulator.datasets import CelebASource, DataError

    root = celeba_csv_layout(celeba, tmp_path / "kaggle", nested=False)
    path = root / "list_eval_partition.csv"
    path.write_text(path.read_text().replace("000004.jpg,1", "000004.jpg,7"))
    with pytest.raises(DataError, match=r"list_eval_partition.csv.*line 5.*0, 1 or 2"):
        CelebASource(root)


# --------------------------------------------------------------------- no silent fallbacks


def test_data_root_without_dataset_is_inferred_or_refused(celeba, tmp_path):
    from lassi.regulator.data_config import dataset_config_from_options
    from lassi.spec import UsageError

    def config(**given):
        options = dict(dataset=None, data_root=None, csv=None, image_size=None, data_seed=None,
                       n_train=None, n_val=None, n_test=None, correlate=None)  # fmt: skip
        return dataset_config_from_options(options | given)

    assert config(data_root=celeba).dataset == "celeba"
    assert config().dataset == "shapes3d"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "attributes.csv").write_text("file,split,a\n")
    assert config(data_root=tmp_path / "mine").dataset == "folder"
    with pytest.raises(UsageError, match="pass --dataset celeba or --dataset folder"):
        config(data_root=tmp_path)
    with pytest.raises(UsageError, match="--n-train, --correlate applies to the generated 3D"):
        config(data_root=celeba, n_train=10, correlate="Male:Smiling:0.5")
    with pytest.raises(UsageError, match="--data-root does not apply"):
        config(dataset="shapes3d", data_root=celeba)


def test_cli_refuses_shapes_options_for_celeba_and_unknown_folders(celeba, tmp_path):
    from lassi.regulator.cli import main

    out = tmp_path / "glow.safetensors"
    args = ["train-glow", "--data-root", celeba, "--image-size", "8", "--levels", "1", "--depth",
            "1", "--hidden", "8", "--steps", "1", "--batch-size", "2", "--quiet", "--out", out]  # fmt: skip
    result = invoke(main, [*args, "--n-train", "5"])
    assert result.exit_code == 2 and "--n-train" in result.output and not out.exists()
    result = invoke(main, [*args, "--correlate", "Male:Smiling:0.5"])
    assert result.exit_code == 2 and "--correlate" in result.output
    result = invoke(main, [a if a != celeba else tmp_path for a in args])
    assert result.exit_code == 2 and "--dataset" in result.output and not out.exists()


@pytest.mark.slow
def test_quiet_still_prints_the_result(chain, tmp_path):
    from lassi.producer.cli import main

    out = tmp_path / "b.safetensors"
    result = invoke(main, encode_args(chain, out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (5 samples; labels: object_hue)" in result.output
    assert "%|" not in result.output  # no progress bar


def test_checkpoint_of_other_options_is_not_discarded_silently(tmp_path, capsys):
    from lassi.spec.contract.torch_state import load_checkpoint, save_checkpoint

    path = tmp_path / "run.ckpt"
    save_checkpoint(path, tool="t", stage="verify", key="a", step=3, modules={})
    assert load_checkpoint(path, stage="verify", key="a", modules={})[0] == 3
    assert capsys.readouterr().err == ""
    assert load_checkpoint(path, stage="verify", key="b", modules={}) is None
    err = capsys.readouterr().err
    assert str(path) in err and "other options" in err and "afresh" in err


# ------------------------------------------------------ settings that cannot certify, up front


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--bounds", "hoeffding", "--n0", "200", "--delta", "0.05"], "sqrt(ln(2/alpha1)/(2 n0))"),
        (["--bounds", "hoeffding", "--n", "50", "--sigma", "0.1"], "q = q0"),
        (["--n0", "5"], "n0=5 can never certify"),
    ],
)
@pytest.mark.slow
def test_encode_refuses_settings_that_cannot_certify_before_loading_data(
    chain, tmp_path, extra, needle
):
    from lassi.producer.cli import main

    out = tmp_path / "b.safetensors"
    # a data root that does not exist: the refusal must come before any data is opened
    args = encode_args(chain, out, "--certify", *extra)
    args = [*args[:5], "--dataset", "folder", "--data-root", tmp_path / "absent", *args[5 + len(DATA) :]]
    result = invoke(main, args)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and needle in line and not out.exists()


def test_hoeffding_reasons_match_run_time_abstentions():
    from lassi.spec.contract.models.certificate import CenterSmoothingParams, never_certifies

    assert never_certifies(CenterSmoothingParams(n0=200, bounds="hoeffding")).startswith("n0=200")
    tight = CenterSmoothingParams(sigma=0.1, n0=2000, n=2000, bounds="hoeffding")
    assert "q = q0" in never_certifies(tight)
    assert never_certifies(CenterSmoothingParams(bounds="hoeffding")) is None
    assert never_certifies(CenterSmoothingParams()) is None


@pytest.mark.slow
def test_verify_warns_when_n_and_alpha_cannot_reach_any_r_cs(chain, tmp_path):
    from lassi.consumer.cli import main
    from lassi.consumer.verification import largest_radius, unreachable_warning

    # sigma_cls 0.5 (the chain's), n 10, alpha 0.001: alpha^(1/n) = 0.50 -> R_max ~ 0
    assert largest_radius(0.5, 10, 0.001) < 0.01
    out = tmp_path / "r.safetensors"
    result = CliRunner().invoke(
        main, [str(a) for a in ["verify", "--classifier", chain["classifier"], "--bundle",
                                chain["test"], "--n0", "10", "--n", "10", "--quiet", "--out", out]]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no sample can be certified fair" in result.stderr
    assert "Phi^-1(alpha^(1/n))" in result.stderr
    # the advice in numbers: the sigma_cls these r_CS need at this n, in stderr and report.md
    assert "needs sigma_cls >= r_CS / Phi^-1(best p_A bound) = " in result.stderr
    report_md = out.with_suffix(".md").read_text()
    assert "## Warnings" in report_md and "no sample can be certified fair" in report_md
    # R_max = 0.5 * Phi^-1(0.001^(1/2000)) ~ 1.35: a bundle with a smaller r_CS gets no warning
    r_max = largest_radius(0.5, 2000, 0.001)
    assert unreachable_warning(0.5, 2000, 0.001, np.array([r_max * 0.9, 5.0])) is None
    assert "no sample" in unreachable_warning(0.5, 2000, 0.001, np.array([r_max * 1.1, 5.0]))


# ------------------------------------------------------------------------------ --sigma auto


@pytest.mark.parametrize("with_val", [True, False])
@pytest.mark.slow
def test_sigma_auto_picks_the_sigma_its_sweep_table_shows(chain, tmp_path, with_val):
    from lassi.consumer.cli import main
    from lassi.consumer.sigma_sweep import choose
    from lassi.spec import ClassifierCard

    out = tmp_path / "c.safetensors"
    args = ["train", "--bundle", chain["train"], "--task", "object_hue", "--sigma", "auto",
            "--sigma-grid", "0.25,0.5,4", "--max-accuracy-loss", "0.05", "--sweep-n0", "20",
            "--sweep-n", "200", "--epochs", "2", "--quiet", "--out", out]  # fmt: skip
    if with_val:
        args += ["--val-bundle", chain["test"]]
    result = invoke(main, args)
    assert result.exit_code == 0, result.output
    table = [line for line in result.output.splitlines() if line.startswith("| ") and "---" not in line]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[1:]]
    assert [r[0] for r in rows] == ["0.25", "0.5", "4"]
    marked = [r[0] for r in rows if r[3] == "<-"]
    card = read_artifact(out, expect=ClassifierCard).meta
    assert len(marked) == 1 and float(marked[0]) == card.sigma_cls
    selection = card.sigma_selection
    assert selection.method in (("certified", "nothing_certified") if with_val else ("accuracy",))
    assert [row.sigma for row in selection.rows] == [0.25, 0.5, 4.0]
    assert choose(selection.rows, 0.05, with_val).sigma == card.sigma_cls
    for row, cells in zip(selection.rows, rows, strict=True):
        assert cells[1] == f"{100 * row.accuracy:.1f} %"
    assert ("accuracy only" in result.output) == (selection.method != "certified")
    # one accuracy figure: the chosen row's, named as in the table's header
    chosen = next(row for row in selection.rows if row.sigma == card.sigma_cls)
    named = "smoothed accuracy on --val-bundle" if with_val else "held-out accuracy under noise"
    assert f"| sigma_cls | {named} |" in result.output
    assert f"{named} {100 * chosen.accuracy:.1f} %" in result.output.split("chose sigma_cls")[1]
    assert "validation accuracy under noise" not in result.output
    assert (tmp_path / "c.sigma-sweep.png").stat().st_size > 0


def test_choose_prefers_certified_fairness_within_the_accuracy_loss():
    from lassi.consumer.sigma_sweep import choose
    from lassi.spec.contract.models import SigmaSweepRow

    rows = [SigmaSweepRow(sigma=1, accuracy=0.90, certified_fairness=0.2),
            SigmaSweepRow(sigma=2.5, accuracy=0.89, certified_fairness=0.6),
            SigmaSweepRow(sigma=10, accuracy=0.70, certified_fairness=0.9)]  # fmt: skip
    assert choose(rows, 0.02, certified=True).sigma == 2.5
    assert choose(rows, 0.005, certified=True).sigma == 1
    assert choose(rows, 0.02, certified=False).sigma == 2.5
    assert choose(rows, 0.5, certified=True).sigma == 10


@pytest.mark.slow
def test_report_shows_the_scale_of_the_representations(chain):
    from lassi.consumer.report import report_sidecars
    from lassi.consumer.verification import representation_scale
    from lassi.spec import VerificationReport

    z = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    scale = representation_scale(z, np.array([0, 1, 0]), np.array([1.0, 2.0, 3.0]),
                                 np.array([True, True, False]), np.array([0.5, 0.5, 0.7]),
                                 np.array([True, False, True]))  # fmt: skip
    assert scale.z_norm == 1.0 and scale.r_cs == 1.5 and scale.radius == 0.6
    assert scale.nearest_other_class == pytest.approx(np.sqrt(18))  # 5, sqrt(18), sqrt(18)
    meta = read_artifact(chain["report"], expect=VerificationReport).meta
    assert meta.scale is not None and meta.scale.z_norm > 0
    text = report_sidecars(chain["report"])["md"].read_text()
    assert "median norm of z" in text and "median r_CS" in text and "another class" in text


@pytest.mark.slow
def test_define_names_each_attributes_vector_kind(chain, celeba, tmp_path):
    """A binary attribute gets its one halves vector under the default --vectors pairs; define
    says so per attribute, as the report's scope does (it printed "pairs")."""
    from PIL import Image

    from lassi.regulator.cli import main

    rng = np.random.default_rng(0)  # distinct faces, so that the vector is not zero
    for image in sorted((celeba / "img_align_celeba").iterdir()):
        Image.fromarray(rng.integers(0, 256, (54, 44, 3), dtype=np.uint8)).save(image, quality=95)
    result = invoke(main, ["define", "--glow", chain["glow"], "--attribute", "Pale_Skin",
                           "--epsilon", "1", "--dataset", "celeba", "--data-root", celeba,
                           "--fidelity-images", "2", "--out", tmp_path / "s.safetensors"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 vectors (Pale_Skin: halves)" in result.output and "pairs" not in result.output


@pytest.mark.slow
def test_glow_and_encoder_bars_say_what_their_figures_are(chain, tmp_path, monkeypatch):
    """train-glow's bits/dim is a moving average (bpd_ema) and its throughput the latest
    step's (last_img_s); the encoder's loss terms are the latest batch's (batch_...)."""
    import lassi.producer.training as producer_training
    import lassi.regulator.training as regulator_training
    from factories import RecordingBar
    from lassi.producer.cli import main as producer
    from lassi.regulator.cli import main as regulator

    for module in (regulator_training, producer_training):
        monkeypatch.setattr(module, "tqdm", RecordingBar)
    RecordingBar.postfixes = []
    result = invoke(regulator, ["train-glow", *DATA, "--levels", "2", "--depth", "1", "--hidden",
                                "8", "--steps", "2", "--batch-size", "8", "--warmup", "1",
                                "--out", tmp_path / "g.safetensors"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert set(RecordingBar.postfixes[-1]) == {"bpd_ema", "last_img_s", "desc"}
    RecordingBar.postfixes = []
    result = invoke(producer, ["train", "--spec", chain["spec"], *DATA, "--task", "object_hue",
                               "--hidden", "16", "--k", "4", "--epochs", "1", "--batch-size", "200",
                               "--lambda-adv", "0.1", "--attack-points", "2",
                               "--out", tmp_path / "e.safetensors"])  # fmt: skip
    assert result.exit_code == 0, result.output
    terms = set(RecordingBar.postfixes[-1]) - {"desc"}
    assert terms and all(name.startswith("batch_") for name in terms), terms
