"""Randomized smoothing of the consumer's classifier C_L (Cohen et al., 2019).

The smoothed classifier is g(z) = argmax_c P(C_L(z + ε) = c) with ε ~ N(0, σ² I), the noise added
in representation space. Cohen et al. (2019), Theorem 1: if p_A lower-bounds the probability of
the top class c_A (and p_A ≥ 1/2 so that p_B = 1 − p_A bounds every other class), then g(z + δ) = c_A
for every ||δ||₂ < R = σ · Φ⁻¹(p_A).

This module follows their CERTIFY and PREDICT procedures (Cohen et al., 2019, Pseudocode; the
reference implementation is locuslab/smoothing ``core.py``):

* CERTIFY: n0 *selection* draws pick the guess ĉ; n *fresh estimation* draws count n_A = #{ĉ};
  p_A = one-sided Clopper–Pearson lower bound at level α; abstain if p_A < 1/2, else R = σ Φ⁻¹(p_A).
* PREDICT: n draws; two-sided binomial test of the top two counts; abstain if its p-value > α.
* CERTIFY_SEQUENTIAL (for the fairness decision R > r_CS only): the same selection, then fresh
  estimation draws in growing blocks until an anytime-valid test (:mod:`.sequential_test`)
  shows p_A > Φ(r_CS / σ), shows it cannot be, or n_max draws are used.

Both certificate procedures also return PREDICT computed on their n0 selection draws
(:attr:`SmoothCertificate.predicted`): the sample's prediction, the same whichever procedure
decides R > r_CS (the selection draws are the same stream in both), so accuracy does not depend
on how the certificate was decided. The selection draws are independent of the estimation draws,
so PREDICT's guarantee (a returned class differs from g(z) with probability ≤ α) and the
certificate's hold each on their own.

Every draw comes from a per-sample stream of :mod:`lassi.spec.runtime.seeding` (selection from
``Stage.SELECTION``, estimation and PREDICT from ``Stage.ESTIMATION``), generated on the CPU in
chunks whose size depends only on the noise dimension, so a sample's certificate is the same
whatever batch size, sample order or process computed it (provided the classifier's argmax for a
row does not depend on the rows batched with it, as holds for the usual row-wise layers up to
exact ties). Reusing the selection draws for the estimation would make the bound unsound (the
guess ĉ would be correlated with its own count).

Two implementations share the algorithm: :class:`Smooth` (torch, any device) and
:class:`SmoothNumpy` (numpy + a logits callable such as an onnxruntime session). This module imports
torch only inside :class:`Smooth`, so the numpy path runs where torch is not installed. The two use
different random generators (torch vs numpy PCG64), so their certificates differ draw by draw
while being equally valid.

Why one long module: CERTIFY, PREDICT, the sequential variant and their three back-ends
(torch, the linear-head projection, a numpy logits callable) share one noise stream and counting
code. Running an ONNX classifier in onnxruntime lives in :mod:`lassi.consumer.onnx_runtime`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from scipy.stats import beta, binomtest, norm

from lassi.consumer import sequential_test
from lassi.spec.runtime.seeding import Stage, numpy_rng, torch_seed

if TYPE_CHECKING:
    import torch

ABSTAIN = -1
T = TypeVar("T")

# How a certificate's estimation ended: CERTIFY gave a radius ("radius") or abstained because
# p_A < 1/2 ("p_a_below_half"); the sequential test showed R > r_CS ("certified"), showed it out
# of reach ("futile") or used n_max draws undecided ("undecided").
OUTCOMES = ("radius", "p_a_below_half", "certified", "futile", "undecided")

# Noise is drawn in chunks of at most this many numbers (16 MiB of float32); the row count of a
# chunk depends only on the noise dimension, never on the evaluation batch size.
NOISE_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class SmoothCertificate:
    """Result of CERTIFY for one sample.

    prediction: the certified class, or ``ABSTAIN`` (-1); radius: the certified ℓ2 radius R in
    representation space (0.0 when abstained); count: n_A, the estimation count of the selected
    class; p_lower: the lower bound p_A (Clopper–Pearson, or the confidence sequence's when
    sequential); seconds: wall time of the certification; draws: classifier draws used (n0 plus
    the estimation draws); predicted: PREDICT (Cohen et al., 2019) on the n0 selection draws, the
    sample's prediction whatever the certificate procedure (``ABSTAIN`` when the binomial test of
    the top two counts fails at level α); outcome: how the estimation ended, one of
    :data:`OUTCOMES`.
    """

    prediction: int
    radius: float
    count: int
    p_lower: float
    seconds: float
    draws: int = 0
    predicted: int = ABSTAIN
    outcome: str = "radius"

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN


def lower_confidence_bound(n_a: int, n: int, alpha: float) -> float:
    """One-sided (1 − α) Clopper–Pearson lower bound on p from n_a successes in n trials.

    It is the α-quantile of Beta(n_a, n − n_a + 1) (0 when n_a = 0); the same bound Cohen et al.
    compute as the lower end of the two-sided interval at level 2α.
    """
    if not 0 <= n_a <= n or n < 1:
        raise ValueError(f"need 0 <= n_a <= n and n >= 1 (got n_a={n_a}, n={n})")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1) (got {alpha})")
    if n_a == 0:
        return 0.0
    return float(beta.ppf(alpha, n_a, n - n_a + 1))


def radius_from_bound(p_lower: float, sigma: float) -> float | None:
    """Theorem 1 with p_B = 1 − p_A: R = σ Φ⁻¹(p_A); None (abstain) iff p_A < 1/2."""
    if p_lower < 0.5:
        return None
    return float(sigma * norm.ppf(p_lower))


def _check_arguments(n: int, alpha: float, n0: int = 1) -> None:
    if n0 < 1 or n < 1:
        raise ValueError(f"need n0 >= 1 and n >= 1 (got n0={n0}, n={n})")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1) (got {alpha})")


def chunk_sizes(num: int, dim: int) -> list[int]:
    """Row counts of the noise chunks for ``num`` draws of dimension ``dim``: full chunks of
    NOISE_CHUNK_ELEMENTS // dim rows and a final remainder, independent of the batch size."""
    rows = max(1, NOISE_CHUNK_ELEMENTS // max(1, dim))
    return [min(rows, num - start) for start in range(0, num, rows)]


def prefetched(draw: Callable[[int], T], sizes: list[int]) -> Iterator[T]:
    """Yield ``draw(size)`` for each size in order, drawing the next chunk in a background thread
    while the caller evaluates the current one (torch and numpy release the GIL while sampling).
    Draws stay sequential on one generator, so the stream is the same as without prefetching."""
    if len(sizes) <= 1:
        yield from (draw(size) for size in sizes)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(draw, sizes[0])
        for next_size in [*sizes[1:], None]:
            chunk = pending.result()
            if next_size is not None:
                pending = pool.submit(draw, next_size)
            yield chunk


class _SmoothedClassifier(ABC):
    """CERTIFY and PREDICT of Cohen et al. (2019); subclasses supply the Monte Carlo counts."""

    num_classes: int
    sigma: float

    @abstractmethod
    def count_blocks(
        self, z: Any, sizes: list[int], seed: int, sample_id: int, stage: Stage
    ) -> Iterator[np.ndarray]:
        """Class counts [num_classes] of the base classifier for consecutive blocks of
        ``sizes[i]`` draws z + N(0, σ² I) of the stream (seed, sample_id, stage), one block at a
        time (a caller may stop early). Each block is drawn in chunks of ``chunk_sizes``."""

    def sample_counts(
        self, z: Any, num: int, seed: int, sample_id: int, stage: Stage
    ) -> np.ndarray:
        """Class counts [num_classes] of ``num`` draws of the stream (seed, sample_id, stage)."""
        total = np.zeros(self.num_classes, dtype=np.int64)
        for counts in self.count_blocks(z, [num], seed, sample_id, stage):
            total += counts
        return total

    def select(
        self, z: Any, n0: int, alpha: float, seed: int, sample_id: int
    ) -> tuple[int, int]:
        """The selection step shared by both certificate procedures: n0 draws of their own stream
        give the guess ĉ (their top class) and PREDICT on the same counts (ĉ, or ``ABSTAIN``)."""
        counts = self.sample_counts(z, n0, seed, sample_id, Stage.SELECTION)
        return int(np.argmax(counts)), predict_from_counts(counts, alpha)

    def certify(
        self, z: Any, n0: int, n: int, alpha: float, seed: int, sample_id: int
    ) -> SmoothCertificate:
        """CERTIFY (Cohen et al., 2019): with probability ≥ 1 − α over the draws, a non-abstaining
        prediction ĉ satisfies g(z + δ) = ĉ for all ||δ||₂ < radius."""
        _check_arguments(n, alpha, n0)
        start = time.perf_counter()
        # 1. Selection: guess the top class from n0 draws of their own stream (and PREDICT).
        c_hat, predicted = self.select(z, n0, alpha, seed, sample_id)
        # 2. Estimation: n fresh draws, independent of the selection.
        counts_estimation = self.sample_counts(z, n, seed, sample_id, Stage.ESTIMATION)
        n_a = int(counts_estimation[c_hat])
        # 3. p_A = Clopper–Pearson lower bound; 4. R = σ Φ⁻¹(p_A) unless p_A < 1/2 (Theorem 1).
        p_lower = lower_confidence_bound(n_a, n, alpha)
        radius = radius_from_bound(p_lower, self.sigma)
        seconds = time.perf_counter() - start
        if radius is None:
            return SmoothCertificate(
                ABSTAIN, 0.0, n_a, p_lower, seconds, n0 + n, predicted, "p_a_below_half"
            )
        return SmoothCertificate(c_hat, radius, n_a, p_lower, seconds, n0 + n, predicted, "radius")

    def certify_sequential(
        self,
        z: Any,
        n0: int,
        r_cs: float,
        alpha: float,
        seed: int,
        sample_id: int,
        n_max: int = sequential_test.N_MAX,
    ) -> SmoothCertificate:
        """Sequential CERTIFY for the decision R > r_CS (module :mod:`.sequential_test`).

        Selection as in :meth:`certify` (n0 draws of their own stream); then estimation draws in
        the blocks of ``block_sizes(n_max)`` until the beta-binomial confidence sequence puts
        p* = Φ(r_CS / σ) below it (certify), above it (futility) or n_max draws are used. With
        probability ≥ 1 − α, p_A ≥ p_lower at the stopping time, so a non-abstaining prediction
        is certified with radius σ Φ⁻¹(p_lower); it exceeds r_CS whenever the test certified.
        """
        _check_arguments(n_max, alpha, n0)
        if not r_cs >= 0.0:
            raise ValueError(f"need r_cs >= 0 (got {r_cs})")
        start = time.perf_counter()
        c_hat, predicted = self.select(z, n0, alpha, seed, sample_id)
        p_star = float(norm.cdf(r_cs / self.sigma))
        n_a = used = 0
        verdict = sequential_test.CONTINUE
        blocks = self.count_blocks(
            z, sequential_test.block_sizes(n_max), seed, sample_id, Stage.ESTIMATION
        )
        try:
            for counts in blocks:
                n_a, used = n_a + int(counts[c_hat]), used + int(counts.sum())
                verdict = int(sequential_test.decision(n_a, used, p_star, alpha))
                if verdict != sequential_test.CONTINUE:
                    break
        finally:
            blocks.close()  # type: ignore[attr-defined]
        floor = p_star if verdict == sequential_test.CERTIFY else 0.0
        p_lower = float(sequential_test.lower_bound(n_a, used, alpha, floor))
        radius = radius_from_bound(p_lower, self.sigma)
        seconds = time.perf_counter() - start
        outcome = {sequential_test.CERTIFY: "certified", sequential_test.FUTILE: "futile"}.get(
            verdict, "undecided"
        )
        if radius is None:
            return SmoothCertificate(
                ABSTAIN, 0.0, n_a, p_lower, seconds, n0 + used, predicted, outcome
            )
        return SmoothCertificate(c_hat, radius, n_a, p_lower, seconds, n0 + used, predicted, outcome)

    def predict(self, z: Any, n: int, alpha: float, seed: int, sample_id: int) -> int:
        """PREDICT (Cohen et al., 2019): the top class of n draws, or ABSTAIN when a two-sided
        binomial test cannot tell the top two counts apart at level α (so a returned class differs
        from g(z) with probability ≤ α)."""
        _check_arguments(n, alpha)
        counts = self.sample_counts(z, n, seed, sample_id, Stage.ESTIMATION)
        return predict_from_counts(counts, alpha)


def predict_from_counts(counts: np.ndarray, alpha: float) -> int:
    """PREDICT's decision on class counts: the top class (ties: the lowest index, as the
    selection's argmax), or ABSTAIN when the two-sided binomial test of the top two counts
    against 1/2 has p-value > α."""
    order = np.argsort(-np.asarray(counts), kind="stable")
    count_1 = int(counts[order[0]])
    count_2 = int(counts[order[1]]) if len(order) > 1 else 0
    if count_1 + count_2 == 0 or binomtest(count_1, count_1 + count_2, p=0.5).pvalue > alpha:
        return ABSTAIN
    return int(order[0])


class Smooth(_SmoothedClassifier):
    """Randomized smoothing of a torch classifier mapping representations [B, k] to logits [B, C].

    Noise is generated on the CPU from ``torch.Generator`` streams and moved to ``device``, where
    the draws are added, classified and counted (one [C] count vector per block comes back); the
    noise is therefore the same on every device. The classifier is evaluated under ``torch.inference_mode`` in batches of at most ``batch_size``
    (and at most one noise chunk; the logit-space path of :meth:`for_linear_head` takes whole
    chunks). The classifier must already live on ``device`` and, if it is a
    module, be in eval mode. While the classifier evaluates one chunk, the next is generated.
    """

    def __init__(
        self,
        classifier: Callable[[torch.Tensor], torch.Tensor],
        num_classes: int,
        sigma: float,
        batch_size: int = 10_000,
        device: str | torch.device = "cpu",
    ) -> None:
        import torch

        if sigma <= 0 or num_classes < 1 or batch_size < 1:
            raise ValueError("need sigma > 0, num_classes >= 1 and batch_size >= 1")
        self.classifier = classifier
        self.num_classes = int(num_classes)
        self.sigma = float(sigma)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.dtype = torch.float32
        # Set by for_linear_head: R with Wᵀ = QR, so that W ε = Rᵀ η with η ~ N(0, I).
        self._logit_noise_factor: torch.Tensor | None = None

    @classmethod
    def for_linear_head(
        cls,
        linear: torch.nn.Linear,
        sigma: float,
        batch_size: int = 10_000,
        device: str | torch.device = "cpu",
    ) -> Smooth:
        """Smoothing of a linear head C_L(z) = W z + b with the noise drawn in logit space.

        C_L(z + ε) = (W z + b) + W ε and W ε ~ N(0, σ² W Wᵀ). With the reduced QR factorisation
        Wᵀ = Q R (Q [k, d] with orthonormal columns, d = min(k, C)), W ε = Rᵀ (Qᵀ ε) and
        Qᵀ ε ~ N(0, σ² I_d) exactly, so d-dimensional draws replace k-dimensional ones (Rᵀ is a
        Cholesky factor of W Wᵀ that stays valid when W Wᵀ is singular). The smoothed classifier,
        hence every guarantee, is the same as with input-space noise; only the random stream (and
        so individual certificates) differs. The default input-space path is kept for other heads.
        """
        import torch

        smooth = cls(linear, linear.out_features, sigma, batch_size=batch_size, device=device)
        weight = linear.weight.detach().to(device="cpu", dtype=torch.float64)
        _, r = torch.linalg.qr(weight.T, mode="reduced")
        smooth._logit_noise_factor = r.to(device=smooth.device, dtype=smooth.dtype)
        return smooth

    @property
    def logit_space(self) -> bool:
        """Whether noise is drawn in logit space (see :meth:`for_linear_head`)."""
        return self._logit_noise_factor is not None

    def _as_tensor(self, z: Any) -> torch.Tensor:
        import torch

        z = torch.as_tensor(z).detach().to(device=self.device, dtype=self.dtype)
        if z.dim() != 1:
            raise ValueError(f"expected one representation of shape [k], got {tuple(z.shape)}")
        return z

    def _generator(self, seed: int, sample_id: int, stage: Stage) -> torch.Generator:
        import torch

        return torch.Generator(device="cpu").manual_seed(torch_seed(seed, sample_id, stage))

    def _count(self, logits: torch.Tensor, counts: torch.Tensor) -> None:
        import torch

        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"classifier returned shape {tuple(logits.shape)}, expected [B, {self.num_classes}]"
            )
        counts += torch.bincount(logits.argmax(dim=1), minlength=self.num_classes)

    def count_blocks(
        self, z: Any, sizes: list[int], seed: int, sample_id: int, stage: Stage
    ) -> Iterator[np.ndarray]:
        """Counts of argmax C_L(z + ε), ε ~ N(0, σ² I), per block of one stream's draws."""
        import torch

        z = self._as_tensor(z)
        generator = self._generator(seed, sample_id, stage)
        factor = self._logit_noise_factor
        dim = z.shape[0] if factor is None else factor.shape[0]
        pieces = [(size, rows) for size in sizes for rows in chunk_sizes(size, dim)]

        def draw(rows: int) -> torch.Tensor:
            """σ · N(0, I) noise [rows, dim], generated on the CPU."""
            return torch.empty(rows, dim, dtype=self.dtype).normal_(
                0.0, self.sigma, generator=generator
            )

        with torch.inference_mode():
            # Logit-space path: the clean logits once, then noise σ η R with η ~ N(0, I_d).
            base = None if factor is None else self.classifier(z[None])
        counts = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)
        filled = 0
        for (size, _), noise in zip(pieces, prefetched(draw, [r for _, r in pieces]), strict=True):
            with torch.inference_mode():
                noise = noise.to(self.device)
                if factor is not None:  # C-dim rows are small: the whole chunk at once
                    self._count(torch.addmm(base, noise, factor), counts)
                else:
                    for start in range(0, len(noise), self.batch_size):
                        batch = noise[start : start + self.batch_size].add_(z)
                        self._count(self.classifier(batch), counts)
            filled += len(noise)
            if filled == size:
                yield counts.cpu().numpy().copy()  # the only device-to-host copy of a block
                counts.zero_()
                filled = 0


