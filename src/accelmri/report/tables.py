"""Result tables from evaluation outputs: per-method mean ± std and paired t-tests against a baseline.

The input is what ``accelmri evaluate`` writes into a folder (:mod:`accelmri.engine.evaluate`): ``metrics.json``
(``methods[].name, model, per_volume[].volume, psnr, ssim, nmse``), or, without it, ``metrics.csv``
(``method, volume, subject, contrast, slices, psnr, ssim, nmse``; the model column is then unknown). An ``lpips``
score (``accelmri evaluate --lpips-backbone ... --lpips-linear ...``) is read when present for every volume of a
method, and tabulated like NMSE (a lower-is-better column; no cell is marked best) when every method has it;
otherwise the tables have PSNR, SSIM and NMSE only. Methods of several folders are merged; a name seen twice gets
its folder's name appended (``bicubic [run2]``).

Per method: mean ± sample standard deviation over volumes (:func:`accelmri.metrics.aggregate`). Against the
baseline (default: the first method): a two-sided paired t-test per metric on the volumes both methods scored
(:func:`accelmri.metrics.paired_ttest`, SANet's Tables I–II), with the mean difference ``method − baseline``. A
p-value is ``–`` with fewer than two common volumes, non-finite scores (an exact reconstruction's infinite PSNR) or
identical scores.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from accelmri.data.errors import DataError
from accelmri.metrics import aggregate, paired_ttest

__all__ = [
    "LPIPS_METRIC",
    "METRICS",
    "Comparison",
    "MethodScores",
    "ResultsTable",
    "describe",
    "difference_rows",
    "markdown_table",
    "read_evaluation",
    "results_table",
    "summary_rows",
    "to_csv",
    "to_markdown",
    "volume_rows",
]

#: The metrics, in table order.
METRICS = ("psnr", "ssim", "nmse")

#: The optional perceptual metric (lower is better), tabulated after :data:`METRICS` when every method has it.
LPIPS_METRIC = "lpips"

_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "nmse": "NMSE", LPIPS_METRIC: "LPIPS"}
_SHORT = {"psnr": "PSNR", "ssim": "SSIM", "nmse": "NMSE", LPIPS_METRIC: "LPIPS"}
_DIGITS = {"psnr": 2, "ssim": 4, "nmse": 5, LPIPS_METRIC: 4}


@dataclass(frozen=True)
class MethodScores:
    """Per-volume scores of one evaluated method.

    Attributes:
        name: the method name (unique in a report).
        model: the registered model name (``""`` when read from a CSV).
        split: the evaluated split, if known.
        run: the folder the scores were read from.
        volumes: ``{volume file: {"psnr", "ssim", "nmse"}}`` in evaluation order (plus ``"lpips"`` in every volume's
            dict when the evaluation computed it).
    """

    name: str
    model: str
    split: str | None
    run: Path
    volumes: dict[str, dict[str, float]]

    def summary(self) -> dict[str, dict[str, float]]:
        """``{metric: {"mean", "std"}}`` over volumes (sample std; NaN for a single volume)."""
        return aggregate(list(self.volumes.values()))


@dataclass(frozen=True)
class Comparison:
    """A method against the baseline on one metric.

    Attributes:
        n: common volumes.
        pvalue: two-sided paired t-test p-value, or ``None`` when undefined (see the module docstring).
        mean_difference: mean of ``method − baseline`` over the common volumes, or ``None`` without any.
    """

    n: int
    pvalue: float | None
    mean_difference: float | None


@dataclass(frozen=True)
class ResultsTable:
    """Methods, their baseline and the comparisons against it.

    Attributes:
        baseline: the baseline's name.
        methods: every method, in reading order (the baseline included).
        comparisons: ``{method: {metric: Comparison}}`` for every method but the baseline.
        metrics: the tabulated metrics: :data:`METRICS`, then ``"lpips"`` when every method has it.
    """

    baseline: str
    methods: list[MethodScores]
    comparisons: dict[str, dict[str, Comparison]]
    metrics: tuple[str, ...] = METRICS


def _number(value: float, digits: int) -> str:
    return "–" if not math.isfinite(value) else f"{value:.{digits}f}"


def _unique(name: str, run: Path, taken: set[str]) -> str:
    unique, copy = name, 2
    if unique in taken:
        unique = f"{name} [{run.name}]"
    while unique in taken:
        unique, copy = f"{name} [{run.name}#{copy}]", copy + 1
    taken.add(unique)
    return unique


def _scores(row: object, where: str, source: Path) -> dict[str, float]:
    try:
        scores = {metric: float(row[metric]) for metric in METRICS}  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(source, f"{where}: needs numeric {', '.join(METRICS)} ({type(err).__name__}: {err})") from err
    value = row.get(LPIPS_METRIC) if isinstance(row, dict) else None
    if value is not None and value != "":  # optional: absent key, JSON null or an empty CSV cell
        try:
            scores[LPIPS_METRIC] = float(value)
        except (TypeError, ValueError) as err:
            raise DataError(source, f"{where}: {LPIPS_METRIC} is not a number ({value!r})") from err
    return scores


def _consistent(volumes: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The volumes' scores, LPIPS dropped from all of them unless every volume has it."""
    if all(LPIPS_METRIC in scores for scores in volumes.values()):
        return volumes
    return {volume: {m: v for m, v in scores.items() if m != LPIPS_METRIC} for volume, scores in volumes.items()}


