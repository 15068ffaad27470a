"""``lassi-regulator``: a thin click layer over the Python API of lassi.regulator."""

from __future__ import annotations

from lassi.spec.cli import role_group, tool_name

TOOL = tool_name("lassi-regulator")

main = role_group(
    "lassi-regulator",
    TOOL.split(" ", 1)[1],
    "The regulator: trains the Glow flow, computes attribute vectors, fixes epsilon and writes the similarity spec.",
)

if __name__ == "__main__":
    main()
