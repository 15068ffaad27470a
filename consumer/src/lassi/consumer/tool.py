"""The name and version this role records as ``tool`` in every artifact it writes (a leaf module:
the role's modules import it from here, not from the package, which imports them)."""

from lassi.spec.runtime.cli import tool_name

TOOL = tool_name("lassi-consumer")
