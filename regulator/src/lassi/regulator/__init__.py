"""LASSI regulator: data, Glow flow, attribute vectors and similarity specs."""

from lassi.spec.cli import tool_name

TOOL = tool_name("lassi-regulator")
"""The name and version recorded as ``tool`` in every artifact this role writes."""
