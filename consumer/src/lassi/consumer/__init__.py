"""lassi.consumer: the consumer role of LASSI."""

from lassi.spec.cli import tool_name

TOOL = tool_name("lassi-consumer")
"""The name and version recorded as ``tool`` in every artifact this role writes."""
