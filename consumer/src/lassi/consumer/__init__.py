"""lassi.consumer: the consumer role of LASSI."""

from typing import TYPE_CHECKING

from lassi.consumer.tool import TOOL
from lassi.spec.runtime.lazy import lazy_exports

# The public API: train a classifier on a bundle, verify a certified bundle,
# predict through ONNX. Imported on first use, so that ``import lassi.consumer``
# (and every command's start) stays light.
_API = {
    "train_consumer_classifier": "lassi.consumer.classifier",
    "load_classifier": "lassi.consumer.classifier",
    "verify": "lassi.consumer.verification",
    "predict_bundle": "lassi.consumer.predict",
}
__all__ = [
    "TOOL",
    "train_consumer_classifier",
    "load_classifier",
    "verify",
    "predict_bundle",
]

if TYPE_CHECKING:
    from lassi.consumer.classifier import load_classifier, train_consumer_classifier
    from lassi.consumer.predict import predict_bundle
    from lassi.consumer.verification import verify


__getattr__ = lazy_exports(__name__, _API)
