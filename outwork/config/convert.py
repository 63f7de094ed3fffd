"""Structural checks that report every problem of a config, not msgspec's first one.

msgspec stops at the first error of a conversion. `Converter.convert` tries the whole value;
when that fails it walks the value along the schema (Structs, lists, dicts, by
`msgspec.structs.fields` and the type hints, so it knows keys added later and every policy
step's own schema) and converts each part on its own: each unknown key, missing key and bad
value becomes one problem on its line. An unknown key close to a known one says which
(`did you mean "heartbeat"?`).
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec

from outwork.config.source import Path, Problem, Source

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")


class _Failed:
    def __repr__(self) -> str:
        return "FAILED"


FAILED: Any = _Failed()  # what `convert` returns for a value with problems (already reported)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean "x"?` for the known name closest to a misspelt one, else ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def problem_from_msgspec(source: Source, message: str, prefix: Path) -> Problem:
    """msgspec's message (its `$...` path taken relative to `prefix`) as a problem on a line."""
    path: Path = prefix
    match = _AT.search(message)
    if match:
        message = message[: match.start()]
        for name, index in _PATH_PART.findall(match.group("path")):
            path += (int(index),) if index else (name,)
    unknown = _UNKNOWN.match(message)
    if unknown:
        return source.problem(path + (unknown.group("name"),), "unknown key", at_key=True)
    missing = _MISSING.match(message)
    if missing:
        return source.problem(path, f"missing required key `{missing.group('name')}`")
    message = message.replace("Expected `array`", "Expected a list")
    message = message.replace("Expected `object`", "Expected a mapping")
    return source.problem(path, message[:1].lower() + message[1:], at_key=False)


def _unwrap(type_: Any) -> Any:
    """The type to walk `data` with: without Annotated constraints, and the one non-None
    member of an Optional (a None value never fails one)."""
    while True:
        origin = get_origin(type_)
        if origin is Annotated:
            type_ = get_args(type_)[0]
        elif origin is Union or origin is types.UnionType:
            members = [t for t in get_args(type_) if t is not type(None)]
            if len(members) != 1:
                return type_  # str | int and the like: msgspec's message says it all
            type_ = members[0]
        else:
            return type_


def is_struct(type_: Any) -> bool:
    return isinstance(type_, type) and issubclass(type_, msgspec.Struct)


class Converter:
    """Converts parts of a config, appending every problem to `problems`."""

    def __init__(
        self,
        source: Source,
        problems: list[Problem],
        dec_hook: Callable[[type, Any], Any] | None = None,
    ) -> None:
        self.source = source
        self.problems = problems
        self.dec_hook = dec_hook

    def quiet(self, data: Any, type_: Any) -> Any:
        """The converted value, or FAILED without a word (its problems are reported elsewhere)."""
        try:
            return msgspec.convert(data, type_, strict=True, dec_hook=self.dec_hook)
        except msgspec.ValidationError:
            return FAILED

    def convert(self, data: Any, type_: Any, path: Path) -> Any:
        """The converted value, or FAILED with each of its problems reported."""
        try:
            return msgspec.convert(data, type_, strict=True, dec_hook=self.dec_hook)
        except msgspec.ValidationError as exc:
            before = len(self.problems)
            self._explain(data, type_, path)
            if len(self.problems) == before:
                # Nothing wrong in any part: the value as a whole is (a list too long, a
                # Struct's own check in __post_init__, a scalar of the wrong type).
                self.problems.append(problem_from_msgspec(self.source, str(exc), path))
            return FAILED

    def _explain(self, data: Any, type_: Any, path: Path) -> None:
        inner = _unwrap(type_)
        if is_struct(inner) and isinstance(data, dict):
            self._struct(data, inner, path)
            return
        origin, args = get_origin(inner), get_args(inner)
        if origin is list and isinstance(data, list) and args:
            for i, item in enumerate(data):
                self.convert(item, args[0], path + (i,))
        elif origin is dict and isinstance(data, dict) and len(args) == 2:
            for key, value in data.items():
                try:
                    msgspec.convert(key, args[0], strict=True, dec_hook=self.dec_hook)
                except msgspec.ValidationError as exc:
                    message = _AT.sub("", str(exc))
                    message = f"invalid name {key!r}: {message[:1].lower()}{message[1:]}"
                    self.problems.append(self.source.problem(path + (key,), message, at_key=True))
                self.convert(value, args[1], path + (key,))

    def _struct(self, data: dict[str, Any], struct: type[msgspec.Struct], path: Path) -> None:
        fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
        if struct.__struct_config__.forbid_unknown_fields:
            for key in data:
                if key not in fields:
                    message = "unknown key" + did_you_mean(key, fields)
                    self.problems.append(self.source.problem(path + (key,), message, at_key=True))
        for name, field in fields.items():
            if name in data:
                self.convert(data[name], field.type, path + (name,))
            elif field.required:
                self.problems.append(self.source.problem(path, f"missing required key `{name}`"))