def _from_json(path: Path, run: Path) -> list[MethodScores]:
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(path, f"cannot read the metrics JSON ({err})") from err
    try:
        methods = [(str(m["name"]), str(m.get("model", "")), list(m["per_volume"])) for m in payload["methods"]]
        entries = [[str(v["volume"]) for v in per_volume] for _, _, per_volume in methods]
    except (KeyError, TypeError, AttributeError) as err:
        raise DataError(path, "not an evaluation metrics.json: needs methods[].name and methods[].per_volume[].volume "
                        f"({type(err).__name__}: {err})") from err
    split = str(payload["split"]) if payload.get("split") else None
    result = []
    for (name, model, per_volume), volumes in zip(methods, entries, strict=True):
        scores = {volume: _scores(v, f"{name}: {volume}", path) for volume, v in zip(volumes, per_volume, strict=True)}
        result.append(MethodScores(name, model, split, run, _consistent(scores)))
    return result


def _from_csv(path: Path, run: Path) -> list[MethodScores]:
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(path, f"cannot read the metrics CSV ({err})") from err
    by_method: dict[str, dict[str, dict[str, float]]] = {}
    for line, row in enumerate(rows, start=2):
        if not row.get("method") or not row.get("volume"):
            raise DataError(path, f"line {line}: needs the columns method, volume, {', '.join(METRICS)}")
        by_method.setdefault(row["method"], {})[row["volume"]] = _scores(row, f"line {line}", path)
    return [MethodScores(name, "", None, run, _consistent(volumes)) for name, volumes in by_method.items()]


def read_evaluation(run_dirs: Sequence[str | Path]) -> list[MethodScores]:
    """The methods scored in evaluation folders (``metrics.json``, else ``metrics.csv``), in folder order.

    Folders with neither file contribute nothing. Method names are made unique (see the module docstring).

    Raises:
        DataError: a metrics file that cannot be read or lacks per-volume scores (naming it).
    """
    methods: list[MethodScores] = []
    taken: set[str] = set()
    for run in map(Path, run_dirs):
        if (run / "metrics.json").is_file():
            found = _from_json(run / "metrics.json", run)
        elif (run / "metrics.csv").is_file():
            found = _from_csv(run / "metrics.csv", run)
        else:
            continue
        for method in found:
            if not method.volumes:
                raise DataError(run, f"method {method.name!r} has no per-volume scores")
            name = _unique(method.name, run, taken)
            methods.append(MethodScores(name, method.model, method.split, method.run, method.volumes))
    return methods


def _compare(method: MethodScores, baseline: MethodScores, metric: str) -> Comparison:
    common = [v for v in baseline.volumes if v in method.volumes]
    a = [method.volumes[v][metric] for v in common]
    b = [baseline.volumes[v][metric] for v in common]
    difference = math.fsum(x - y for x, y in zip(a, b, strict=True)) / len(common) if common else None
    try:
        pvalue: float | None = paired_ttest(a, b).pvalue
    except ValueError:  # fewer than 2 pairs, or non-finite scores
        pvalue = None
    if pvalue is not None and not math.isfinite(pvalue):  # identical scores
        pvalue = None
    return Comparison(len(common), pvalue, difference)


def results_table(methods: Sequence[MethodScores], baseline: str | None = None) -> ResultsTable:
    """Compare every method with ``baseline`` (default: the first method).

    Raises:
        ValueError: no methods, or an unknown baseline name (the message lists the methods).
    """
    if not methods:
        raise ValueError("no evaluated methods to tabulate")
    names = [m.name for m in methods]
    chosen = names[0] if baseline is None else baseline
    if chosen not in names:
        raise ValueError(f"baseline {chosen!r} is not an evaluated method; methods: {', '.join(names)}")
    reference = methods[names.index(chosen)]
    with_lpips = all(LPIPS_METRIC in scores for m in methods for scores in m.volumes.values())
    metrics = (*METRICS, LPIPS_METRIC) if with_lpips else METRICS
    comparisons = {m.name: {metric: _compare(m, reference, metric) for metric in metrics}
                   for m in methods if m.name != chosen}
    return ResultsTable(chosen, list(methods), comparisons, metrics)


