"""Many attribute vectors (m = 49, one per pair of orientation values): training, center
smoothing and the ONNX base function work on an m-dimensional t (paper Sec. 4.2-4.3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from factories import similarity_set
from lassi.producer.base_function import BaseFunction, load_encoder
from lassi.producer.encode import encode_split
from lassi.producer.losses import random_attack
from lassi.producer.training import EncoderTrainConfig, train_encoder
from lassi.regulator.data_config import DatasetConfig
from lassi.regulator.encoders import LatentMLP
from lassi.spec import CenterStatus, LossWeights, read_artifact
from lassi.spec.contract.models import CenterSmoothingParams
from lassi.spec.runtime.center_smoothing import CenterSmoothing

M = 49
DATA = DatasetConfig(image_size=8, n_train=96, n_val=32, n_test=16)
EPSILON = 0.5  # small enough that n = 1000 draws can certify (q < 1, step 3)
PARAMS = CenterSmoothingParams(sigma=0.65, epsilon=EPSILON, n0=1000, n=1000, delta=0.1)
BATCH = 1000


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The m = 49 spec and a latent-MLP encoder trained one epoch with the random attack."""
    folder = tmp_path_factory.mktemp("many")
    sim = similarity_set(M, epsilon=EPSILON)
    config = EncoderTrainConfig(
        hidden=[32], k=8, task="object_hue", epochs=1, batch_size=32, data=DATA,
        loss=LossWeights(adv=0.1, contr=0.1, delta_contr=1.0, attack_points=6),
    )  # fmt: skip
    encoder = train_encoder(config, sim, folder / "encoder.safetensors", progress=False)
    return sim, encoder, folder


def test_training_step_with_49_vectors(trained: tuple) -> None:
    sim, encoder, _ = trained
    card = read_artifact(encoder).meta
    assert card.training.n_train == DATA.n_train and sim.m == M
    base, _, _ = load_encoder(encoder, sim)
    assert base.uses_affine_trick and base.vectors.shape == (M, sim.glow.latent_dim)
    weights = [p for p in base.parameters()]
    assert all(bool(torch.isfinite(p).all()) for p in weights)
    # The attack's points lie in the 49-dimensional ε-ball: z_adv − z = t A with ||t|| ≤ ε.
    z = torch.randn(5, sim.glow.latent_dim)
    z_adv = random_attack(base, z, sim.epsilon, 20, torch.Generator().manual_seed(0))
    t = torch.linalg.lstsq(sim.vectors.T.double(), (z_adv - z).T.double()).solution.T
    assert t.shape == (5, M)
    assert float(torch.linalg.vector_norm(t, dim=1).max()) <= sim.epsilon * (1 + 1e-4)
    assert float(torch.linalg.vector_norm(t, dim=1).min()) > 0.5 * sim.epsilon


def test_affine_attack_matches_plain_attack_with_49_vectors() -> None:
    torch.manual_seed(0)
    mlp = LatentMLP(60, (16, 8), 6).double()
    mlp(torch.randn(64, 60, dtype=torch.float64))  # non-trivial BatchNorm statistics
    vectors = torch.randn(M, 60, dtype=torch.float64)
    z = torch.randn(7, 60, dtype=torch.float64)
    plain = BaseFunction(mlp, vectors, affine_trick=False)
    want = random_attack(plain, z, 1.0, 30, torch.Generator().manual_seed(1))
    got = random_attack(BaseFunction(mlp, vectors), z, 1.0, 30, torch.Generator().manual_seed(1))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_certify_with_49_vectors(trained: tuple) -> None:
    sim, encoder, folder = trained
    out = folder / "test.safetensors"
    encode_split(
        sim, encoder, DATA, "test", out, limit=2, certify=PARAMS, progress=False, batch_size=BATCH
    )
    bundle = read_artifact(out)
    assert bundle.meta.certified and bundle.meta.n_samples == 2
    base, _, _ = load_encoder(encoder, sim)
    plain = BaseFunction(base.encoder, sim.vectors, affine_trick=False).eval()
    z_g = bundle_latents(sim, bundle.tensors["ids"], folder)
    for i, sample_id in enumerate(bundle.tensors["ids"]):
        # the affine trick (m x h per draw) against every draw through the whole MLP
        smoother = CenterSmoothing(plain.for_latent(z_g[i]), M, PARAMS, batch_size=BATCH)
        reference = smoother.certify(0, int(sample_id))
        np.testing.assert_allclose(bundle.tensors["z_cs"][i], reference.center, atol=1e-4)
        assert bundle.tensors["r_cs"][i] == pytest.approx(reference.r_cs, rel=1e-3, abs=1e-6)
        assert bundle.tensors["status"][i] == reference.status
    assert (bundle.tensors["status"] == CenterStatus.CERTIFIED).all()
    assert (bundle.tensors["r_cs"] > 0).all()


def bundle_latents(sim, ids: np.ndarray, folder: Path) -> torch.Tensor:
    from lassi.producer.latents import glow_latents_of
    from lassi.regulator.data_config import make_source

    return glow_latents_of(sim, make_source(DATA), DATA, ids, folder / ".cache", progress=False).z


@pytest.mark.slow
def test_onnx_base_function_with_49_vectors(trained: tuple) -> None:
    import onnxruntime as ort

    from lassi.producer.onnx_export import export_producer_onnx

    sim, encoder, folder = trained
    written = dict(export_producer_onnx(sim, encoder, folder / "onnx"))
    session = ort.InferenceSession(
        str(folder / "onnx" / "base_function.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.shape[1] for i in session.get_inputs()] == [sim.glow.latent_dim, M]
    base, _, _ = load_encoder(encoder, sim)
    rng = np.random.default_rng(0)
    z_g = rng.normal(size=(4, sim.glow.latent_dim)).astype(np.float32)
    t = rng.normal(size=(4, M)).astype(np.float32) * 0.3
    got = session.run(None, {"z_g": z_g, "t": t})[0]
    with torch.no_grad():
        want = base(torch.from_numpy(z_g), torch.from_numpy(t)).numpy()
        affine = np.concatenate(
            [base.for_latent(torch.from_numpy(z_g[i]))(torch.from_numpy(t[i : i + 1])) for i in range(4)]
        )
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    np.testing.assert_allclose(affine, want, rtol=0, atol=1e-4)
    assert len(written) == 2
