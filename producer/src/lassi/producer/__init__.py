"""lassi.producer: the producer role of LASSI."""

from typing import TYPE_CHECKING

from lassi.producer.tool import TOOL
from lassi.spec.runtime.lazy import lazy_exports

# The public API: train a fair encoder on a spec, encode (and certify) a split,
# export ONNX. Imported on first use, so that ``import lassi.producer``
# (and every command's start) stays light.
_API = {
    "EncoderTrainConfig": "lassi.producer.training",
    "train_encoder": "lassi.producer.training",
    "encode_split": "lassi.producer.encode",
    "load_encoder": "lassi.producer.base_function",
    "export_producer_onnx": "lassi.producer.onnx_export",
}
__all__ = [
    "TOOL",
    "EncoderTrainConfig",
    "train_encoder",
    "encode_split",
    "load_encoder",
    "export_producer_onnx",
]

if TYPE_CHECKING:
    from lassi.producer.base_function import load_encoder
    from lassi.producer.encode import encode_split
    from lassi.producer.onnx_export import export_producer_onnx
    from lassi.producer.training import EncoderTrainConfig, train_encoder


__getattr__ = lazy_exports(__name__, _API)
