"""The authors' endpoints analysis, producer side (eth-sri/lassi ``certify.py``).

Besides the center z_G, center smoothing (paper Sec. 4.3) runs again at each end of the
segment along every attribute vector, z_G − ε·a_i and z_G + ε·a_i (order a_1−, a_1+, a_2−, ...):
its smoothed representation there is what the consumer classifies to see whether a sample that
is certified fair also gets the same prediction at the ends of its set ("certified but
empirically unfair" otherwise; :mod:`lassi.consumer.endpoints`). It needs no ground-truth
siblings, so a regulator can run it on any data.

Each end point draws from its own per-sample streams: the seed of end point j is
``torch_seed(seed, sample_id, SELECTION, ENDPOINT_PURPOSE + j)``, fresh with respect to the
center's draws and to every other end point's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lassi.producer.base_function import BaseFunction
from lassi.spec.contract.models import CenterSmoothingParams
from lassi.spec.runtime.center_smoothing import BATCH_SIZE, CenterSmoothing
from lassi.spec.runtime.seeding import Stage, torch_seed

ENDPOINT_PURPOSE = 1000


def endpoint_latents(z_g: Tensor, vectors: Tensor, epsilon: float) -> Tensor:
    """[2m, D]: z_G − ε·a_i and z_G + ε·a_i for every row a_i of ``vectors`` [m, D] (z_G [D])."""
    flat = z_g.reshape(1, -1)
    step = epsilon * vectors.to(flat.dtype)
    return torch.stack([flat[0] - step, flat[0] + step], dim=1).reshape(-1, flat.shape[1])


def endpoint_seed(seed: int, sample_id: int, j: int) -> int:
    """The seed of end point j's center smoothing for one sample (its own streams)."""
    return torch_seed(seed, sample_id, Stage.SELECTION, ENDPOINT_PURPOSE + j)


def certify_endpoints(
    base: BaseFunction,
    z_g: Tensor,
    epsilon: float,
    params: CenterSmoothingParams,
    seed: int,
    sample_id: int,
    batch_size: int = BATCH_SIZE,
) -> dict[str, np.ndarray]:
    """Center smoothing at each end point of one sample: ``endpoint_z_cs`` [2m, k] (float32)
    and ``endpoint_status`` [2m] (CenterStatus codes)."""
    m = int(base.vectors.shape[0])
    ends = endpoint_latents(z_g, base.vectors, epsilon)
    centers, statuses = [], []
    for j, z_end in enumerate(ends):
        end_base = base.for_latent(z_end.reshape(z_g.shape))
        cert = CenterSmoothing(end_base, m, params, batch_size=batch_size).certify(
            endpoint_seed(seed, sample_id, j), sample_id
        )
        centers.append(np.asarray(cert.center, dtype=np.float32))
        statuses.append(int(cert.status))
    return {
        "endpoint_z_cs": np.stack(centers),
        "endpoint_status": np.asarray(statuses, dtype=np.uint8),
    }
