"""The rule model SecLang files parse into (`seclang`), before the engine compiles it.

Values are kept as written (selectors, operator arguments, action values): what they mean is
the engine's business, so one parse serves the checks, the engine and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Where:
    """A directive's place: the file and the line it starts on."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Variable:
    """One entry of a rule's variable list: `ARGS`, `!ARGS:foo`, `&TX:x`, `ARGS:/^id_/`."""

    name: str  # upper-cased collection or variable name, e.g. "ARGS", "XML", "REQUEST_URI"
    key: str | None = None  # the selector as written (regex without its slashes); None: all
    key_is_regex: bool = False
    count: bool = False  # `&`: the number of matching entries instead of their values
    exclude: bool = False  # `!`: take these entries out of the rule's selection

    def __str__(self) -> str:
        prefix = ("!" if self.exclude else "") + ("&" if self.count else "")
        if self.key is None:
            return prefix + self.name
        key = f"/{self.key}/" if self.key_is_regex else self.key
        return f"{prefix}{self.name}:{key}"


@dataclass(frozen=True, slots=True)
class Action:
    name: str  # lower-cased: SecLang action names are case-insensitive
    value: str | None = None


@dataclass(slots=True)
class Rule:
    """A SecRule (or a SecAction: no variables, operator `unconditionalMatch`). A chain is the
    head rule with the rules that follow it in `chained`, in order."""

    where: Where
    variables: tuple[Variable, ...]
    operator: str  # without `@`, as written (case kept: `pmFromFile`)
    argument: str
    negated: bool
    actions: tuple[Action, ...]
    chained: list[Rule] = field(default_factory=list)

    def first(self, name: str) -> str | None:
        for action in self.actions:
            if action.name == name:
                return action.value
        return None

    def values(self, name: str) -> list[str]:
        return [a.value or "" for a in self.actions if a.name == name]

    def has(self, name: str) -> bool:
        return any(a.name == name for a in self.actions)

    @property
    def id(self) -> int:
        value = self.first("id")
        return int(value) if value is not None else 0

    @property
    def phase(self) -> int:
        value = self.first("phase")
        if value is None:
            return 2  # ModSecurity's default phase
        return int(value) if value.isdigit() else PHASE_NAMES[value.lower()]

    @property
    def tags(self) -> list[str]:
        return self.values("tag")


PHASE_NAMES = {"request": 2, "response": 4, "logging": 5}


@dataclass(frozen=True, slots=True)
class Marker:
    """`SecMarker NAME`: where a `skipAfter:NAME` lands."""

    where: Where
    name: str


@dataclass(frozen=True, slots=True)
class UpdateTarget:
    """`SecRuleUpdateTargetById ID TARGETS`: variables added to (or `!`-excluded from) a rule."""

    where: Where
    rule_ids: tuple[tuple[int, int], ...]  # inclusive ranges
    variables: tuple[Variable, ...]


@dataclass(frozen=True, slots=True)
class Remove:
    """`SecRuleRemoveById` (ranges) or `SecRuleRemoveByTag` (a regex)."""

    where: Where
    rule_ids: tuple[tuple[int, int], ...] = ()
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Setting:
    """Any other directive the engine accepts (`SecRuleEngine On`, `SecComponentSignature`,
    `SecDefaultAction`, ...): its name (as written) and arguments."""

    where: Where
    name: str
    arguments: tuple[str, ...]


Directive = Rule | Marker | UpdateTarget | Remove | Setting
