"""Ground-truth checks of Table 2 (paper Sec. 5.2): the end-to-end model on the 15 real
orientation siblings of every certified test sample, re-rendered from the 3D Shapes factors.

``siblings_predict``: the smoothed model without certification (center ẑ from step 1 of center
smoothing, then PREDICT). ``siblings_certified``: the full certification on every sibling, as the
authors' ``src/certification/eval_with_ground_truth.py`` (eth-sri/lassi) runs it: center
smoothing with the test bundle's parameters, then CERTIFY with the consumer report's; a sibling
whose center smoothing abstains predicts ABSTAIN (-1), and it is certified iff r_CS < R.
Per-sample seeds (sibling id = its data set index) make every result independent of order.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lassi.consumer.classifier import load_classifier
from lassi.consumer.randomized_smoothing import ABSTAIN, Smooth
from lassi.producer.base_function import load_encoder
from lassi.regulator.shapes3d import FACTOR_SIZES, Shapes3D, rendered_sha256
from lassi.regulator.similarity import SimilaritySet
from lassi.spec import read_artifact
from lassi.spec.contract.models import CenterSmoothingParams
from lassi.spec.contract.torch_state import run_key
from lassi.spec.runtime.center_smoothing import CenterSmoothing
from lassi.spec.runtime.per_sample import Executor, PerSampleLoop


def siblings_of(sample_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Factor rows [15, 6] and data set indices [15] of a sample's orientation siblings."""
    factors = Shapes3D.siblings(Shapes3D.index_to_factors(np.array([sample_id])))[0]
    return factors, Shapes3D.factors_to_index(factors)


def _smoothed_models(spec, encoder, classifier, device: str | torch.device):
    """The spec's Glow and set, the producer's base function, the consumer's smoothed classifier
    (on ``device``) and the classifier's artifact."""
    sim = SimilaritySet.load(spec)
    sim.glow.to(device)
    base, _, _ = load_encoder(encoder, sim)
    base.to(device)
    model, card = load_classifier(classifier)
    smooth = Smooth.for_linear_head(model.to(device), card.meta.sigma_cls, device=device)
    return sim, base, smooth, card


@torch.no_grad()
def siblings_predict(
    spec, encoder, classifier, test, seed: int, cert: CenterSmoothingParams, n0: int, n: int,
    alpha: float, device: str | torch.device = "cpu", renderer=None,
) -> np.ndarray:
    """[N, 15] predictions of the smoothed model (step-1 center, PREDICT) on the siblings;
    ``device``: where E_G, E_L and C_L run (noise is drawn on the CPU from per-sample seeds)."""
    sim, base, smooth, card = _smoothed_models(spec, encoder, classifier, device)
    params = CenterSmoothingParams(sigma=cert.sigma, epsilon=cert.epsilon, n0=n0, n=n0)
    renderer = renderer or Shapes3D(sim.glow.image_size)
    ids = read_artifact(test).tensors["ids"]
    out = np.zeros((len(ids), FACTOR_SIZES[5]), dtype=np.int64)
    for i, sample_id in enumerate(tqdm(ids, desc="ground truth", unit="sample", dynamic_ncols=True)):
        factors, sibling_ids = siblings_of(int(sample_id))
        z_g = sim.encode_images(renderer.render(factors))
        for j, (z, sid) in enumerate(zip(z_g, sibling_ids, strict=True)):
            center, _ = CenterSmoothing(base.for_latent(z.to(device)), sim.m, params).center(
                seed, int(sid)
            )
            out[i, j] = smooth.predict(center, n, alpha, seed, int(sid))
    return out


