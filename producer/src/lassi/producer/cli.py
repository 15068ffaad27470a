"""``lassi-producer``: a thin click layer over the Python API of lassi.producer."""

from __future__ import annotations

from lassi.spec.cli import role_group, tool_name

TOOL = tool_name("lassi-producer")

main = role_group(
    "lassi-producer",
    TOOL.split(" ", 1)[1],
    "The producer: trains the fair encoder and exports center-smoothed representations with certified radii.",
)

if __name__ == "__main__":
    main()
