"""Griffe extension (mkdocs.yml loads it): the docstrings' Sphinx roles as links of the API reference.

The docstrings cross-reference with Sphinx roles (``:func:`lowres```, ``:class:`~accelmri.physics.Acquisition```),
which Markdown would print verbatim. Each role becomes an optional autorefs link: a link where the name resolves
(in the docstring owner's scope, as Python would) to an object the reference renders, plain code otherwise (a
private helper, torch, ...), so an unresolved name is never a warning.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|data|attr|meth|mod|exc|obj|const):`(?P<target>[^`]+)`")


def _identifier(obj: griffe.Object, target: str) -> str:
    head, _, rest = target.partition(".")
    try:
        resolved = obj.resolve(head)
    except (griffe.NameResolutionError, AttributeError, KeyError):
        return target
    return f"{resolved}.{rest}" if rest else resolved


def _link(obj: griffe.Object, match: re.Match[str]) -> str:
    target = match["target"].strip()
    short = target.startswith("~")
    target = target.lstrip("~.")
    title = target.rsplit(".", 1)[-1] if short else target
    identifier = html.escape(_identifier(obj, target), quote=True)
    return f'<autoref identifier="{identifier}" optional><code>{html.escape(title)}</code></autoref>'


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = ROLE.sub(lambda m: _link(obj, m), obj.docstring.value)