def summary_rows(table: ResultsTable) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary: method, model, volumes, mean ± std per metric, p-value per metric."""
    metrics = table.metrics
    header = ["method", "model", "volumes", *(_LABELS[m] for m in metrics), *(f"p {_SHORT[m]}" for m in metrics)]
    rows = []
    for method in table.methods:
        summary = method.summary()
        cells = [f"{_number(summary[m]['mean'], _DIGITS[m])} ± {_number(summary[m]['std'], _DIGITS[m])}"
                 for m in metrics]
        if method.name == table.baseline:
            pvalues = ["baseline"] * len(metrics)
        else:
            pvalues = [_pvalue(table.comparisons[method.name][m]) for m in metrics]
        rows.append([method.name, method.model or "–", str(len(method.volumes)), *cells, *pvalues])
    return header, rows


def _pvalue(comparison: Comparison) -> str:
    return "–" if comparison.pvalue is None else f"{comparison.pvalue:.3g}"


def volume_rows(table: ResultsTable) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-volume scores: method, volume (file name), one column per metric."""
    header = ["method", "volume", *(_LABELS[m] for m in table.metrics)]
    rows = [[method.name, Path(volume).name, *(_number(scores[m], _DIGITS[m]) for m in table.metrics)]
            for method in table.methods for volume, scores in method.volumes.items()]
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 2) -> list[str]:
    """The lines of a Markdown table: the first ``text_columns`` columns left-aligned, the others right-aligned
    (numbers); ``|`` in a cell is escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    align = ["---" if i < text_columns else "---:" for i in range(len(header))]
    return [line(header), "|" + "|".join(align) + "|", *(line(row) for row in rows)]


def describe(table: ResultsTable) -> str:
    """One sentence on what the table shows (splits, statistics, baseline)."""
    splits = sorted({m.split for m in table.methods if m.split})
    where = f" on the {', '.join(splits)} split{'s' if len(splits) > 1 else ''}" if splits else ""
    lpips = "; LPIPS: AlexNet v0.1, lower is better" if LPIPS_METRIC in table.metrics else ""
    return (f"Mean ± sample std over volumes{where} (fastMRI metrics, original units{lpips}); p: two-sided paired "
            f"t-test against the baseline {table.baseline} on the volumes both scored.")


def to_markdown(table: ResultsTable | None, figures: Sequence[str] = ()) -> str:
    """``results.md``: the summary, the per-volume scores (without a table: none) and links to ``figures`` (file
    names beside it)."""
    lines = ["# Results"]
    if table is not None:
        lines += ["", describe(table), "", *markdown_table(*summary_rows(table))]
        if table.comparisons:
            lines += ["", f"Mean differences against {table.baseline} (method − baseline, common volumes):", "",
                      *markdown_table(*difference_rows(table), text_columns=1)]
        lines += ["", "## Per volume", "", *markdown_table(*volume_rows(table))]
    if figures:
        lines += ["", "## Examples", "", *(f"![{name}]({name})" for name in figures)]
    return "\n".join(lines) + "\n"


def difference_rows(table: ResultsTable) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the mean differences ``method − baseline``: method, common volumes, one column per
    metric (the baseline has no row)."""
    header = ["method", "common volumes", *(f"Δ {_LABELS[m]}" for m in table.metrics)]
    rows = []
    for name, comparison in table.comparisons.items():
        cells = []
        for metric in table.metrics:
            value = comparison[metric].mean_difference
            cells.append("–" if value is None or not math.isfinite(value) else f"{value:+.{_DIGITS[metric]}f}")
        rows.append([name, str(comparison[METRICS[0]].n), *cells])
    return header, rows


def to_csv(table: ResultsTable) -> str:
    """``results.csv``: one row per method with mean, std, p-value and mean difference per metric."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [f"{m}_{part}" for m in table.metrics for part in ("mean", "std", "p", "difference")]
    writer.writerow(["method", "model", "split", "volumes", "baseline", *columns])
    for method in table.methods:
        summary = method.summary()
        comparison = table.comparisons.get(method.name)
        cells = []
        for metric in table.metrics:
            c = comparison[metric] if comparison is not None else None
            cells += [repr(summary[metric]["mean"]), repr(summary[metric]["std"]),
                      "" if c is None or c.pvalue is None else repr(c.pvalue),
                      "" if c is None or c.mean_difference is None else repr(c.mean_difference)]
        writer.writerow([method.name, method.model, method.split or "", len(method.volumes), table.baseline, *cells])
    return buffer.getvalue()
