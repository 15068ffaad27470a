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

from pathlib import Path


class LassiError(Exception):
    """Base class: ``str(error)`` is the single line shown to the user."""

    exit_code = 1

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class UsageError(LassiError):
    exit_code = 2


class InvalidArtifactError(LassiError):
    exit_code = 3


class IntegrityError(LassiError):
    exit_code = 4


class SignatureError(LassiError):
    exit_code = 5


EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "internal": LassiError.exit_code,
    "usage": UsageError.exit_code,
    "invalid_artifact": InvalidArtifactError.exit_code,
    "integrity": IntegrityError.exit_code,
    "signature": SignatureError.exit_code,
}
