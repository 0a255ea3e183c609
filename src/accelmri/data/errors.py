"""Typed errors for bad input data."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad input data: a one-line message naming the file and the problem.

    The CLI turns it into exit code 2 and writes nothing.

    Attributes:
        path: the offending file or folder.
        problem: what is wrong with it.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
