"""YAML loading that remembers where every value came from, for line-numbered errors.

PyYAML composes a node tree (each node carries its start line); we build plain Python values
from it and record, for every path such as ("listeners", 0, "bind"), the line of its value and
the line of its key. Duplicate keys and non-scalar keys are errors (PyYAML would silently keep
the last duplicate, which hides mistakes in a security config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from outwork.config.changes import ConfigSummary

Path = tuple[str | int, ...]


class ConfigError(Exception):
    """One or more problems with a config file, each tied to a line where known."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(p.format() for p in problems))
        self.problems = problems
        # The refused file's hash and parts, set by load_config (for the reload audit).
        self.summary: ConfigSummary | None = None


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
# Nesting of mappings and lists. The schema needs 6 levels; PyYAML composes (and we build)
# recursively, so a deeper file would end in a RecursionError, or a recursive alias (`&a [*a]`)
# in an endless tree.
MAX_CONFIG_DEPTH = 32
# The only tags a config may carry: the plain YAML types that SafeLoader resolves by itself.
# Anything else (`!foo`, `!!python/name:x`, `!!set`, `!!omap`, `!!binary`) is a mistake.
_SCALAR_TAGS = frozenset(
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "timestamp", "merge")
)
_COLLECTION_TAGS = {
    yaml.MappingNode: "tag:yaml.org,2002:map",
    yaml.SequenceNode: "tag:yaml.org,2002:seq",
}


def _short_tag(tag: str) -> str:
    short = tag.removeprefix("tag:yaml.org,2002:")
    return "!!" + short if short != tag else tag


class _Unbounded(yaml.composer.ComposerError):
    """A file past MAX_CONFIG_DEPTH or MAX_CONFIG_VALUES (valid YAML, too much of it)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses a node tree deeper than MAX_CONFIG_DEPTH, or with more than
    MAX_CONFIG_VALUES nodes, while composing it."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        self._nodes += 1
        try:
            problem = None
            if self._depth > MAX_CONFIG_DEPTH:
                problem = f"nested deeper than {MAX_CONFIG_DEPTH} levels"
            elif self._nodes > MAX_CONFIG_VALUES:  # stop early: a big file costs memory
                problem = f"more than {MAX_CONFIG_VALUES} values"
            if problem is not None:
                mark = self.peek_event().start_mark
                raise _Unbounded(None, None, problem, mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


class _Builder:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.constructor = yaml.SafeLoader("")  # used only to construct scalars
        self.count = 0
        self.open: set[int] = set()  # the collections being built (an alias to one: a cycle)

    def fail(self, node: yaml.Node, path: Path, message: str) -> ConfigError:
        line = node.start_mark.line + 1
        return ConfigError([Problem(self.source.file, line, format_path(path), message)])

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_CONFIG_VALUES:
            raise self.fail(node, path, f"more than {MAX_CONFIG_VALUES} values (alias expansion?)")
        if len(path) > MAX_CONFIG_DEPTH:
            raise self.fail(node, path, f"nested deeper than {MAX_CONFIG_DEPTH} levels (alias?)")
        self.source.value_lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.CollectionNode):
            if node.tag != _COLLECTION_TAGS[type(node)]:  # `!!set {a}`, `!!str {a: 1}`
                where = "here" if node.tag in _SCALAR_TAGS else "in a config"
                raise self.fail(node, path, f"tag {_short_tag(node.tag)} is not allowed {where}")
            if id(node) in self.open:
                raise self.fail(node, path, "an alias refers to the value that contains it")
            self.open.add(id(node))
            try:
                return self.collection(node, path)
            finally:
                self.open.discard(id(node))
        return self.scalar(node, path)

    def collection(self, node: yaml.CollectionNode, path: Path) -> Any:
        if isinstance(node, yaml.MappingNode):
            try:
                self.constructor.flatten_mapping(node)  # resolves YAML merge keys (<<)
            except yaml.MarkedYAMLError as exc:
                raise self.fail(node, path, f"merge key (<<): {exc.problem}") from None
            except RecursionError:
                raise self.fail(node, path, "merge key (<<): the mapping merges itself") from None
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_node, path, "mapping keys must be plain values")
                key = self.scalar(key_node, path)
                if not isinstance(key, str):
                    key = str(key)
                if key in result:
                    raise self.fail(key_node, path + (key,), "duplicate key")
                self.source.key_lines[path + (key,)] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, path + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        raise self.fail(node, path, "not a mapping or a list")

    def scalar(self, node: yaml.Node, path: Path) -> Any:
        """A scalar's value; a value its tag cannot read (`2024-02-30`, `!!int 0x`, `!!float x`)
        is a problem on its line, not a traceback."""
        if node.tag not in _SCALAR_TAGS or not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, path, f"tag {_short_tag(node.tag)} is not allowed in a config")
        try:
            value = self.constructor.construct_object(node)
        except Exception as exc:  # noqa: BLE001 - constructors raise ValueError, KeyError, ...
            detail = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else exc
            raise self.fail(
                node, path, f"{node.value!r} is not a valid {_short_tag(node.tag)}: {detail}"
            ) from None
        if isinstance(value, str) and "\0" in value:
            # No setting has a use for NUL ("\0" in a quoted string); in a file name the OS
            # refuses it with a ValueError, not an OSError.
            raise self.fail(node, path, "a NUL character (\\0) is not allowed")
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # "\ud800": half of a UTF-16 pair, not a character
                raise self.fail(node, path, "a lone surrogate (\\ud800-\\udfff)") from None
        return value


def load_yaml(text: str, file: str) -> Source:
    source = Source(file=file, data=None)
    try:
        node = yaml.compose(text, Loader=_BoundedLoader)
    except _Unbounded as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise ConfigError([Problem(file, line, "", str(exc.problem))]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = exc.problem or str(exc)
        if exc.context:
            message = f"{exc.context}: {message}"
        raise ConfigError([Problem(file, line, "", f"YAML syntax error: {message}")]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ...)
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError([Problem(file, line, "", f"YAML error: {exc.reason}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, None, "", f"YAML error: {exc}")]) from None
    if node is None:
        raise ConfigError([Problem(file, None, "", "the file is empty")])
    source.data = _Builder(source).build(node, ())
    return source
