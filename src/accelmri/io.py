"""File-output helpers shared by every layer that writes: outputs appear atomically or not at all."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "write_json_atomic"]


@contextmanager
def atomic_output(path: Path, *, overwrite: bool, suffix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path``; once the block succeeds, move it onto ``path``.

    The temporary file lives in the same folder (so :func:`os.replace` is an atomic rename) and ends with
    ``suffix`` (writers such as nibabel choose the format from it). It is removed if the block fails, so a
    failed write leaves nothing behind.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is false (checked before writing).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: object, *, overwrite: bool = False) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically (see :func:`atomic_output`).

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is false.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))
