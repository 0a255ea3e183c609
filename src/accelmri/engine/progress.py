"""Progress display for the long-running commands (``restore``, ``evaluate``, ``simulate``): rich, on stderr, or
nothing."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["progress_display"]


def progress_display(enabled: bool) -> Progress:
    """A rich progress bar on stderr (done/total, elapsed, ETA), like training's; disabled (prints nothing) unless
    ``enabled``. Use it as a context manager; ``add_task``, ``advance`` and ``update`` work either way."""
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=True)
