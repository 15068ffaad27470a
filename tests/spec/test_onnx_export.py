"""The one checked ONNX export (lassi.spec.contract.onnx_check.export_checked_onnx) and its users."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from factories import WITHOUT_TORCH, python_child, run
from lassi.consumer.classifier import make_classifier
from lassi.consumer.cli import main as consumer
from lassi.spec import RepresentationBundle, read_artifact, sha256_file
from lassi.spec.contract.onnx_check import export_checked_onnx, load_checked_onnx, onnx_card

pytestmark = pytest.mark.slow  # every test exports and runs ONNX models


def test_export_writes_card_and_returns_the_measured_difference(tmp_path: Path) -> None:
    model = make_classifier("mlp", 5, 3, hidden=8, seed=1).eval()
    z = np.random.default_rng(3).normal(size=(9, 5)).astype(np.float32)
    path = tmp_path / "c.onnx"
    error = export_checked_onnx(
        model,
        (torch.zeros(2, 5),),
        path,
        inputs=["z"],
        outputs=["logits"],
        card={"kind": "test", "k": 5},
        compare=(z,),
    )
    graph = load_checked_onnx(path, inputs={"z": 2}, outputs={"logits": 2})
    card = onnx_card(graph)
    assert (card["kind"], card["k"]) == ("test", 5)
    import onnxruntime as ort

    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"z": z})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(z)).numpy()
    assert error == float(np.abs(got - want).max())
    assert [p.name for p in tmp_path.iterdir()] == ["c.onnx"]


def test_refused_export_leaves_no_file(tmp_path: Path) -> None:
    model = make_classifier("linear", 4, 2, seed=0).eval()
    with pytest.raises(RuntimeError, match="onnxruntime differs from torch"):
        # a negative tolerance refuses any comparison, however close
        export_checked_onnx(
            model, (torch.zeros(2, 4),), tmp_path / "c.onnx", inputs=["z"], outputs=["logits"],
            tolerance=-1.0,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_consumer_export_and_torch_free_predict(chain: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "classifier.onnx"
    out = run(consumer, ["export-onnx", "--classifier", str(chain["classifier"]), "--out", str(path)])
    assert "max |onnxruntime - torch|" in out
    card = onnx_card(load_checked_onnx(path, inputs={"z": 2}, outputs={"logits": 2}))
    assert card["kind"] == "classifier_onnx" and card["sigma_cls"] == 0.5
    assert card["parents"]["classifier"] == sha256_file(chain["classifier"])
    # ``predict`` runs with onnxruntime alone: torch cannot be imported in this process
    script = WITHOUT_TORCH + textwrap.dedent(
        f"""
        from click.testing import CliRunner
        from lassi.consumer.cli import main
        result = CliRunner().invoke(main, ["predict", "--onnx", {str(path)!r}, "--bundle",
                                           {str(chain["test"])!r}, "--n", "200", "--json"])
        assert result.exit_code == 0, result.output
        assert "torch" not in sys.modules
        print(result.stdout)
        """
    )
    rows = json.loads(python_child(script))
    ids = read_artifact(chain["test"], expect=RepresentationBundle).tensors["ids"]
    assert [row["id"] for row in rows] == ids.tolist()


def test_predict_reads_the_onnx_file_once_and_runs_those_bytes(
    chain: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No second read: a file swapped after the checks is never what onnxruntime runs."""
    import onnxruntime as ort

    import lassi.spec.contract.files as files

    path = tmp_path / "classifier.onnx"
    run(consumer, ["export-onnx", "--classifier", str(chain["classifier"]), "--out", str(path)])
    reads: list[str] = []
    sessions: list[object] = []
    real_read, real_session = files.read_file, ort.InferenceSession

    def counting_read(where, *args, **kwargs):
        reads.append(str(where))
        return real_read(where, *args, **kwargs)

    def recording_session(model, *args, **kwargs):
        sessions.append(model)
        return real_session(model, *args, **kwargs)

    monkeypatch.setattr(files, "read_file", counting_read)
    monkeypatch.setattr("lassi.spec.contract.onnx_check.read_file", counting_read)
    monkeypatch.setattr(ort, "InferenceSession", recording_session)
    run(consumer, ["predict", "--onnx", str(path), "--bundle", str(chain["test"]), "--n", "50"])
    assert reads.count(str(path)) == 1
    assert len(sessions) == 1 and isinstance(sessions[0], bytes)
    assert sessions[0] == path.read_bytes()
