"""``lassi-consumer``: a thin click layer over the Python API of lassi.consumer."""

from __future__ import annotations

from lassi.spec.cli import role_group, tool_name

TOOL = tool_name("lassi-consumer")

main = role_group(
    "lassi-consumer",
    TOOL.split(" ", 1)[1],
    "The consumer: trains a noise-augmented classifier on representations and verifies individual fairness.",
)

if __name__ == "__main__":
    main()
