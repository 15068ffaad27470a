"""Center smoothing of the producer's encoder along the latent similarity set.

LASSI (paper Sec. 4.3) smooths f(t) = E_L(z_G + Σ_i t_i a_i) (or E_L(D_G(...)) for an image
encoder) at t = 0 with Gaussian noise t ~ N(0, σ² I_m) in the m-dimensional attribute space, using
center smoothing (Kumar & Goldstein, 2021, "Center smoothing: certified robustness for networks
with structured outputs", Algorithms 1-2). With probability ≥ 1 − α1 − α2, every t' with
||t'||₂ ≤ ε has a smoothed output within r_CS of the returned center ẑ. The steps:

1. n0 *selection* draws; the center ẑ is the draw with the smallest median distance to the others
   (a β = 2 approximate minimum enclosing ball of half the mass); r̂ = that median distance.
2. n0 *fresh* draws; p̂ = fraction within r̂ of ẑ; abstain unless the lower confidence bound on
   P(||f(t) − ẑ|| ≤ r̂) reaches 1/2 − Δ. ``bounds="hoeffding"`` (Kumar & Goldstein):
   Δ1 = sqrt(ln(2/α1) / (2 n0)), Δ2 = 1/2 − (p̂ − Δ1), abstain unless max(Δ1, Δ2) ≤ Δ.
   ``bounds="exact"``: the one-sided Clopper–Pearson bound at level α1 must be ≥ 1/2 − Δ.
3. q0 = Φ(Φ⁻¹(1/2 + Δ) + ε/σ): the probability a radius around ẑ must hold under t ~ N(0, σ²I)
   so that it holds with probability > 1/2 under every shift ||t'|| ≤ ε (Gaussian shift bound).
4. n *fresh* distances X_1..X_n; R̂ = an order statistic X_(k) that is ≥ the q0-quantile ξ of the
   distance with probability ≥ 1 − α2 (an interpolated quantile is not conservative);
   r_CS = (1 + β) R̂. ``hoeffding``: k = ⌈q n⌉ with q = q0 + sqrt(ln(1/α2) / (2 n)), abstain if
   q > 1. ``exact``: k = the smallest rank with P(Binomial(n, q0) ≥ k) ≤ α2, because
     X_(k) < ξ iff at least k of the X_i fall below ξ, and P(X_i < ξ) ≤ q0 by definition of ξ,
     so #{X_i < ξ} is a Binomial(n, P(X < ξ)) count, stochastically ≤ Binomial(n, q0), and
     P(X_(k) < ξ) ≤ P(Binomial(n, q0) ≥ k) ≤ α2 (distribution-free, ties included).
   Exact settings that can never certify (even p̂ = 1 fails step 2; no k ≤ n qualifies) are
   refused when the parameters are built, before any draw.

Step 2, ``abstain_test="sequential"`` (optional; the default ``"fixed"`` is the above): the same
null hypothesis P(d ≤ r̂) < 1/2 − Δ at the same level α1, tested with an anytime-valid confidence
sequence (:mod:`lassi.spec.runtime.confidence_sequence`, the beta-binomial mixture martingale M_t) on the
first t draws of the same ABSTAIN_TEST stream, looked at after t = 100, 111, 123, … (× 1.1) and
n0 draws. It passes at the first look where M_t(1/2 − Δ) ≥ 1/α1 with p̂ > 1/2 − Δ; it abstains
at the first look where M_t(1/2 − Δ) ≥ 1/α1 with p̂ < 1/2 − Δ (futility) or at n0. By Ville's
inequality a ball holding less than 1/2 − Δ of the mass passes with probability ≤ α1 whatever
the stopping time, so the certificate keeps its 1 − α1 − α2 guarantee; steps 1, 3 and 4 are
unchanged, and a ball that clearly holds about half the mass (p ≈ 1/2, as r̂ is a median)
passes after ~1.3-2 × 10³ draws instead of n0. The prior is Beta(100, 100): r̂ is the median of
the selection distances, so p is near 1/2 by construction (any prior fixed before the draws keeps
the guarantee; this one only makes the test sharpest there).

Randomness: each stage draws from its own per-sample stream ``numpy_rng(seed, sample_id, stage)``
of :mod:`lassi.spec.runtime.seeding` (float64, in chunks whose size never depends on the evaluation batch
size), so a certificate is bit-identical whatever batch size, process or sample order computed it,
and an auditor can replay the draws with any runtime (e.g. onnxruntime) for the base function.
Distances are ℓ2 in representation space, computed in float64 from the float32 center.

Devices: a torch base module runs where its parameters live. The noise is always drawn on the
CPU from the per-sample numpy stream and moved to the module's device, so the draws are the same
on every device. On a CUDA device there is no host round trip inside a stage: each noise chunk
(up to NOISE_CHUNK_ROWS rows) is copied to the device once and sliced there into batches, the
outputs of steps 2 and 4 stay there and their float64 distances come back once per stage (step 1's
n0 outputs come back once, for the selection), and the finiteness check is one reduction per
stage. The network runs in strict float32 there (TF32 off for convolutions and matmuls), the
function the ONNX export and the audit replay. On the CPU the distances are numpy's, batch by
batch, as for a numpy base function.

The module needs only numpy and the standard library; torch is used only when the base function
is a torch module or returns tensors (and is then already imported by the caller), so an auditor
can replay certificates with a numpy callable such as an onnxruntime session.

The parameters, and what they imply before any draw (the levels and ranks of steps 2-4, whether a
sample can ever certify), are :mod:`lassi.spec.contract.models.certificate`'s: a certified file
records them. Step 1's selection and the order statistics are
:mod:`lassi.spec.runtime.center_selection`'s.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lassi.spec.contract.models.certificate import (
    CenterSmoothingParams,
    CenterStatus,
    abstain_margins,
    estimation_rank,
    exact_abstain_bound,
    quantile_level,
    sequential_decision,
    sequential_looks,
    shifted_level,
)
from lassi.spec.runtime.center_selection import (
    distances_to,
    lower_median,
    min_median_index,
    order_statistic,
)
from lassi.spec.runtime.seeding import Stage, numpy_rng

if TYPE_CHECKING:
    import torch

# Noise rows are drawn from a stage's stream in chunks of this many rows (a property of the
# stream only: numpy's normal draws are sequential, so the values never depend on it either).
NOISE_CHUNK_ROWS = 1 << 16
# Draws per base-function call unless the caller says otherwise (an execution setting: the
# certificate never depends on it).
BATCH_SIZE = 2_000


@dataclass
class CenterCertificate:
    """Result of :meth:`CenterSmoothing.certify` for one sample.

    center: ẑ, float32 [k] (the step-1 choice, also when abstained); r_cs: the certified radius
    (1 + β) R̂, 0.0 when abstained; reason: "" (certified), "delta" (step 2) or "q>1" (step 3);
    r_hat: r̂ of step 1; p_hat: p̂ of step 2; q: the step-3 level (Hoeffding q, exact q0; nan if
    not reached);
    seconds: wall time of the certification; evaluations: base-function draws used (steps 1, 2
    and 4; 2 n0 + n with the fixed test).
    """

    center: np.ndarray
    r_cs: float
    abstained: bool
    reason: str
    r_hat: float
    p_hat: float
    seconds: float
    q: float = field(default=math.nan)
    evaluations: int = 0

    @property
    def status(self) -> CenterStatus:
        """The outcome as stored in a certified bundle."""
        if not self.abstained:
            return CenterStatus.CERTIFIED
        return CenterStatus.ABSTAIN_DELTA if self.reason == "delta" else CenterStatus.ABSTAIN_Q


class CenterSmoothing:
    """Center smoothing certificate of a vector-valued base function f(t), t ∈ R^m, at t = 0.

    ``base`` maps a batch of noise vectors t [B, m] to representations [B, k]. A
    ``torch.nn.Module`` (e.g. :meth:`LatentMLP.affine_base`) receives a tensor of its parameters'
    dtype and device and must be in eval mode; any other callable receives the float64 numpy
    array (override with ``torch_input``). Outputs may be tensors or arrays.
    """

    def __init__(
        self,
        base: Callable[[np.ndarray], Any] | Callable[[torch.Tensor], torch.Tensor],
        m: int,
        params: CenterSmoothingParams = CenterSmoothingParams(),
        *,
        batch_size: int = BATCH_SIZE,
        torch_input: bool | None = None,
    ) -> None:
        if m < 1:
            raise ValueError(f"need m >= 1 sensitive attributes (got {m})")
        if params.m is not None and params.m != m:
            raise ValueError(f"the parameters were issued for m = {params.m}, not {m}")
        if batch_size < 1:
            raise ValueError(f"need batch_size >= 1 (got {batch_size})")
        self.base = base
        self.m = m
        self.params = params
        self.batch_size = batch_size
        self.torch_input = _is_torch_module(base) if torch_input is None else torch_input

    def certify(self, seed: int, sample_id: int) -> CenterCertificate:
        """Steps 1-4 of center smoothing (Kumar & Goldstein 2021; module docstring) at t = 0."""
        start = time.perf_counter()
        p = self.params
        if _is_torch_module(self.base) and self.base.training:
            raise ValueError("the base module must be in eval mode (BatchNorm couples a batch)")

        # Step 1: n0 selection draws; ẑ = the draw with the smallest median distance; r̂ = it.
        center, r_hat = self.center(seed, sample_id)

        # Step 2: fresh draws; p̂ = fraction with distance ≤ r̂; abstain unless its lower
        # confidence bound reaches 1/2 − Δ (Hoeffding: max(Δ1, Δ2) ≤ Δ; exact: Clopper–Pearson;
        # sequential: the anytime-valid test on at most n0 draws).
        if p.abstain_test == "sequential":
            passed, within, drawn = self._sequential_abstain_test(seed, sample_id, center, r_hat)
        else:
            d_test = self._sample_distances(seed, sample_id, Stage.ABSTAIN_TEST, p.n0, center)
            within, drawn = int(np.count_nonzero(d_test <= r_hat)), p.n0
            if p.bounds == "exact":
                passed = exact_abstain_bound(within, p.n0, p.alpha1) >= 0.5 - p.delta
            else:
                passed = max(abstain_margins(within / p.n0, p.n0, p.alpha1)) <= p.delta
        p_hat = within / drawn
        evaluations = p.n0 + drawn
        if not passed:
            return CenterCertificate(
                center, 0.0, True, "delta", r_hat, p_hat, _since(start), evaluations=evaluations
            )

        # Step 3: the rank of R̂ (q = k / n is recorded); abstain if none exists.
        rank = estimation_rank(p)
        q = quantile_level(p) if p.bounds == "hoeffding" else shifted_level(p)
        if rank is None:
            return CenterCertificate(
                center, 0.0, True, "q>1", r_hat, p_hat, _since(start), q, evaluations
            )

        # Step 4: n fresh draws; R̂ = the k-th smallest distance; r_CS = (1 + β) R̂.
        d_est = self._sample_distances(seed, sample_id, Stage.ESTIMATION, p.n, center)
        big_r_hat = order_statistic(d_est, rank)
        r_cs = (1.0 + p.beta) * big_r_hat
        evaluations += p.n
        return CenterCertificate(
            center, r_cs, False, "", r_hat, p_hat, _since(start), q, evaluations
        )

    def _sequential_abstain_test(
        self, seed: int, sample_id: int, center: np.ndarray, r_hat: float
    ) -> tuple[bool, int, int]:
        """Step 2, sequential (module docstring): (passed, draws within r̂, draws used).

        The draws are the first ones of the ABSTAIN_TEST stream, exactly those of the fixed test
        (numpy's normal draws are sequential), taken one look's block at a time."""
        p = self.params
        rng = numpy_rng(seed, sample_id, Stage.ABSTAIN_TEST)
        within = drawn = 0
        for look in sequential_looks(p):
            block = p.sigma * rng.standard_normal((look - drawn, self.m))
            d = self._distances([block], look - drawn, center)
            within += int(np.count_nonzero(d <= r_hat))
            drawn = look
            verdict = int(sequential_decision(within, drawn, p))
            if verdict != 0:
                return verdict == 1, within, drawn
        return False, within, drawn

    def center(self, seed: int, sample_id: int) -> tuple[np.ndarray, float]:
        """Step 1 alone: the smoothed output ẑ (float32 [k]) and its median radius r̂.

        This is the end-to-end smoothed model's representation of the input (what a consumer
        classifies); steps 2-4 only certify it.
        """
        outputs = self._sample_outputs(seed, sample_id, Stage.SELECTION, self.params.n0)
        index = min_median_index(outputs)
        center = outputs[index].astype(np.float32)
        others = np.delete(outputs, index, axis=0)
        return center, lower_median(distances_to(others, center))

    def _noise_chunks(
        self, seed: int, sample_id: int, stage: Stage, count: int
    ) -> Iterator[np.ndarray]:
        """t = σ · N(0, I_m) in float64 from the stage's stream, NOISE_CHUNK_ROWS rows at a time."""
        rng = numpy_rng(seed, sample_id, stage)
        for chunk_start in range(0, count, NOISE_CHUNK_ROWS):
            rows = min(NOISE_CHUNK_ROWS, count - chunk_start)
            yield self.params.sigma * rng.standard_normal((rows, self.m))

    def _noise_batches(
        self, seed: int, sample_id: int, stage: Stage, count: int
    ) -> Iterator[np.ndarray]:
        """The stage's noise rows, batch_size rows at a time."""
        batch = self.batch_size
        for chunk in self._noise_chunks(seed, sample_id, stage, count):
            for i in range(0, chunk.shape[0], batch):
                yield chunk[i : i + batch]

    def _evaluate_raw(self, t: np.ndarray) -> Any:
        """The base function on one noise batch: a tensor (on the module's device) or an array.

        The noise rows come from the CPU stream and are moved to the module's device."""
        torch = _import_torch() if self.torch_input else sys.modules.get("torch")
        if torch is None:  # a numpy-only caller
            return self.base(t)
        with torch.inference_mode():
            if self.torch_input:
                dtype, device = _tensor_spec(self.base)
                return self.base(torch.from_numpy(t).to(dtype=dtype, device=device))
            return self.base(t)

    def _evaluate(self, t: np.ndarray) -> np.ndarray:
        """The base function on one noise batch, as a numpy array [B, k]."""
        out = self._evaluate_raw(t)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        out = np.asarray(out)
        _check_output(out, t.shape[0], finite=bool(np.isfinite(out).all()))
        return out

    def _on_device(self) -> bool:
        """Whether the base is a torch module off the CPU (then outputs stay on the device)."""
        return self.torch_input and _on_accelerator(self.base)

    def _device_outputs(self, chunks: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        """Outputs [B, k] on the module's device, batch_size draws at a time, without a host
        round trip: each noise chunk moves to the device once (one copy, however many batches),
        outputs are checked for shape only (finiteness is checked once per stage by the
        caller), and on CUDA the network runs in strict float32 (no TF32), the function the
        ONNX export and the audit replay."""
        torch = _import_torch()
        dtype, device = _tensor_spec(self.base)
        batch = self.batch_size
        with torch.inference_mode(), _strict_float32(torch, device):
            for chunk in chunks:
                t_chunk = torch.from_numpy(chunk).to(dtype=dtype, device=device)
                for i in range(0, t_chunk.shape[0], batch):
                    t = t_chunk[i : i + batch]
                    out = self.base(t)
                    _check_output(out, t.shape[0], finite=True)
                    yield out

    def _sample_outputs(self, seed: int, sample_id: int, stage: Stage, count: int) -> np.ndarray:
        """All ``count`` outputs [count, k] of a stage (step 1 only: n0 rows)."""
        if self._on_device():  # kept on the device, moved to the host once
            torch = _import_torch()
            with torch.inference_mode():
                chunks = self._noise_chunks(seed, sample_id, stage, count)
                outputs = torch.cat(list(self._device_outputs(chunks)))
                if not bool(outputs.isfinite().all()):
                    raise ValueError("base returned non-finite values")
                return outputs.cpu().numpy()
        batches = self._noise_batches(seed, sample_id, stage, count)
        return np.concatenate([self._evaluate(t) for t in batches], axis=0)

    def _sample_distances(
        self, seed: int, sample_id: int, stage: Stage, count: int, center: np.ndarray
    ) -> np.ndarray:
        """Distances [count] of a stage's outputs to the center; outputs are never all kept."""
        return self._distances(self._noise_chunks(seed, sample_id, stage, count), count, center)

    def _distances(
        self, chunks: Iterable[np.ndarray], count: int, center: np.ndarray
    ) -> np.ndarray:
        """Distances [count] to the center of the base's outputs on the noise rows of ``chunks``.

        On an accelerator the outputs stay there and the float64 distances of all the rows come
        back to the host once; on the CPU they are numpy's, batch by batch."""
        if self._on_device():
            torch = _import_torch()
            with torch.inference_mode():
                parts, finite = [], []
                c = None
                for out in self._device_outputs(chunks):
                    if c is None:
                        c = torch.from_numpy(np.asarray(center, dtype=np.float64)).to(out.device)
                    finite.append(out.isfinite().all())
                    diff = out.to(torch.float64) - c
                    parts.append(torch.sqrt((diff * diff).sum(dim=1)))
                if not bool(torch.stack(finite).all()):
                    raise ValueError("base returned non-finite values")
                distances = torch.cat(parts).cpu().numpy()
        else:
            distances = np.empty(count, dtype=np.float64)
            filled = 0
            batch = self.batch_size
            for chunk in chunks:
                for i in range(0, chunk.shape[0], batch):
                    t = chunk[i : i + batch]
                    distances[filled : filled + t.shape[0]] = distances_to(self._evaluate(t), center)
                    filled += t.shape[0]
        if distances.shape[0] != count:
            raise ValueError(f"expected {count} distances, got {distances.shape[0]}")
        return distances


def device_distances(points: torch.Tensor, center: np.ndarray) -> np.ndarray:
    """:func:`distances_to` computed in float64 where ``points`` [B, k] live (e.g. on a GPU);
    equal to it up to the order of the float64 summation."""
    torch = _import_torch()
    with torch.inference_mode():
        c = torch.from_numpy(np.asarray(center, dtype=np.float64)).to(points.device)
        diff = points.to(torch.float64) - c
        return torch.sqrt((diff * diff).sum(dim=1)).cpu().numpy()


def _check_output(out: Any, rows: int, finite: bool) -> None:
    if len(out.shape) != 2 or out.shape[0] != rows:
        raise ValueError(f"base returned shape {tuple(out.shape)} for {rows} draws")
    if not finite:
        raise ValueError("base returned non-finite values")


def _import_torch() -> Any:
    import torch

    return torch


def _is_torch_module(base: object) -> bool:
    """Whether base is a torch module (torch is loaded if the caller built one)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(base, torch.nn.Module)


def _tensor_spec(base: object) -> tuple[torch.dtype, torch.device]:
    """dtype and device of a module's first floating parameter or buffer (float32 on CPU else)."""
    torch = _import_torch()
    if isinstance(base, torch.nn.Module):
        for tensor in [*base.parameters(), *base.buffers()]:
            if tensor.is_floating_point():
                return tensor.dtype, tensor.device
    return torch.float32, torch.device("cpu")


def _on_accelerator(base: object) -> bool:
    """Whether a torch base module lives off the CPU (then its outputs stay there)."""
    return _tensor_spec(base)[1].type != "cpu"


class _strict_float32:
    """Context: on CUDA, convolutions and matmuls in IEEE float32 (TF32 off), restored after."""

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch, self.active = torch, device.type == "cuda"

    def __enter__(self) -> None:
        if self.active:
            backends = self.torch.backends
            self.saved = (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32)
            backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        if self.active:
            backends = self.torch.backends
            backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = self.saved


def _since(start: float) -> float:
    return time.perf_counter() - start


def progress_hooks() -> dict[str, Any]:
    """The per-sample loop's ``certified`` and ``postfix`` for rows of center-smoothing
    certificates (``status``, ``r_cs``): shared by ``encode --certify`` and the audit's replay.
    The bar says what they are: ``cs_ok=a/b`` counts samples where center smoothing did not
    abstain (not fairness, which the consumer decides), ``last_r_cs`` is the latest sample's."""
    return {
        "certified": lambda row: row["status"] == CenterStatus.CERTIFIED,
        "postfix": lambda row: {"last_r_cs": f"{row['r_cs']:.3f}"},
        "count_label": "cs_ok",
    }
