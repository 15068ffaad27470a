"""Randomized smoothing (Cohen et al., 2019) and the consumer classifier C_L."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import numpy as np
import pytest
import torch
from scipy import special
from scipy.stats import binom, binomtest, chi2_contingency, norm

from factories import WITHOUT_TORCH, python_child
from lassi.consumer.classifier import (
    LinearClassifier,
    MLPClassifier,
    export_classifier_onnx,
    make_classifier,
    train_classifier,
)
from lassi.consumer.onnx_runtime import onnx_logits_fn, ort_session
from lassi.consumer.randomized_smoothing import (
    ABSTAIN,
    Smooth,
    SmoothNumpy,
    lower_confidence_bound,
    radius_from_bound,
)
from lassi.spec.runtime.seeding import Stage, numpy_rng, torch_seed


def threshold_classifier(batch: torch.Tensor) -> torch.Tensor:
    """1-D base classifier: class 1 iff x > 0 (logits [−x, x])."""
    return torch.cat([-batch, batch], dim=1)


def threshold_classifier_numpy(batch: np.ndarray) -> np.ndarray:
    return np.concatenate([-batch, batch], axis=1)


def without_seconds(certificate) -> dict:
    fields = dataclasses.asdict(certificate)
    del fields["seconds"]
    return fields


# --- the bound and the radius ---------------------------------------------------------------


def expected_bound(n_a: int, n: int, alpha: float) -> float:
    """Clopper–Pearson lower bound via the inverse regularised incomplete beta function."""
    return 0.0 if n_a == 0 else float(special.betaincinv(n_a, n - n_a + 1, alpha))


def first_certifying_count(n: int, alpha: float) -> int:
    """Smallest n_A whose bound is ≥ 1/2: P(Beta(n_A, n − n_A + 1) ≤ 1/2) ≤ α (bisection)."""
    low, high = 1, n
    while low < high:
        mid = (low + high) // 2
        if special.betainc(mid, n - mid + 1, 0.5) <= alpha:
            high = mid
        else:
            low = mid + 1
    return low


GRID_N = [1, 2, 10, 100, 1000, 100_000]
GRID_ALPHA = [0.001, 0.01, 0.05]
GRID_SIGMA = [0.25, 1.0, 2.5]


@pytest.mark.parametrize("alpha", GRID_ALPHA)
@pytest.mark.parametrize("n", GRID_N)
def test_radius_matches_independent_formula(n: int, alpha: float) -> None:
    threshold = first_certifying_count(n, alpha)
    counts = {0, 1, n // 4, n // 2, (3 * n) // 4, n - 1, n, threshold - 1, threshold, threshold + 1}
    counts = sorted(c for c in counts if 0 <= c <= n)
    for n_a in counts:
        bound = expected_bound(n_a, n, alpha)
        assert lower_confidence_bound(n_a, n, alpha) == pytest.approx(bound, abs=1e-12)
        for sigma in GRID_SIGMA:
            radius = radius_from_bound(lower_confidence_bound(n_a, n, alpha), sigma)
            if bound < 0.5:
                assert radius is None, (n_a, n, alpha, bound)
            else:
                assert radius is not None
                assert abs(radius - sigma * special.ndtri(bound)) <= 1e-9
    # Right around the threshold: abstain just below it, certify from it on.
    if threshold <= n and expected_bound(threshold, n, alpha) >= 0.5:
        assert radius_from_bound(lower_confidence_bound(threshold - 1, n, alpha), 1.0) is None
        assert radius_from_bound(lower_confidence_bound(threshold, n, alpha), 1.0) is not None


def test_largest_radius_at_reference_settings() -> None:
    # at n = 1e5, α = 0.001 the largest radius is σ·Φ⁻¹(0.001^(1/n)) ≈ 3.81 σ (all draws agree).
    assert radius_from_bound(lower_confidence_bound(100_000, 100_000, 0.001), 1.0) == pytest.approx(3.81, abs=0.01)
    assert lower_confidence_bound(100_000, 100_000, 0.001) == pytest.approx(0.001 ** (1 / 1e5))


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        lower_confidence_bound(5, 4, 0.01)
    with pytest.raises(ValueError):
        lower_confidence_bound(1, 4, 0.0)
    smooth = Smooth(threshold_classifier, 2, sigma=1.0)
    with pytest.raises(ValueError):
        smooth.certify(np.zeros(1), n0=0, n=10, alpha=0.01, seed=0, sample_id=0)
    with pytest.raises(ValueError):
        Smooth(threshold_classifier, 3, sigma=1.0).certify(np.zeros(1), 10, 10, 0.01, 0, 0)


# --- empirical soundness ----------------------------------------------------------------------


SOUNDNESS_ALPHA = 0.01
SOUNDNESS_SIGMA = 0.5
SOUNDNESS_OFFSETS = np.array([-1.0, -0.5, -0.25, 0.25, 0.5, 1.0]) * SOUNDNESS_SIGMA


def soundness_run(smooth, n_samples: int) -> tuple[int, int, float]:
    """(violations, certified, exact expected violations) of CERTIFY on the 1-D threshold
    classifier, where g(x0) = [x0 > 0] has exact p_A = Φ(|x0|/σ) and true radius |x0|."""
    n0, n = 100, 1000
    violations = certified = 0
    for sample_id in range(n_samples):
        x0 = float(SOUNDNESS_OFFSETS[sample_id % len(SOUNDNESS_OFFSETS)])
        cert = smooth.certify(np.array([x0]), n0, n, SOUNDNESS_ALPHA, seed=7, sample_id=sample_id)
        if cert.prediction == ABSTAIN:
            continue
        certified += cert.radius > 0
        violations += cert.prediction != int(x0 > 0) or cert.radius > abs(x0)
    # Exact miscoverage of the bound for each offset: P(bound(n_A) > p_A), n_A ~ Bin(n, p_A).
    n_a = np.arange(n + 1)
    bounds = np.array([expected_bound(int(c), n, SOUNDNESS_ALPHA) for c in n_a])
    expected = 0.0
    for x0 in SOUNDNESS_OFFSETS:
        p_a = norm.cdf(abs(x0) / SOUNDNESS_SIGMA)
        expected += binom.pmf(n_a, n, p_a)[bounds > p_a].sum() * n_samples / len(SOUNDNESS_OFFSETS)
    return violations, certified, expected


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.slow
def test_empirical_soundness(backend: str) -> None:
    n_samples = 3000
    if backend == "torch":
        smooth = Smooth(threshold_classifier, 2, sigma=SOUNDNESS_SIGMA)
    else:
        smooth = SmoothNumpy(threshold_classifier_numpy, 2, sigma=SOUNDNESS_SIGMA)
    violations, certified, expected = soundness_run(smooth, n_samples)
    # Theory: every certificate is wrong with probability ≤ α (exactly ≈ 0.9 α here).
    assert expected <= SOUNDNESS_ALPHA * n_samples
    # The observed rate is not significantly above α (a literal "fraction ≤ α" would fail by
    # chance for some seeds, since the exact rate is close to α) ...
    assert binomtest(violations, n_samples, SOUNDNESS_ALPHA, alternative="greater").pvalue > 1e-3
    # ... and agrees with the exact expectation (a too-loose bound would show up here).
    assert binomtest(violations, n_samples, expected / n_samples).pvalue > 1e-3
    # Not trivially sound: nearly every sample certifies with a positive radius.
    assert certified >= 0.95 * n_samples


@pytest.mark.slow
def test_soundness_check_has_power() -> None:
    """The check above rejects the unsound point estimate p̂ = n_A / n in place of the bound."""
    smooth = SmoothNumpy(threshold_classifier_numpy, 2, sigma=SOUNDNESS_SIGMA)
    n_samples, n, violations = 600, 1000, 0
    for sample_id in range(n_samples):
        x0 = float(SOUNDNESS_OFFSETS[sample_id % len(SOUNDNESS_OFFSETS)])
        counts = smooth.sample_counts(np.array([x0]), n, 7, sample_id, Stage.ESTIMATION)
        p_hat = counts[int(x0 > 0)] / n
        violations += SOUNDNESS_SIGMA * norm.ppf(p_hat) > abs(x0)
    assert binomtest(violations, n_samples, SOUNDNESS_ALPHA, alternative="greater").pvalue < 1e-6


# --- PREDICT ----------------------------------------------------------------------------------


def test_predict_abstains_on_the_boundary_and_agrees_with_certify() -> None:
    smooth = Smooth(threshold_classifier, 2, sigma=1.0)
    assert smooth.predict(np.zeros(1), n=2000, alpha=0.001, seed=0, sample_id=0) == ABSTAIN
    for sample_id, x0 in enumerate([-2.0, -0.5, 0.5, 2.0]):
        z = np.array([x0])
        predicted = smooth.predict(z, n=2000, alpha=0.001, seed=0, sample_id=sample_id)
        assert predicted == int(x0 > 0)
        assert smooth.predict(z, n=2000, alpha=0.001, seed=0, sample_id=sample_id) == predicted
        certificate = smooth.certify(z, 200, 2000, 0.001, seed=0, sample_id=sample_id)
        assert certificate.prediction == predicted


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_predict_is_the_binomial_test_of_the_top_two_counts(backend: str) -> None:
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    if backend == "torch":
        smooth = Smooth(lambda b: b @ weight.T, 3, sigma=1.0)
    else:
        smooth = SmoothNumpy(lambda b: b @ weight.numpy().T, 3, sigma=1.0)
    for sample_id, z in enumerate([[0.3, 0.31], [1.0, 0.0], [0.0, 0.05], [0.2, 0.2]]):
        counts = smooth.sample_counts(np.array(z), 500, 3, sample_id, Stage.ESTIMATION)
        top, second = np.sort(counts)[::-1][:2]
        p_value = binomtest(int(top), int(top + second), 0.5).pvalue
        expected = ABSTAIN if p_value > 0.01 else int(np.argmax(counts))
        assert smooth.predict(np.array(z), 500, 0.01, seed=3, sample_id=sample_id) == expected


# --- streams and reproducibility --------------------------------------------------------------


class Recorder:
    """A base classifier that records every batch it sees."""

    def __init__(self, numpy: bool = False) -> None:
        self.batches: list[np.ndarray] = []
        self.numpy = numpy

    def __call__(self, batch):
        batch = batch.numpy() if isinstance(batch, torch.Tensor) else batch
        self.batches.append(batch.copy())
        return np.zeros((len(batch), 2)) if self.numpy else torch.zeros(len(batch), 2)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_selection_and_estimation_draw_fresh_noise(backend: str) -> None:
    recorder = Recorder(numpy=backend == "numpy")
    smooth = (
        Smooth(recorder, 2, sigma=1.0, batch_size=1000)
        if backend == "torch"
        else SmoothNumpy(recorder, 2, sigma=1.0, batch_size=1000)
    )
    smooth.certify(np.zeros(3), n0=50, n=80, alpha=0.01, seed=0, sample_id=0)
    selection, estimation = recorder.batches
    assert selection.shape == (50, 3) and estimation.shape == (80, 3)
    assert not np.isin(selection, estimation).any()
    # Noise is N(0, σ²): plausible moments, and another sample id gives other draws.
    assert abs(estimation.std() - 1.0) < 0.2
    smooth.certify(np.zeros(3), n0=50, n=80, alpha=0.01, seed=0, sample_id=1)
    assert not np.isin(recorder.batches[2], selection).any()
    smooth.certify(np.zeros(3), n0=50, n=80, alpha=0.01, seed=0, sample_id=0)
    assert np.array_equal(recorder.batches[4], selection)
    assert np.array_equal(recorder.batches[5], estimation)


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_noise_is_the_documented_stream_in_chunk_order(backend: str, monkeypatch) -> None:
    """Many small (prefetched) chunks reproduce serial draws from the stage's generator."""
    import lassi.consumer.randomized_smoothing as rs

    monkeypatch.setattr(rs, "NOISE_CHUNK_ELEMENTS", 300)  # 100 rows of k = 3 per chunk
    recorder = Recorder(numpy=backend == "numpy")
    z = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    if backend == "torch":
        Smooth(recorder, 2, sigma=0.7, batch_size=64).sample_counts(z, 1050, 4, 8, Stage.ESTIMATION)
        generator = torch.Generator().manual_seed(torch_seed(4, 8, Stage.ESTIMATION))
        chunks = [torch.empty(r, 3).normal_(0.0, 0.7, generator=generator) for r in [100] * 10]
        chunks.append(torch.empty(50, 3).normal_(0.0, 0.7, generator=generator))
        expected = torch.cat(chunks).numpy() + z
    else:
        SmoothNumpy(recorder, 2, sigma=0.7, batch_size=64).sample_counts(
            z, 1050, 4, 8, Stage.ESTIMATION
        )
        rng = numpy_rng(4, 8, Stage.ESTIMATION)
        sizes = [100] * 10 + [50]
        expected = np.concatenate(
            [rng.standard_normal((r, 3), dtype=np.float32) * np.float32(0.7) + z for r in sizes]
        )
    assert max(len(b) for b in recorder.batches) == 64
    assert np.array_equal(np.concatenate(recorder.batches), expected)


