"""YAML loading that remembers where every value came from, for line-numbered errors.

PyYAML composes a node tree (each node carries its start line); we build plain Python values
from it and record, for every path such as ("listeners", 0, "bind"), the line of its value and
the line of its key. Duplicate keys and non-scalar keys are errors (PyYAML would silently keep
the last duplicate, which hides mistakes in a security config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


class ConfigError(Exception):
    """One or more problems with a config file, each tied to a line where known."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(p.format() for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass
class Source:
    """A parsed YAML document and the line of each value (and of each mapping key)."""

    file: str
    data: Any
    value_lines: dict[Path, int] = field(default_factory=dict)
    key_lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """The line of the value at `path`, or of its nearest ancestor that has one."""
        while True:
            if path in self.value_lines:
                return self.value_lines[path]
            if not path:
                return None
            path = path[:-1]

    def key_line(self, path: Path) -> int | None:
        return self.key_lines.get(path) or self.line_of(path)

    def problem(self, path: Path, message: str, *, at_key: bool = False) -> Problem:
        line = self.key_line(path) if at_key else self.line_of(path)
        return Problem(self.file, line, format_path(path), message)


# Aliases can make a small file expand into a huge tree ("billion laughs"): cap the values built.
MAX_CONFIG_VALUES = 100_000


class _Builder:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.constructor = yaml.SafeLoader("")  # used only to construct scalars
        self.count = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_CONFIG_VALUES:
            raise ConfigError(
                [
                    Problem(
                        self.source.file,
                        node.start_mark.line + 1,
                        format_path(path),
                        f"more than {MAX_CONFIG_VALUES} values (alias expansion?)",
                    )
                ]
            )
        self.source.value_lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)  # resolves YAML merge keys (<<)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ConfigError(
                        [
                            Problem(
                                self.source.file,
                                key_node.start_mark.line + 1,
                                format_path(path),
                                "mapping keys must be plain values",
                            )
                        ]
                    )
                key = self.constructor.construct_object(key_node)
                if not isinstance(key, str):
                    key = str(key)
                if key in result:
                    raise ConfigError(
                        [
                            Problem(
                                self.source.file,
                                key_node.start_mark.line + 1,
                                format_path(path + (key,)),
                                "duplicate key",
                            )
                        ]
                    )
                self.source.key_lines[path + (key,)] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, path + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node)


def load_yaml(text: str, file: str) -> Source:
    source = Source(file=file, data=None)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = exc.problem or str(exc)
        if exc.context:
            message = f"{exc.context}: {message}"
        raise ConfigError([Problem(file, line, "", f"YAML syntax error: {message}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, None, "", f"YAML error: {exc}")]) from None
    if node is None:
        raise ConfigError([Problem(file, None, "", "the file is empty")])
    source.data = _Builder(source).build(node, ())
    return source
