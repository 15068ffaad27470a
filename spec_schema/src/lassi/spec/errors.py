"""Errors a user sees: one line naming the file and the problem, one exit status per class.

| exit status | class | meaning |
| --- | --- | --- |
| 1 | ``LassiError`` | any other failure (a bug: please report it) |
| 2 | ``UsageError`` | bad command-line usage, options or input data folders |
| 3 | ``InvalidArtifactError`` | a file is not a valid artifact of the expected kind |
| 4 | ``IntegrityError`` | a valid artifact does not belong to the chain it is used in |
| 5 | ``SignatureError`` | a signature is missing, malformed or made by an untrusted key |
"""

from __future__ import annotations

import unicodedata
from pathlib import Path


def printable(text: object) -> str:
    """``text`` with control and format characters escaped (ESC, BEL, CR, newline, RTL marks).

    Every string that came from a file or a path goes through here before it is printed, so a
    file cannot colour, clear or rewrite the terminal, nor forge extra lines of output.
    """
    out = []
    for char in str(text):
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


class LassiError(Exception):
    """Base class: ``str(error)`` is the single line shown to the user (controls escaped)."""

    exit_code = 1

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else printable(path)
        self.problem = printable(problem)
        super().__init__(f"{self.path}: {self.problem}" if self.path else self.problem)


class UsageError(LassiError):
    exit_code = 2


class InvalidArtifactError(LassiError):
    exit_code = 3


class IntegrityError(LassiError):
    exit_code = 4


class SignatureError(LassiError):
    exit_code = 5


def validation_message(error: Exception, what: str = "field") -> str:
    """One line for a pydantic ``ValidationError``: the first field, its problem, how many more."""
    errors = error.errors()  # type: ignore[attr-defined]
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"]) or "value"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{what} '{loc}': {first['msg']}{more}"


EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "internal": LassiError.exit_code,
    "usage": UsageError.exit_code,
    "invalid_artifact": InvalidArtifactError.exit_code,
    "integrity": IntegrityError.exit_code,
    "signature": SignatureError.exit_code,
}