def make_linear_smooth(kind: str, batch_size: int):
    model = make_classifier("linear", 6, 4, seed=1)
    if kind == "logit":
        return Smooth.for_linear_head(model, sigma=0.8, batch_size=batch_size)
    if kind == "numpy":
        weight, bias = model.weight.detach().numpy(), model.bias.detach().numpy()
        return SmoothNumpy(lambda b: b @ weight.T + bias, 4, sigma=0.8, batch_size=batch_size)
    return Smooth(model, 4, sigma=0.8, batch_size=batch_size)


REPRO_Z = [0.3, -0.2, 0.5, 0.1, 0.0, -0.4]


@pytest.mark.parametrize("kind", ["torch", "logit", "numpy"])
def test_certificates_do_not_depend_on_batch_size(kind: str) -> None:
    z = np.array(REPRO_Z, dtype=np.float32)
    results = []
    for batch_size in [1, 7, 256, 100_000]:
        smooth = make_linear_smooth(kind, batch_size)
        results.append(without_seconds(smooth.certify(z, 300, 3000, 0.01, seed=5, sample_id=9)))
    assert all(result == results[0] for result in results)
    assert results[0]["count"] > 0


@pytest.mark.slow
def test_certificates_identical_in_a_subprocess() -> None:
    z = np.array(REPRO_Z, dtype=np.float32)
    here = {
        kind: without_seconds(make_linear_smooth(kind, 64).certify(z, 300, 3000, 0.01, 5, 9))
        for kind in ["torch", "logit", "numpy"]
    }
    script = textwrap.dedent(
        """
        import dataclasses, json
        import numpy as np
        from test_randomized_smoothing import REPRO_Z, make_linear_smooth
        z = np.array(REPRO_Z, dtype=np.float32)
        out = {}
        for kind in ["torch", "logit", "numpy"]:
            cert = make_linear_smooth(kind, 1000).certify(z, 300, 3000, 0.01, 5, 9)
            fields = dataclasses.asdict(cert)
            del fields["seconds"]
            fields["radius"], fields["p_lower"] = cert.radius.hex(), cert.p_lower.hex()
            out[kind] = fields
        print(json.dumps(out))
        """
    )
    there = json.loads(python_child(script).strip().splitlines()[-1])
    for kind, fields in here.items():
        assert there[kind]["prediction"] == fields["prediction"]
        assert there[kind]["count"] == fields["count"]
        assert float.fromhex(there[kind]["radius"]) == fields["radius"]
        assert float.fromhex(there[kind]["p_lower"]) == fields["p_lower"]