def siblings_certified(
    spec, encoder, classifier, test, report, executor: Executor | None = None,
    checkpoint: Path | None = None, progress: bool = True, device: str | torch.device = "cpu",
    renderer=None,
) -> dict[str, np.ndarray]:
    """Full certification of every sibling: ``prediction`` [N, 15] (ABSTAIN = -1),
    ``certified`` [N, 15] bool, ``r_cs`` and ``radius`` [N, 15], ``factors`` [N, 15, 6].

    One test sample (its 15 siblings) at a time on the shared per-sample loop: ``executor``
    (default: in this process, e.g. ``lassi.spec.runtime.executors.RayExecutor``) does not change the
    result (per-sample seeds); ``checkpoint``: resume from this file (None: no resume);
    ``device``: where E_G, E_L and C_L run; ``renderer``: whose ``render(factors)`` gives the
    siblings (default: the built-in renderer; a 3dshapes.h5 source's serves the file's images)."""
    sim, base, smooth, card = _smoothed_models(spec, encoder, classifier, device)
    bundle = read_artifact(test)
    certificate = bundle.meta.certificate
    rs = read_artifact(report).meta.smoothing
    renderer = renderer or Shapes3D(sim.glow.image_size)
    ids = bundle.tensors["ids"]
    shape = (len(ids), FACTOR_SIZES[5])
    out = {
        "prediction": np.full(shape, ABSTAIN, dtype=np.int64),
        "certified": np.zeros(shape, dtype=bool),
        "r_cs": np.zeros(shape, dtype=np.float32),
        "radius": np.zeros(shape, dtype=np.float32),
        "factors": np.zeros(shape + (6,), dtype=np.int64),
    }

    @torch.no_grad()
    def certify_siblings(i: int) -> dict[str, np.ndarray]:
        factors, sibling_ids = siblings_of(int(ids[i]))
        row = {
            "prediction": np.full(shape[1], ABSTAIN, dtype=np.int64),
            "certified": np.zeros(shape[1], dtype=bool),
            "r_cs": np.zeros(shape[1], dtype=np.float32),
            "radius": np.zeros(shape[1], dtype=np.float32),
            "factors": factors,
        }
        z_g = sim.encode_images(renderer.render(factors))
        for j, (z, sid) in enumerate(zip(z_g, sibling_ids, strict=True)):
            center = CenterSmoothing(base.for_latent(z.to(device)), sim.m, certificate).certify(
                certificate.seed, int(sid)
            )
            row["r_cs"][j] = center.r_cs
            if center.abstained:
                continue
            cert = smooth.certify(center.center, rs.n0, rs.n, rs.alpha, rs.seed, int(sid))
            row["prediction"][j] = cert.prediction
            row["radius"][j] = cert.radius
            row["certified"][j] = not cert.abstained and center.r_cs < cert.radius
        return row

    unfair = [0]

    def postfix(row: dict[str, np.ndarray]) -> dict[str, str]:
        unfair[0] += len(set(row["prediction"].tolist())) > 1
        return {"unfair": str(unfair[0])}

    key = run_key(
        spec=sim.sha256, encoder=read_artifact(encoder).sha256, classifier=card.sha256,
        test=bundle.sha256, report=read_artifact(report).sha256,
        siblings=rendered_sha256(renderer, (siblings_of(int(i))[0] for i in ids)),  # the images
    )
    if executor is not None and type(executor).__name__ == "RayExecutor":
        # Ray's workers on other machines need not have lassi-experiments installed: they get
        # this module by value
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with tempfile.TemporaryDirectory(prefix="lassi-ground-truth-") as scratch:
        loop = PerSampleLoop(
            out, checkpoint if checkpoint is not None else Path(scratch) / "siblings.ckpt",
            tool="lassi-experiments", stage="ground-truth", key=key,
            desc="ground truth (certify siblings)", what="the ground-truth check",
            progress=progress, postfix=postfix,
        )
        loop.run(certify_siblings, executor)
        loop.finish()
    return out


def endpoint_figures(
    sample_certified: np.ndarray,
    empirically_fair: np.ndarray,
    unfair: np.ndarray | None = None,
    center: np.ndarray | None = None,
    ends: np.ndarray | None = None,
) -> dict:
    """The authors' endpoints analysis beside the ground truth: per sample, ``empirically_fair``
    (the consumer's report: the center and every segment end z_G ± ε·a_i got the same smoothed
    prediction), ``unfair`` (the real siblings' outcomes differ; None: not known). The figures
    are shares of all test samples, as Table 2's. ``center`` [N] and ``ends`` [N, 2m], the
    report's predictions (ABSTAIN = -1), add the share where two classes differ, abstentions
    aside (as the siblings' "GT unfair by two classes")."""
    fair = np.asarray(empirically_fair, dtype=bool)
    flagged = sample_certified & ~fair
    out = {
        "endpoints_empirically_unfair": float((~fair).mean()),
        "endpoints_certified_but_empirically_unfair": float(flagged.mean()),
    }
    if center is not None and ends is not None:
        both = np.concatenate([np.asarray(center)[:, None], np.asarray(ends)], axis=1)
        out["endpoints_unfair_classes"] = float(
            np.mean([len(set(row) - {ABSTAIN}) > 1 for row in both.tolist()])
        )
        out["endpoint_abstain"] = float((np.asarray(ends) == ABSTAIN).mean())
    if unfair is not None:  # does the data-only check find what the siblings find?
        out["certified_ground_truth_unfair_found_by_endpoints"] = float((flagged & unfair).mean())
        out["endpoints_flag_ground_truth_fair"] = float((flagged & ~unfair).mean())
    return out


