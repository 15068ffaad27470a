"""Center smoothing, the producer's certification step (paper Sec. 4.3).

The algorithm lives in :mod:`lassi.spec.center_smoothing`: the regulator's auditor replays it
(``lassi-regulator audit``) and must not depend on the producer's package, so it belongs to the
shared contract. This module is the producer-side name of the same objects.
"""

from lassi.spec.center_smoothing import (
    CenterCertificate,
    CenterSmoothing,
    CenterSmoothingParams,
)

__all__ = ["CenterCertificate", "CenterSmoothing", "CenterSmoothingParams"]