# --- the linear-head shortcut (noise in logit space) ------------------------------------------


@pytest.mark.parametrize(("k", "num_classes"), [(8, 3), (2, 4)])
def test_logit_space_noise_has_the_right_covariance(k: int, num_classes: int) -> None:
    model = make_classifier("linear", k, num_classes, seed=2)
    smooth = Smooth.for_linear_head(model, sigma=1.0)
    factor = smooth._logit_noise_factor.double()
    weight = model.weight.detach().double()
    assert torch.allclose(factor.T @ factor, weight @ weight.T, atol=1e-5)
    assert factor.shape == (min(k, num_classes), num_classes)


def test_logit_space_counts_match_input_space_counts_in_distribution() -> None:
    torch.manual_seed(0)
    model = LinearClassifier(8, 3)
    plain = Smooth(model, 3, sigma=1.5)
    logit = Smooth.for_linear_head(model, sigma=1.5)
    p_values = []
    for sample_id in range(4):
        z = 0.3 * torch.randn(8)
        counts_plain = plain.sample_counts(z, 40_000, 0, sample_id, Stage.ESTIMATION)
        counts_logit = logit.sample_counts(z, 40_000, 0, sample_id, Stage.ESTIMATION)
        assert (counts_plain > 2000).sum() >= 2  # several classes in play
        table = np.stack([counts_plain, counts_logit])
        p_values.append(chi2_contingency(table[:, table.sum(axis=0) > 0]).pvalue)
    assert min(p_values) > 1e-3 / len(p_values)
    # Power: a head with noise 10 % too large is told apart from the plain path.
    wrong = Smooth.for_linear_head(model, sigma=1.65)
    z = 0.3 * torch.randn(8)
    table = np.stack(
        [
            plain.sample_counts(z, 40_000, 0, 99, Stage.ESTIMATION),
            wrong.sample_counts(z, 40_000, 0, 99, Stage.ESTIMATION),
        ]
    )
    assert chi2_contingency(table[:, table.sum(axis=0) > 0]).pvalue < 1e-3


