"""File-output helpers shared by every layer that writes: outputs appear atomically or not at all."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_folder", "atomic_output", "write_json_atomic"]


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


@contextmanager
def atomic_folder(path: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a fresh, empty temporary folder next to ``path``; once the block succeeds, rename it onto ``path``.

    The folder appears whole or not at all: a failed block removes the temporary folder and everything in it.
    With ``overwrite``, an existing ``path`` (file or folder) is first renamed aside, then deleted once the new
    folder is in place (for that instant neither exists; a partial folder never does).

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is false (checked before anything is created).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    old = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
    tmp.mkdir()
    try:
        yield tmp
        if path.exists() or path.is_symlink():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old.exists() or old.is_symlink():
                os.replace(old, path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)


def write_json_atomic(path: Path, payload: object, *, overwrite: bool = False) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically (see :func:`atomic_output`).

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is false.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))
