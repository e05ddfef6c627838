"""Payload templates: ``"{{ prev.total }}"`` in a workflow step, ``"{{ user_id }}"`` in a ``unique_key``.

A value that is exactly one ``{{ path }}`` becomes the referenced value itself (a number stays a number, a list a
list); inside longer text each reference is written as text. A path is a name followed by ``.field`` or ``.0``
(a list index). Pure functions: the loader checks templates with them, workers render them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from jobkit.errors import TemplateError

__all__ = ["TemplateError", "references", "render"]

_REF = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
_OPEN = re.compile(r"\{\{")


def references(template: Any) -> list[str]:
    """Every path a template refers to; raises TemplateError for a ``{{`` that is not a valid reference."""
    if isinstance(template, str):
        found = _REF.findall(template)
        if len(_OPEN.findall(template)) != len(found):
            raise TemplateError(f"malformed reference in {template!r}")
        return list(found)
    if isinstance(template, Mapping):
        return [ref for value in template.values() for ref in references(value)]
    if isinstance(template, list | tuple):
        return [ref for value in template for ref in references(value)]
    return []


def _lookup(path: str, context: Mapping[str, Any]) -> Any:
    value: Any = context
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise TemplateError(f"{{{{ {path} }}}}: nothing at {'.'.join(walked)!r}")
    return value


def render(template: Any, context: Mapping[str, Any]) -> Any:
    """The template with every reference replaced from ``context``."""
    if isinstance(template, str):
        whole = _REF.fullmatch(template.strip())
        if whole:
            return _lookup(whole.group(1), context)

        def text(match: re.Match[str]) -> str:
            value = _lookup(match.group(1), context)
            return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

        return _REF.sub(text, template)
    if isinstance(template, Mapping):
        return {key: render(value, context) for key, value in template.items()}
    if isinstance(template, list | tuple):
        return [render(value, context) for value in template]
    return template