def test_logit_space_certificate_is_consistent() -> None:
    model = make_classifier("linear", 16, 5, seed=3)
    smooth = Smooth.for_linear_head(model, sigma=0.5)
    z = 3 * model.weight[2].detach()
    cert = smooth.certify(z, 500, 20_000, 0.001, seed=0, sample_id=0)
    assert cert.prediction == 2
    assert cert.radius == radius_from_bound(lower_confidence_bound(cert.count, 20_000, 0.001), 0.5)


# --- classifier training and ONNX -------------------------------------------------------------


def separable_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=generator)
    means = 4.0 * torch.eye(3, 12)
    return means[y] + 0.3 * torch.randn(n, 12, generator=generator), y


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_training_learns_under_noise_and_is_deterministic(kind: str) -> None:
    z, y = separable_data(3000, 0)
    z_val, y_val = separable_data(600, 1)
    histories, states = [], []
    for _ in range(2):
        model = make_classifier(kind, 12, 3, hidden=32, seed=4)
        history = train_classifier(
            model,
            z,
            y,
            sigma=1.0,
            epochs=2,
            lr=1e-2,
            seed=4,
            z_val=z_val,
            y_val=y_val,
            progress=False,
        )
        histories.append(history)
        states.append({name: t.clone() for name, t in model.state_dict().items()})
    history = histories[0]
    assert history["epoch"] == [1, 2]
    assert history["val_accuracy_noisy"][-1] > 0.9
    assert history["val_accuracy_clean"][-1] > 0.97
    assert history["loss"][-1] < history["loss"][0]
    assert histories[1]["loss"] == history["loss"]
    assert all(torch.equal(states[0][name], states[1][name]) for name in states[0])
    # The trained classifier certifies a clean class-0 point under σ = 1.
    smooth = Smooth(model, 3, sigma=1.0)
    cert = smooth.certify(4.0 * torch.eye(3, 12)[0], 200, 2000, 0.001, seed=0, sample_id=0)
    assert cert.prediction == 0 and cert.radius > 0.5


