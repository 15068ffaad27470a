"""lassi.experiments: the paper's experiments on 3D Shapes (Table 2, the ablation, transfer, the
sibling probe) and the results page generator, as one tool (``lassi-experiments``).

Settings and Table 2's protocols are data (settings.toml, protocols.toml); an experiments folder
with its device and settings is a :class:`~lassi.experiments.workspace.Workspace`.
"""

from lassi.experiments.settings import Protocol, Settings, load_settings

__all__ = ["Protocol", "Settings", "load_settings"]
