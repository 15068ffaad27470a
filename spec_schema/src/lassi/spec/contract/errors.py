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

import re
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


class TrainingDiverged(UsageError):
    """A training run's loss became NaN or Inf: the options (most often --lr) are at fault, not
    a file, and not the run's own checkpoint (exit 2)."""


class InvalidArtifactError(LassiError):
    exit_code = 3


class IntegrityError(LassiError):
    exit_code = 4


class SignatureError(LassiError):
    exit_code = 5


_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")
_SHOULD = re.compile(r"^[A-Z][a-z]*(?: [a-z]+)? should (be|have|match|not)\b")
_PLAIN = {
    "Field required": "is required",
    "Extra inputs are not permitted": "is not a known field",
    "Input should be a finite number": "must be a finite number",
}
_TYPE_LOC = re.compile(r"^(str|int|float|bool|bytes|none|list|dict|tuple|set|[a-z-]+\[.*\])$")


def plain_message(message: str) -> str:
    """A pydantic error message in the project's words: no "Value error," prefix, and
    "Input should be ..." as "must be ..." (the library's phrasing never reaches a user)."""
    for prefix in _PYDANTIC_PREFIXES:
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if message in _PLAIN:
        return _PLAIN[message]
    return _SHOULD.sub(lambda match: f"must {match.group(1)}", message)


def validation_message(
    error: Exception, what: str = "field", names: dict[str, str] | None = None
) -> str:
    """One line for a pydantic ``ValidationError``: the first field, its problem, how many more.

    ``"<what> '<field>': <problem>"``; a problem of the whole model (a validator's own message)
    is that message alone; ``names`` maps a field to what the user typed (e.g. ``image_size``
    to ``--image-size``), which then replaces ``<what> '<field>'``. The problem is worded by
    :func:`plain_message`."""
    errors = error.errors()  # type: ignore[attr-defined]
    first = errors[0]
    parts = [str(p) for p in first["loc"] if not _TYPE_LOC.match(str(p))]
    loc = ".".join(parts)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    problem = plain_message(str(first["msg"]))
    if not loc:
        return f"{problem}{more}"
    if names and loc in names:
        return f"{names[loc]}: {problem}{more}"
    return f"{what} '{loc}': {problem}{more}"


EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "internal": LassiError.exit_code,
    "usage": UsageError.exit_code,
    "invalid_artifact": InvalidArtifactError.exit_code,
    "integrity": IntegrityError.exit_code,
    "signature": SignatureError.exit_code,
}