@pytest.mark.parametrize("kind", ["linear", "mlp"])
@pytest.mark.slow
def test_onnx_export_matches_torch(kind: str, tmp_path) -> None:
    model = make_classifier(kind, 10, 4, hidden=16, seed=5)
    path = export_classifier_onnx(model, tmp_path / "classifier.onnx", k=10)
    session, provider = ort_session(path, prefer_gpu=False)
    assert provider == "CPUExecutionProvider"
    batch = torch.randn(37, 10)  # another batch size than the export example
    expected = model(batch).detach().numpy()
    assert np.abs(onnx_logits_fn(session)(batch.numpy()) - expected).max() <= 1e-5
    assert [path.name] == [p.name for p in tmp_path.iterdir()]  # weights inside the file


@pytest.mark.slow
def test_torch_free_numpy_path(tmp_path) -> None:
    """SmoothNumpy + onnxruntime run with torch unimportable and agree with the in-process run.

    torch is blocked by a meta-path finder: ``sys.modules["torch"] = None`` would break scipy
    itself (scipy's array-API helpers look torch up in sys.modules and call getattr on it).
    """
    model = make_classifier("mlp", 6, 3, hidden=8, seed=6)
    path = export_classifier_onnx(model, tmp_path / "c.onnx", k=6)
    z = [0.5, -0.1, 0.2, 0.0, 0.3, -0.6]
    session, _ = ort_session(path)
    expected = SmoothNumpy(onnx_logits_fn(session), 3, sigma=0.5).certify(
        np.array(z), 100, 2000, 0.01, 1, 2
    )
    script = WITHOUT_TORCH + textwrap.dedent(
        f"""
        import numpy as np
        from lassi.consumer.onnx_runtime import onnx_logits_fn, ort_session
        from lassi.consumer.randomized_smoothing import SmoothNumpy, lower_confidence_bound
        session, provider = ort_session({str(path)!r}, prefer_gpu=True)
        smooth = SmoothNumpy(onnx_logits_fn(session), 3, sigma=0.5)
        cert = smooth.certify(np.array({z!r}), 100, 2000, 0.01, 1, 2)
        assert lower_confidence_bound(5, 10, 0.1) > 0
        assert "torch" not in sys.modules
        print(cert.prediction, cert.count, cert.radius.hex(), provider)
        """
    )
    prediction, count, radius, provider = python_child(script).split()
    assert int(prediction) == expected.prediction and int(count) == expected.count
    assert float.fromhex(radius) == expected.radius
    assert provider in {"CPUExecutionProvider", "CUDAExecutionProvider"}


def test_mlp_classifier_shapes() -> None:
    model = MLPClassifier(5, 7, hidden=11)
    assert model(torch.zeros(3, 5)).shape == (3, 7)
    assert (model.k, model.num_classes, model.hidden) == (5, 7, 11)
