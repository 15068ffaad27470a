"""LASSI regulator: data, Glow flow, attribute vectors and similarity specs."""

from typing import TYPE_CHECKING

from lassi.regulator.tool import TOOL
from lassi.spec.runtime.lazy import lazy_exports

# The public API: train a Glow, define a similarity spec, load it, show it, audit a
# producer's bundle. Imported on first use, so that ``import lassi.regulator``
# (and every command's start) stays light.
_API = {
    "DatasetConfig": "lassi.regulator.data_config",
    "GlowTrainConfig": "lassi.regulator.training",
    "train_glow": "lassi.regulator.training",
    "define_spec": "lassi.regulator.similarity",
    "load_glow": "lassi.regulator.similarity",
    "SimilaritySet": "lassi.regulator.similarity",
    "show_spec": "lassi.regulator.show",
    "audit_bundle": "lassi.regulator.audit",
}
__all__ = [
    "TOOL",
    "DatasetConfig",
    "GlowTrainConfig",
    "train_glow",
    "define_spec",
    "load_glow",
    "SimilaritySet",
    "show_spec",
    "audit_bundle",
]

if TYPE_CHECKING:
    from lassi.regulator.audit import audit_bundle
    from lassi.regulator.data_config import DatasetConfig
    from lassi.regulator.show import show_spec
    from lassi.regulator.similarity import SimilaritySet, define_spec, load_glow
    from lassi.regulator.training import GlowTrainConfig, train_glow


__getattr__ = lazy_exports(__name__, _API)
