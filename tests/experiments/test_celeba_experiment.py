"""lassi-experiments celeba runs the paper's CelebA experiment end to end on a folder in the
official CelebA layout and a Glow trained on it: one spec per sensitive set, the method rows
(here the naive baseline and the data-augmentation baseline), the sigma_cls sweep, the endpoints
analysis; its results JSON holds every row's figures and each artifact records its method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factories import TEST_DATA, run, write_celeba_faces
from lassi.experiments import settings as settings_module
from lassi.experiments.cli import main
from lassi.regulator.cli import main as regulator
from lassi.spec import EncoderCard, RepresentationBundle, SimilaritySpec, read_artifact

pytestmark = pytest.mark.slow  # every test uses the module's trained Glow


@pytest.fixture(scope="module")
def celeba_glow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A miniature CelebA (official layout, 48/12/12 images) and a tiny Glow trained on it."""
    root = write_celeba_faces(tmp_path_factory.mktemp("celeba"))
    glow = root.parent / "glow.safetensors"
    run(regulator, ["train-glow", "--dataset", "celeba", "--data-root", str(root), "--image-size", "16",
                    "--levels", "2", "--depth", "1", "--hidden", "8", "--steps", "10", "--batch-size", "16",
                    "--warmup", "1", "--quiet", "--out", str(glow)])  # fmt: skip
    return root, glow


def _args(root: Path, glow: Path, out: Path, *extra: str) -> list[str]:
    return ["celeba", "--data-root", str(root), "--glow", str(glow), "--out", str(out), "--task", "Smiling",
            "--seeds", "0", "--test", "4", "--every", "2", "--epochs", "3", "--hidden", "64", "--k", "16",
            "--cert-n0", "2000", "--cert-n", "500", "--verify-n", "5000", "--consumer-epochs", "300",
            "--threads", "1", *extra]  # fmt: skip


