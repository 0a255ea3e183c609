"""Reports from evaluation folders: Markdown/CSV tables, example figures and one self-contained HTML page.

:func:`report` reads what ``accelmri evaluate`` wrote into each folder (``metrics.json``, else ``metrics.csv``)
and, where present, restored example slices (``examples.npz``, :mod:`accelmri.report.figures`), and writes into
``out_dir``:

* ``results.md``: the summary (mean ± std per method, paired t-test p-values against the baseline), the mean
  differences, the per-volume scores and links to the PNGs;
* ``results.csv``: the summary as numbers (only when a folder holds metrics);
* ``<NN>_<folder>_slice<i>.png``: the example figures of folder ``NN`` (in argument order);
* ``report.html``: all of it in one page, the PNGs embedded (:mod:`accelmri.report.html`).

Files are written atomically; existing ones are refused without ``overwrite`` (checked before any work).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from accelmri.data.errors import DataError
from accelmri.io import atomic_output
from accelmri.report.figures import (
    EXAMPLES_FILE,
    Examples,
    figure_paths,
    load_examples,
    save_example_figures,
    save_examples,
)
from accelmri.report.html import render_html
from accelmri.report.tables import read_evaluation, results_table, to_csv, to_markdown

__all__ = ["EXAMPLES_FILE", "Examples", "load_examples", "report", "save_examples"]

_EVALUATION_FILES = ("metrics.json", "metrics.csv")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"


def report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    baseline: str | None = None,
    max_slices: int = 3,
    overwrite: bool = False,
    title: str = "accelmri report",
) -> Path:
    """Gather evaluation folders into ``results.md``, ``results.csv``, PNGs and ``report.html``.

    Args:
        run_dirs: folders written by ``accelmri evaluate`` (with ``metrics.json`` or ``metrics.csv``) and/or
            holding ``examples.npz``.
        out_dir: output folder (created).
        baseline: the method the others are tested against (default: the first one read).
        max_slices: most example slices drawn per ``examples.npz``.
        overwrite: replace existing output files.
        title: the page title.

    Returns:
        The ``report.html`` path.

    Raises:
        ValueError: no folders, ``max_slices < 1`` or an unknown baseline.
        DataError: a folder that is missing or holds no evaluation output, or unreadable files (naming them).
        FileExistsError: an output exists and ``overwrite`` is false.
    """
    if not run_dirs:
        raise ValueError("report needs at least one evaluation folder")
    runs = [Path(d) for d in run_dirs]
    for run in runs:
        if not run.is_dir():
            raise DataError(run, "not a folder (expected the output folder of accelmri evaluate)")
        if not any((run / name).is_file() for name in (*_EVALUATION_FILES, EXAMPLES_FILE)):
            raise DataError(run, f"holds none of {', '.join((*_EVALUATION_FILES, EXAMPLES_FILE))}")
    methods = read_evaluation(runs)
    table = results_table(methods, baseline) if methods else None
    if table is None and baseline is not None:
        raise ValueError(f"baseline {baseline!r} given, but the folders hold no metrics")
    examples = [(k, run, load_examples(run / EXAMPLES_FILE)) for k, run in enumerate(runs)
                if (run / EXAMPLES_FILE).is_file()]

    out = Path(out_dir)
    prefixes = {k: f"{k:02d}_{_slug(run.name)}" for k, run, _ in examples}
    pngs = [p for k, _, ex in examples for p in figure_paths(ex, out, prefixes[k], max_slices)]
    names = ["report.html", "results.md", *(["results.csv"] if table is not None else [])]
    existing = [str(p) for p in [*pngs, *(out / name for name in names)] if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)}: already exists (pass overwrite / --overwrite to replace)")

    out.mkdir(parents=True, exist_ok=True)
    for k, run, ex in examples:
        save_example_figures(ex, out, prefixes[k], max_slices, overwrite=True, title=run.name)
    page = out / "report.html"
    outputs = {page: render_html(title, table, pngs, runs),
               out / "results.md": to_markdown(table, [p.name for p in pngs])}
    if table is not None:
        outputs[out / "results.csv"] = to_csv(table)
    for path, text in outputs.items():
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return page
