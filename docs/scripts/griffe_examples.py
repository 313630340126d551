"""A griffe extension for the API reference: read a google-style ``Example:`` section as ``Examples:``.

griffe parses only the plural heading as an examples section (doctest lines become code); the
singular one would render as an admonition whose ``>>>`` lines turn into nested quotes.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:(\s*)$", re.MULTILINE)


class SingularExample(griffe.Extension):
    """Rewrite ``Example:`` headings to ``Examples:`` in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Run when griffe creates an object, before its docstring is parsed."""
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR.sub(r"\1Examples:\2", obj.docstring.value)
