"""Reading a YAML node tree with marks, so every problem can say FILE:LINE:COL and all of them are told at once.

``yaml.compose`` keeps each value's position and shows duplicate keys (``safe_load`` silently keeps the last one).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from jobkit.durations import DurationError, parse_duration
from jobkit.errors import ConfigError, Problem, did_you_mean

__all__ = ["MAX_SIZE", "Entry", "Reader"]

#: The largest size jobs.yaml may give (a payload limit above this would let one task fill Redis).
MAX_SIZE = 64 * 1024 * 1024
_SIZE = re.compile(r"(\d{1,12})\s*(|b|kb|kib|mb|mib|gb|gib)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}

_INT = "tag:yaml.org,2002:int"
_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_FLOAT = "tag:yaml.org,2002:float"


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    kind = {_INT: "a number", _FLOAT: "a number", _BOOL: "a boolean", _NULL: "nothing"}.get(node.tag, "text")
    return f"{kind} ({node.value!r})" if node.tag != _NULL else kind


@dataclass
class Entry:
    """One ``key: value`` pair of a mapping, with where the key was written."""

    key: str
    key_node: yaml.Node
    node: yaml.Node


@dataclass
class Reader:
    """Collects problems while turning nodes into values; ``raise_if_any`` raises them together."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    # -- documents ------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, missing: str = "set its path or create it") -> tuple[Reader, yaml.Node]:
        """A reader for ``path`` and the file's root node; raises :class:`~jobkit.errors.ConfigError` when the file
        cannot be read, is not YAML, or is empty. ``missing`` is the hint when it does not exist."""
        reader = cls(str(path))
        root = reader.compose(path, missing)
        if root is None:
            reader.raise_if_any()
            raise AssertionError("unreachable: compose reported no problem")
        return reader, root

    def compose(self, path: Path, missing: str = "set its path or create it") -> yaml.Node | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.problems.append(Problem(self.file, 0, 0, "", "file not found", missing))
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(Problem(self.file, 1, 1, "", f"cannot read the file: {exc}"))
            return None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow (a control character, say)
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
            found = f"{exc.character!r}" if isinstance(exc.character, str) else f"byte {exc.character!r}"
            self.problems.append(
                Problem(self.file, line, column, "", f"invalid YAML: {found} is a character YAML does not allow")
            )
            return None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            hint = ""
            if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
                start = exc.context_mark
                hint = f"{exc.context} that starts at line {start.line + 1}, column {start.column + 1}"
            elif exc.context:
                hint = exc.context
            self.problems.append(Problem(self.file, line, column, "", f"invalid YAML: {exc.problem}", hint))
            return None
        if node is None:
            self.problems.append(Problem(self.file, 1, 1, "", "the file is empty", "see the README for an example"))
        return node

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)

    # -- problems -------------------------------------------------------------------------------------------------
    def problem(self, node: yaml.Node, path: str, message: str, hint: str = "") -> None:
        mark = node.start_mark
        self.problems.append(Problem(self.file, mark.line + 1, mark.column + 1, path, message, hint))

    def wrong_type(self, node: yaml.Node, path: str, expected: str, hint: str = "") -> None:
        self.problem(node, path, f"expected {expected}, found {_describe(node)}", hint)

    # -- containers -----------------------------------------------------------------------------------------------
    def mapping(self, node: yaml.Node, path: str, allowed: list[str] | None = None) -> dict[str, Entry]:
        """The entries of a mapping; reports duplicate keys, non-text keys and (if ``allowed``) unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            self.wrong_type(node, path, "a mapping")
            return {}
        entries: dict[str, Entry] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in (_STR, _INT, _BOOL):
                self.wrong_type(key_node, path, "a name as key")
                continue
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key in entries:
                first = entries[key].key_node.start_mark
                self.problem(key_node, child, "duplicate key", f"first defined at line {first.line + 1}")
                continue
            if allowed is not None and key not in allowed:
                hint = did_you_mean(key, allowed) or "expected one of: " + ", ".join(allowed)
                self.problem(key_node, child, "unknown key", hint)
                continue
            entries[key] = Entry(key, key_node, value_node)
        return entries

    def sequence(self, node: yaml.Node, path: str) -> list[yaml.Node]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        self.wrong_type(node, path, "a list")
        return []

    def walk_mapping(self, node: yaml.Node, path: str) -> Iterator[tuple[str, Entry]]:
        for key, entry in self.mapping(node, path).items():
            yield (f"{path}.{key}" if path else key), entry

    # -- scalars --------------------------------------------------------------------------------------------------
    def text(self, node: yaml.Node, path: str, hint: str = "") -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR and node.value != "":
            return str(node.value)
        self.wrong_type(node, path, "text", hint)
        return None

    def integer(self, node: yaml.Node, path: str, minimum: int = 0, maximum: int | None = None) -> int | None:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _INT):
            self.wrong_type(node, path, "a whole number")
            return None
        value = int(self.value(node))
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.problem(node, path, f"expected a number {bounds}, found {value}")
            return None
        return value

    def boolean(self, node: yaml.Node, path: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            return bool(self.value(node))
        self.wrong_type(node, path, "true or false")
        return None

    def duration(self, node: yaml.Node, path: str, minimum: timedelta = timedelta()) -> timedelta | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_STR, _INT):
            self.wrong_type(node, path, "a duration", "like 250ms, 30s, 5m, 1h30m or 1d")
            return None
        try:
            value = parse_duration(self.value(node))
        except DurationError:
            self.problem(node, path, f"expected a duration, found {node.value!r}", "like 250ms, 30s, 5m, 1h30m or 1d")
            return None
        if value < minimum:
            self.problem(node, path, f"must be at least {minimum.total_seconds():g}s, found {node.value!r}")
            return None
        return value

    def size(self, node: yaml.Node, path: str, minimum: int = 1, maximum: int = MAX_SIZE) -> int | None:
        """A size in bytes: ``512``, ``64KiB``, ``1MiB``, ``10MB`` (KB/MB/GB are powers of 1000, KiB/MiB/GiB of
        1024)."""
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_STR, _INT):
            self.wrong_type(node, path, "a size", "like 64KiB, 1MiB or 500KB")
            return None
        match = _SIZE.fullmatch(str(node.value).strip())
        if match is None:
            self.problem(node, path, f"expected a size, found {node.value!r}", "like 64KiB, 1MiB or 500KB")
            return None
        value = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
        if not minimum <= value <= maximum:
            self.problem(
                node, path, f"must be from {minimum} bytes to {maximum // 1024 // 1024} MiB, found {node.value!r}"
            )
            return None
        return value

    def names(self, node: yaml.Node, path: str) -> tuple[str, ...] | None:
        """A list of names, or one name on its own."""
        items = [node] if isinstance(node, yaml.ScalarNode) else self.sequence(node, path)
        found = [self.text(item, f"{path}[{i}]") for i, item in enumerate(items)]
        return None if None in found else tuple(name for name in found if name)

    @staticmethod
    def value(node: yaml.Node) -> Any:
        """Plain Python data for a node (payloads, numbers), as ``safe_load`` would build it."""
        return yaml.SafeLoader("").construct_object(node, deep=True)