def summarise(
    predictions: np.ndarray,
    sample_certified: np.ndarray,
    factors: np.ndarray,
    sibling_certified: np.ndarray | None = None,
    empirically_fair: np.ndarray | None = None,
    endpoint_predictions: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Table 2's figures from [N, 15] sibling predictions (and, when certified in full, the
    siblings' certified flags); labels are the siblings' object hue (factor 2).
    ``empirically_fair`` [N]: the endpoints analysis of the consumer's report, when the test
    bundle carries end points (:func:`endpoint_figures`), with ``endpoint_predictions`` (the
    report's center and end point predictions)."""
    unfair = np.array([len(set(row)) > 1 for row in predictions.tolist()], dtype=bool)
    result = {
        "ground_truth_unfair": float(unfair.mean()),
        "certified_but_ground_truth_unfair": float((sample_certified & unfair).mean()),
    }
    if empirically_fair is not None:
        result.update(
            endpoint_figures(sample_certified, empirically_fair, unfair, *(endpoint_predictions or ()))
        )
    correct = predictions == factors[..., 2]
    scales = factors[..., 3]
    result["sibling_accuracy"] = float(correct.mean())
    result["sibling_accuracy_per_scale"] = {
        int(s): float(correct[scales == s].mean()) for s in np.unique(scales)
    }
    # what the unfair samples are made of: abstentions (ABSTAIN is an outcome of its own, as in
    # the authors' code) or two different classes among the siblings that were classified
    abstained = predictions == ABSTAIN
    result["sibling_abstain"] = float(abstained.mean())
    result["ground_truth_unfair_classes"] = float(np.mean(
        [len(set(row) - {ABSTAIN}) > 1 for row in predictions.tolist()]
    ))  # fmt: skip
    # per-image errors (of classified siblings) where the fully correlated split never shows the hue-orientation pair
    # (hue 0-4 with orientation 8-14, hue 5-9 with 0-6) and where it does (orientation 7: none)
    hue, orientation = factors[..., 2], factors[..., 5]
    unseen = ((hue <= 4) & (orientation >= 8)) | ((hue >= 5) & (orientation <= 6))
    seen = ~unseen & (orientation != 7)
    for name, group in (("unseen", unseen & ~abstained), ("seen", seen & ~abstained)):
        # error rate among the siblings that were classified (abstentions counted above)
        result[f"sibling_error_{name}_pairs"] = float((~correct[group]).mean()) if group.any() else 0.0
    if sibling_certified is not None:
        any_certified = sibling_certified.any(axis=1)
        result.update(
            any_sibling_certified=float(any_certified.mean()),
            all_siblings_certified=float(sibling_certified.all(axis=1).mean()),
            any_certified_but_unfair=float((any_certified & unfair).mean()),
        )
    return result


def probe_figures(predictions: np.ndarray, factors: np.ndarray) -> dict:
    """An unsmoothed probe's figures from [N, 15] sibling predictions: the wrong siblings, their
    (true -> predicted hue) confusions, and :func:`summarise`'s figures without certificates."""
    hue = factors[..., 2]
    wrong = predictions != hue
    pairs = zip(hue[wrong].tolist(), predictions[wrong].tolist(), strict=True)
    confusions = Counter(f"{true}->{got}" for true, got in pairs)
    summary = summarise(predictions, np.zeros(len(predictions), dtype=bool), factors)
    return {
        "wrong_siblings": int(wrong.sum()),
        "confusions": dict(confusions.most_common()),
    } | {k: v for k, v in summary.items() if "certified" not in k}
