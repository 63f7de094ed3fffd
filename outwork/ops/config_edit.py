"""Targeted edits of the gateway's config file that keep everything else byte for byte.

The operator's file is edited, not re-dumped: values are located with PyYAML's node marks and
replaced (or new keys inserted) in the text, so comments, order and quoting elsewhere stay. The
new text is staged in a temporary file next to the config (same folder: relative paths resolve
the same), loaded and checked as a whole config from there, and only then renamed over the
config (atomic on POSIX). `outwork certs install` (`install.py`) and `outwork incident`
(`revocation.py`) both edit through here.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from outwork.config.config import GatewayConfig
from outwork.config.files import FileTooLarge, read_bounded
from outwork.ops import OpsError

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a config file larger than this is not ours to rewrite
_NULLS = ("", "~", "null", "Null", "NULL")


def compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise OpsError(f"the config file is not YAML: {exc}") from None


def get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value of `key` in a mapping node (None: not a mapping, or no such key)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v  # type: ignore[no-any-return]
    return None


def scalar(node: yaml.Node | None) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None  # type: ignore[no-any-return]


def yaml_quoted(value: str) -> str:
    """A YAML double-quoted scalar for `value`, ASCII only: every other character escaped (JSON
    would write astral characters as surrogate pairs, which YAML reads as two characters)."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


@dataclass
class Edits:
    """Replacements of character spans of one text, applied together (the last one first, so
    the marks of the others stay right). Values are YAML text the caller made safe
    (`yaml_quoted`, `true`, a flow mapping of those)."""

    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)

    def replace(self, node: yaml.Node, value: str) -> None:
        start, end = node.start_mark.index, node.end_mark.index
        if start == end:  # `key:` with nothing after it
            value = " " + value
        self.spans.append((start, end, value))

    def set(self, mapping: yaml.Node, key: str, value: str) -> None:
        """`key: value` in `mapping`: the scalar replaced when the key is there, else a new
        entry before the first one (in the mapping's own style and indentation)."""
        current = get(mapping, key)
        if current is not None:
            if not isinstance(current, yaml.ScalarNode):
                raise OpsError(f"cannot set {key!r}: the config has a structure there")
            self.replace(current, value)
            return
        if not isinstance(mapping, yaml.MappingNode):
            raise OpsError(f"cannot set {key!r}: not inside a mapping")
        if not mapping.value:  # `{}`
            self.spans.append((mapping.start_mark.index + 1,) * 2 + (f"{key}: {value}",))
            return
        first = mapping.value[0][0].start_mark
        if mapping.flow_style:
            entry = f"{key}: {value}, "
        else:
            entry = f"{key}: {value}\n" + " " * first.column
        self.spans.append((first.index, first.index, entry))

    def append(self, root: yaml.Node, key: str, value: str) -> None:
        """`key: value` at the end of the document (a new top-level key, after the rest)."""
        if not isinstance(root, yaml.MappingNode) or root.flow_style:
            self.set(root, key, value)
            return
        end = len(self.text)
        newline = "" if self.text.endswith("\n") else "\n"
        indent = " " * root.value[0][0].start_mark.column if root.value else ""
        self.spans.append((end, end, f"{newline}{indent}{key}: {value}\n"))

    def result(self) -> str:
        text = self.text
        last = len(text) + 1
        for start, end, value in sorted(self.spans, reverse=True):
            if end > last:
                raise OpsError("overlapping edits of the config file")
            text = text[:start] + value + text[end:]
            last = start
        return text


def is_null(node: yaml.Node | None) -> bool:
    return (
        isinstance(node, yaml.ScalarNode)
        and node.tag.endswith(":null")
        or (isinstance(node, yaml.ScalarNode) and node.value in _NULLS and node.style is None)
    )


def read_config(config_file: Path) -> str:
    try:
        raw = read_bounded(config_file, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise OpsError(f"cannot read the config: {exc}") from None
    except FileTooLarge:
        raise OpsError("the config file is too large to rewrite") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OpsError("the config file is not UTF-8") from None


@dataclass
class Staged:
    """A checked new config file, not yet in place."""

    config_file: Path
    staged: Path
    config: GatewayConfig

    def commit(self) -> None:
        os.replace(self.staged, self.config_file)

    def discard(self) -> None:
        self.staged.unlink(missing_ok=True)


def stage(config_file: Path, text: str) -> Staged:
    """Write `text` next to the config and load it as a whole config (keys, tokens, files);
    raises OpsError (nothing left behind) when it does not load."""
    from outwork.config.load import load_config
    from outwork.config.source import ConfigError

    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{config_file.name}.", suffix=".edit", dir=config_file.parent
        )
    except OSError as exc:
        raise OpsError(f"cannot write next to the config: {exc}") from None
    staged = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        os.chmod(staged, os.stat(config_file).st_mode & 0o7777)
        try:
            config = load_config(staged)
        except ConfigError as exc:
            first = exc.problems[0]
            raise OpsError(
                f"{first.path}: {first.message}" if first.path else first.message
            ) from None
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise OpsError(f"cannot stage the new config: {exc}") from None
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return Staged(config_file, staged, config)