class SmoothNumpy(_SmoothedClassifier):
    """Randomized smoothing of a numpy logits callable [B, k] float32 → [B, C] (no torch needed).

    ``logits_fn`` may wrap an onnxruntime session (see :func:`lassi.consumer.onnx_runtime.onnx_logits_fn`). Noise comes from
    ``numpy_rng(seed, sample_id, stage)`` in fixed chunks, evaluated in batches of ``batch_size``.
    """

    def __init__(
        self,
        logits_fn: Callable[[np.ndarray], np.ndarray],
        num_classes: int,
        sigma: float,
        batch_size: int = 10_000,
    ) -> None:
        if sigma <= 0 or num_classes < 1 or batch_size < 1:
            raise ValueError("need sigma > 0, num_classes >= 1 and batch_size >= 1")
        self.logits_fn = logits_fn
        self.num_classes = int(num_classes)
        self.sigma = float(sigma)
        self.batch_size = int(batch_size)

    def count_blocks(
        self, z: Any, sizes: list[int], seed: int, sample_id: int, stage: Stage
    ) -> Iterator[np.ndarray]:
        """Counts of argmax C_L(z + ε), ε ~ N(0, σ² I), per block of one stream's draws."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 1:
            raise ValueError(f"expected one representation of shape [k], got {z.shape}")
        rng = numpy_rng(seed, sample_id, stage)
        sigma = np.float32(self.sigma)
        pieces = [(size, rows) for size in sizes for rows in chunk_sizes(size, z.shape[0])]

        def draw(rows: int) -> np.ndarray:
            """z + σ · N(0, I) inputs [rows, k]."""
            noise = rng.standard_normal((rows, z.shape[0]), dtype=np.float32)
            noise *= sigma
            noise += z
            return noise

        counts = np.zeros(self.num_classes, dtype=np.int64)
        filled = 0
        for (size, _), noise in zip(pieces, prefetched(draw, [r for _, r in pieces]), strict=True):
            for start in range(0, len(noise), self.batch_size):
                logits = np.asarray(self.logits_fn(noise[start : start + self.batch_size]))
                if logits.ndim != 2 or logits.shape[1] != self.num_classes:
                    raise ValueError(
                        f"logits_fn returned shape {logits.shape}, expected [B, {self.num_classes}]"
                    )
                counts += np.bincount(logits.argmax(axis=1), minlength=self.num_classes)
            filled += len(noise)
            if filled == size:
                yield counts.copy()
                counts[:] = 0
                filled = 0
