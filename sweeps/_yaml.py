"""YAML loading that remembers where each key was written.

PyYAML reads YAML 1.1, where ``1e-5`` (no dot) is a string. W&B uses PyYAML,
so a W&B sweep file with ``min: 1e-5`` is rejected there. Here such scalars are
numbers, as YAML 1.2 and every user expect, and each one is reported as a note
so that the difference from W&B is visible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Problem

Path = tuple[Any, ...]

_FLOAT_TAG = "tag:yaml.org,2002:float"

# YAML 1.2 floats, which PyYAML's 1.1 resolver does not know: an exponent
# without a dot (1e-5) or without a sign (1.0e5).
_FLOAT_12 = re.compile(
    r"""^[-+]?(?:
        [0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+
      | \.[0-9_]+[eE][-+]?[0-9]+
    )$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """SafeLoader plus the YAML 1.2 float forms."""


_Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_12, list("-+0123456789."))


def format_path(path: Path) -> str:
    """``("parameters", "lr", "values", 2)`` -> ``parameters.lr.values[2]``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Located:
    """A loaded document plus the line of every key and list item."""

    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, path: Path) -> int | None:
        """Line of ``path``, or of the nearest enclosing key that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def add(self, level: str, path: Path, message: str, line: int | None = None) -> None:
        self.problems.append(
            Problem(level, self.file, line or self.line_of(path), format_path(path), message)  # type: ignore[arg-type]
        )


def load(text: str, file: str) -> Located:
    """Parse ``text``; syntax errors and duplicate keys become problems."""
    doc = Located(file=file, data=None)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            doc.add("error", (), "the file is empty; expected a mapping with method and parameters", 1)
            return doc
        doc.lines[()] = node.start_mark.line + 1
        doc.data = _build(loader, node, (), doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        doc.add("error", (), f"YAML syntax error: {what}", line)
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML marks nearly everything
        doc.add("error", (), f"YAML error: {exc}", 1)
    finally:
        loader.dispose()
    return doc


def _build(loader: _Loader, node: Node, path: Path, doc: Located) -> Any:
    if isinstance(node, MappingNode):
        own = {id(k) for k, _ in node.value}
        loader.flatten_mapping(node)  # resolves `<<` merge keys
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                doc.add("error", path, "a key must be a plain value, not a list or mapping", line)
                continue
            sub = path + (key,)
            if key in first_line and id(key_node) in own:
                doc.add(
                    "error", sub, f"duplicate key (first written at line {first_line[key]}); keep one", line
                )
                continue
            if id(key_node) in own:
                first_line[key] = line
            doc.lines[sub] = line
            out[key] = _build(loader, value_node, sub, doc)
        return out
    if isinstance(node, SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            doc.lines[path + (i,)] = item.start_mark.line + 1
            items.append(_build(loader, item, path + (i,), doc))
        return items
    assert isinstance(node, ScalarNode)
    value = loader.construct_object(node, deep=True)
    if node.tag == _FLOAT_TAG and node.style is None:
        w_and_b_tag = yaml.SafeLoader.resolve(yaml.SafeLoader, ScalarNode, node.value, (True, False))  # type: ignore[arg-type]
        if w_and_b_tag == "tag:yaml.org,2002:str":
            doc.add(
                "note",
                path,
                f"W&B (YAML 1.1) reads {node.value} as the string '{node.value}'; here it is the number {value!r}",
                node.start_mark.line + 1,
            )
    return value
