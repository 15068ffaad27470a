"""lassi.producer: the producer role of LASSI."""

from lassi.spec.cli import tool_name

TOOL = tool_name("lassi-producer")
"""The name and version recorded as ``tool`` in every artifact this role writes."""