def test_celeba_rows_sweep_and_recorded_methods(
    celeba_glow: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, glow = celeba_glow
    out = tmp_path / "experiments"
    args = _args(root, glow, out, "--sensitive", "Pale_Skin", "--methods", "naive", "augmentation",
                 "--sigmas", "0.25", "1", "--endpoints", "--spec-images", "32", "--max-train", "40")  # fmt: skip
    assert main(args) == 0
    (results,) = (out / "celeba").glob("results*.json")
    first = json.loads(results.read_text())
    assert first["command"].startswith("lassi-experiments celeba")
    assert [(r["sensitive"], r["method"]) for r in first["rows"]] == [("Pale_Skin", "naive"), ("Pale_Skin", "augmentation")]
    for row in first["rows"]:
        assert [p["sigma"] for p in row["sweep"]] == [0.25, 1.0]
        assert row["chosen"]["sigma"] in (0.25, 1.0)
        for point in row["sweep"]:
            (seed,) = point["seeds"]
            for name in ("accuracy", "certified_fairness", "certified_but_empirically_unfair"):
                assert 0.0 <= point[name] <= 1.0, (row["method"], name, point[name])
            assert point["certified_but_empirically_unfair"] <= point["certified_fairness"]
            # the figures are the consumer's verification report's, for 4 certified test images
            report = read_artifact(Path(seed["report"])).meta
            assert report.n_samples == 4 and report.endpoint_check.endpoints == 2
            assert (point["accuracy"], point["certified_fairness"]) == (
                report.summary.accuracy, report.summary.certified_fairness
            )
            assert seed["certified_empirically_unfair"] == report.endpoint_check.certified_empirically_unfair
    assert "| Pale_Skin | augmentation |" in first["markdown"]

    # the artifacts: one spec over Pale_Skin bound to the Glow; each encoder records its method
    spec = read_artifact(out / "celeba" / "spec-Pale_Skin-images32.safetensors", expect=SimilaritySpec, parents={"glow": glow})
    assert [a.name for a in spec.meta.attributes] == ["Pale_Skin"] and spec.meta.epsilon == 1.0
    assert spec.meta.data.n_samples == 32  # --spec-images: the first 32 train images
    cards = {
        row["method"]: read_artifact(Path(row["encoders"][0]), expect=EncoderCard).meta for row in first["rows"]
    }
    assert cards["augmentation"].training.augment == 10 and cards["naive"].training.augment == 0
    assert all(c.task == "Smiling" and c.loss.adv == 0 and c.loss.contr == 0 for c in cards.values())
    assert all(c.parents["similarity_spec"] == spec.sha256 for c in cards.values())
    assert all(c.training.n_train == 40 for c in cards.values())  # --max-train
    train = read_artifact(Path(first["rows"][0]["encoders"][0]).parent / "train.safetensors", expect=RepresentationBundle)
    assert train.meta.n_samples == 40 and not train.meta.certified
    (test,) = Path(first["rows"][1]["encoders"][0]).parent.glob("test*/test.safetensors")
    bundle = read_artifact(test, expect=RepresentationBundle)
    assert bundle.meta.certified and bundle.meta.endpoints == 2
    assert (bundle.meta.certificate.sigma, bundle.meta.certificate.n0, bundle.meta.certificate.n) == (0.65, 2000, 500)
    # every 2nd test image (the first is 000061.jpg), most of them with a certified center
    assert bundle.meta.data.dataset == "celeba" and bundle.meta.file_names[:2] == ["000061.jpg", "000063.jpg"]
    assert (bundle.tensors["r_cs"] > 0).sum() >= 2

    # a second invocation reuses every run and reports the same figures
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == stamps
    assert json.loads(results.read_text())["rows"] == first["rows"]

    # settings that differ from the folder's runs are refused, not mixed with them
    packaged = (Path(settings_module.__file__).parent / "settings.toml").read_text()
    line = "[celeba]\n"  # its epsilon is define's default (1.0): set another
    assert packaged.count(line) == 1
    other = tmp_path / "settings.toml"
    other.write_text(packaged.replace(line, line + "epsilon = 0.5\n"))
    assert main(["--settings", str(other), *args]) == 2
    assert "spec-Pale_Skin-images32.safetensors" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == stamps
    for line, added, name, setting in [  # each run file names the first setting that differs
        ("[celeba.encoder]\n", "lr = 0.01\n", "encoder.safetensors", "lr 0.001, this run asks for 0.01"),
        ("[celeba.center_smoothing]\n", "delta = 0.1\n", "test.safetensors", "center smoothing delta 0.05, this run asks for 0.1"),
        ("[celeba.randomized_smoothing]\n", "alpha = 0.01\n", "report-Smiling-sigma0.25-epochs300.safetensors",
         "randomized smoothing alpha 0.001, this run asks for 0.01"),
    ]:  # fmt: skip
        assert packaged.count(line) == 1
        other.write_text(packaged.replace(line, line + added))
        assert main(["--settings", str(other), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error:") and f"/{name}: was made with {setting};" in err[-1], err[-1]
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == stamps

    # settings whose sensitive sets are the ones run: the sweep figure, from the same runs
    line = 'sensitive_sets = ["Pale_Skin", "Young", "Blond_Hair", "Heavy_Makeup", "Pale_Skin+Young", "Pale_Skin+Young+Blond_Hair"]'
    assert packaged.count(line) == 1
    other.write_text(packaged.replace(line, 'sensitive_sets = ["Pale_Skin"]'))
    assert main(["--settings", str(other), *args]) == 0
    (figure,) = (out / "celeba").glob("celeba_sigma-*.png")
    assert figure.stat().st_size > 1000
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == stamps


def test_adversarial_rows_on_an_imported_glow(celeba_glow: tuple[Path, Path], tmp_path: Path) -> None:
    """The adversarial and adversarial + contrastive rows over a combined sensitive set, with the
    authors' lambda_adv override for Wearing_Earrings / Heavy_Makeup, on a Glow imported from a
    glow-pytorch checkpoint (it records no data set: the images are the --data-root's)."""
    root, _ = celeba_glow
    glow = tmp_path / "imported.safetensors"
    run(regulator, ["import-glow", str(TEST_DATA / "rosinality" / "affine_lu.state.safetensors"),
                    "--image-size", "16", "--out", str(glow)])  # fmt: skip
    out = tmp_path / "experiments"
    args = _args(root, glow, out, "--sensitive", "Heavy_Makeup", "Pale_Skin+Young", "--methods", "adversarial",
                 "adversarial+contrastive", "--sigmas", "1")  # fmt: skip
    args[args.index("Smiling")] = "Wearing_Earrings"
    assert main(args) == 0
    (results,) = (out / "celeba").glob("results*.json")
    rows = json.loads(results.read_text())["rows"]
    losses = {(r["sensitive"], r["method"]): (r["loss"]["adv"], r["loss"]["contr"]) for r in rows}
    assert losses == {
        ("Heavy_Makeup", "adversarial"): (0.25, 0.0),
        ("Heavy_Makeup", "adversarial+contrastive"): (0.25, 0.1),
        ("Pale_Skin+Young", "adversarial"): (0.05, 0.0),
        ("Pale_Skin+Young", "adversarial+contrastive"): (0.1, 0.1),
    }
    for row in rows:
        card = read_artifact(Path(row["encoders"][0]), expect=EncoderCard).meta
        assert (card.task, card.loss.adv, card.loss.contr) == ("Wearing_Earrings", *losses[row["sensitive"], row["method"]])
        assert 0.0 <= row["chosen"]["accuracy"] <= 1.0 and 0.0 <= row["chosen"]["certified_fairness"] <= 1.0
    spec = read_artifact(out / "celeba" / "spec-Pale_Skin+Young.safetensors", expect=SimilaritySpec, parents={"glow": glow})
    assert [a.name for a in spec.meta.attributes] == ["Pale_Skin", "Young"] and spec.meta.data.dataset == "celeba"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (["--sensitive", "Pale_Skin+Not_An_Attribute"], "Not_An_Attribute"),
        (["--sensitive", "Smiling+Young"], "holds the task"),
        (["--every", "0"], "--every"),
        (["--cert-n", "0"], "--cert-n"),
        (["--sigmas", "1", "1"], "--sigmas"),
    ],
)
def test_bad_options_are_one_line_errors(
    celeba_glow: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    change: list[str], needle: str,
) -> None:  # fmt: skip
    root, glow = celeba_glow
    out = tmp_path / "experiments"
    assert main(_args(root, glow, out, "--methods", "naive", *change)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and needle in err[-1]
    assert not list(out.rglob("*.safetensors"))


def test_a_folder_without_celeba_files_is_a_usage_error(
    celeba_glow: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, glow = celeba_glow
    (tmp_path / "empty").mkdir()
    assert main(_args(tmp_path / "empty", glow, tmp_path / "x")) == 2
    assert "list_attr_celeba" in capsys.readouterr().err


def test_a_link_farm_is_read_only_with_the_opt_in(
    celeba_glow: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Images that are links leaving --data-root are refused (exit 2, one line naming the link),
    and read with --allow-symlinks-outside-root (the experiment runs through)."""
    root, glow = celeba_glow
    farm = tmp_path / "farm"
    (farm / "img_align_celeba").mkdir(parents=True)
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        (farm / name).write_bytes((root / name).read_bytes())
    for image in sorted((root / "img_align_celeba").iterdir()):
        (farm / "img_align_celeba" / image.name).symlink_to(image)
    small = ("--sensitive", "Pale_Skin", "--methods", "naive", "--sigmas", "1", "--spec-images", "16",
             "--max-train", "16", "--test", "2")  # fmt: skip
    assert main(_args(farm, glow, tmp_path / "refused", *small)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "leads outside the data root" in err[-1], err[-1]
    assert "img_align_celeba/000001.jpg" in err[-1] and "--allow-symlinks-outside-root" in err[-1]
    assert not list((tmp_path / "refused").rglob("*.safetensors"))
    out = tmp_path / "allowed"
    assert main(_args(farm, glow, out, *small, "--allow-symlinks-outside-root")) == 0
    assert len(list((out / "celeba").glob("results*.json"))) == 1
