"""Siemens raw data (twix ``.dat``, VB and VD/VE/XA) reader for fully sampled Cartesian 2-D acquisitions.

Uses ``twixtools`` (PyPI, MIT; optional dependency: ``pip install "accelmri[twix]"``), imported only when a file
is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

__all__ = ["read_twix_kspace"]


def read_twix_kspace(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read the multi-coil k-space of a fully sampled Cartesian 2-D Siemens twix file.

    The last measurement of the file (``twixtools.read_twix(path)[-1]``; multi-raid files store adjustment
    scans first) is read and its imaging scans (``mdb.is_image_scan()``) are kept. Each scan is one
    phase-encode line, ``mdb.data`` of shape ``(coils, readout samples)``, placed at the line index given
    by its line counter ``mdb.cLin``.

    Orientation: the result is ``(C, readout, lines)``, i.e. ``(C, H, W)`` with the phase-encode direction along
    the last dim ``W`` (accelmri convention: 1-D masks undersample the last dim). Readout samples are kept as
    acquired: readout oversampling, if the sequence used any, is *not* removed (the Pulseq in-vivo data in
    ``shared/data/pulseq_invivo_brain`` have none). No shift is applied. For those data the coil-summed k-space
    energy peaks at ``(readout 63, line 63)``, one sample below the nominal centre ``(64, 64)`` that
    :func:`accelmri.physics.fft.ifft2c` assumes; this is consistent with the Pulseq design (phase-encode areas
    ``(j - N/2)·Δk``, so ``k_y = 0`` at line 64; ADC samples at dwell centres of a readout symmetric about the
    echo, so ``k_x = 0`` falls half-way between samples 63 and 64) plus an in-vivo echo shift. An integer
    roll cannot fix a half-sample offset, and a residual offset only adds a linear phase to the image: the
    magnitude (RSS) is unaffected.

    Args:
        path: path to the ``.dat`` file.

    Returns:
        ``(C, n_readout, n_lines)`` complex64 k-space (raw scanner units), DC at about
        ``(n_readout // 2, n_lines // 2)``.

    Raises:
        ImportError: if ``twixtools`` is not installed.
        DataError: (a ``ValueError``) naming the file, if it does not exist, twixtools cannot parse it, it holds
            no imaging scans, or its lines are not one fully sampled Cartesian 2-D frame (lines of different
            shapes, a line acquired more than once — slices, echoes, averages — or missing lines). A
            non-Cartesian acquisition whose spokes are labelled as lines of equal length (e.g. Pulseq without
            labels) cannot be told apart from the line counters alone.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(file, "file not found")
    try:
        import twixtools
    except ImportError as err:
        raise ImportError('reading Siemens twix files needs twixtools: pip install "accelmri[twix]"') from err

    try:
        measurements = twixtools.read_twix(str(file), verbose=False)
        scans = [mdb for mdb in measurements[-1]["mdb"] if mdb.is_image_scan()]
    except Exception as err:  # twixtools raises KeyError/ValueError/... on files it cannot parse
        raise DataError(file, f"not a readable Siemens twix file ({type(err).__name__}: {err})") from err
    if not scans:
        raise DataError(file, "no imaging scans found")

    line_shape = scans[0].data.shape
    if any(mdb.data.shape != line_shape for mdb in scans):
        shapes = sorted({mdb.data.shape for mdb in scans})
        raise DataError(file, f"lines of different shapes {shapes}: not a Cartesian 2-D acquisition")
    line_index = np.array([mdb.cLin for mdb in scans])
    n_lines = int(line_index.max()) + 1
    counts = np.bincount(line_index, minlength=n_lines)
    if (counts > 1).any():
        raise DataError(
            file,
            f"line {int(np.argmax(counts > 1))} acquired {int(counts.max())} times: "
            "only a single fully sampled 2-D frame is supported (no slices, echoes, averages or repetitions)",
        )
    if (counts == 0).any():
        raise DataError(file, f"{int((counts == 0).sum())} of {n_lines} lines missing: not fully sampled")

    kspace = np.empty((n_lines, *line_shape), dtype=np.complex64)  # (lines, coils, readout)
    kspace[line_index] = np.stack([mdb.data for mdb in scans])
    return torch.from_numpy(np.ascontiguousarray(kspace.transpose(1, 2, 0)))
