"""The authors' endpoints analysis, consumer side (eth-sri/lassi ``certify.py``).

A bundle written by ``lassi-producer encode --certify --endpoints`` carries, for every sample,
the center-smoothed representation at each segment end z_G ± ε·a_i. The consumer's smoothed
classifier predicts there as it does at the center (PREDICT, Cohen et al. 2019, on n0 draws): a
sample is *empirically fair* when the center has a prediction and every end point the same one
(an end point whose center smoothing abstained, or whose PREDICT abstained, counts as another
prediction, as in the authors' code); a certified-fair sample that is not is reported as
*certified but empirically unfair*. Each end point draws from its own streams,
``torch_seed(seed, sample_id, ESTIMATION, ENDPOINT_PURPOSE + j)``.
"""

from __future__ import annotations

import numpy as np

from lassi.consumer.randomized_smoothing import ABSTAIN
from lassi.spec.contract.models import CenterStatus, EndpointCheck, ReportStatus
from lassi.spec.runtime.seeding import Stage, torch_seed

ENDPOINT_PURPOSE = 1000


def endpoint_predictions(
    smooth,
    centers: np.ndarray,
    statuses: np.ndarray,
    n0: int,
    alpha: float,
    seed: int,
    sample_id: int,
) -> np.ndarray:
    """[2m] smoothed predictions at one sample's end points (``ABSTAIN`` where center smoothing
    abstained there or PREDICT abstains)."""
    out = np.full(len(statuses), ABSTAIN, np.int64)
    for j, (center, status) in enumerate(zip(centers, statuses, strict=True)):
        if int(status) == CenterStatus.CERTIFIED:
            stream = torch_seed(seed, sample_id, Stage.ESTIMATION, ENDPOINT_PURPOSE + j)
            out[j] = smooth.predict(center, n0, alpha, stream, sample_id)
    return out


def empirically_fair(center_prediction: int, ends: np.ndarray) -> bool:
    """The center has a prediction and every end point the same one."""
    return center_prediction != ABSTAIN and bool((ends == center_prediction).all())


def endpoint_check(status: np.ndarray, fair: np.ndarray, endpoints: int) -> EndpointCheck:
    """The report's counts from the per-sample report status and empirical fairness."""
    fair = fair.astype(bool)
    certified = status == ReportStatus.CERTIFIED
    return EndpointCheck(
        endpoints=endpoints,
        empirically_fair=int(fair.sum()),
        certified_empirically_unfair=int((certified & ~fair).sum()),
    )


def endpoint_warning(check: EndpointCheck, n_certified: int) -> str | None:
    """A report warning when certified samples change prediction at an end of their segment."""
    if check.certified_empirically_unfair == 0:
        return None
    return (
        f"{check.certified_empirically_unfair} of {n_certified} certified samples are empirically "
        f"unfair: an end point z_G +- eps*a_i of their segment gets another smoothed prediction "
        "(or none) than the center"
    )
