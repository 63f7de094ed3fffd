"""The engine: rule files compiled once (`Waf.load`), run per request (`Transaction`).

What runs is what ModSecurity 2 runs for phases 1 (request head), 2 (request body), 3
(response head) and 4 (response body): rules in file order per phase, `chain`,
`skipAfter`/`SecMarker`, `setvar` on TX with macro expansion, runtime `ctl` (rule removal by
id, tag or target, rule engine, body processor), CRS's anomaly scoring (a rule's `block` is
the default action `pass`; the `deny` of 949110 is what blocks, of 959100 and 959101 on the
outbound score). Phase 5 (logging) runs once the exchange is over (`run_logging_phase`).

Speed comes from not doing work twice, and from ruling rules out before running them:
every `@rx` of a phase sits in one `PatternSet`; each collection a rule reads is scanned once
per phase as it is and lowercased (for every rule that reads it), and through a pipeline
only for the values that pipeline changes (its fast path says which); a rule whose pattern no
scanned value can match is skipped with a few bit tests (`_may_hit`), the others run their
exact regex only on the values the scan names. TX checks run inline, `@pm` looks at all of a
rule's values in one pass first, and transformed values and scan answers of short values are
kept across transactions (bounded). `Transaction.stats` counts how many rules ran fully.
What depends only on the config (CRS's setup rules, its paranoia-level checks) is worked out
at load (fold.py): a transaction runs the folded programs while its rule set is as loaded.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from outwork.waf import seclang
from outwork.waf.fastpath import FastPath, fast_path, input_key, segmented, signature
from outwork.waf.fold import ClearMatched, Folded, Jump, Prefix, fold
from outwork.waf.operators import (
    NUMBER_TESTS,
    Operator,
    OperatorMatch,
    Pm,
    build_operator,
    c_atoi,
    joined_lower,
)
from outwork.waf.patterns import SET_MAX_VALUE, PatternSet
from outwork.waf.request import WafRequest
from outwork.waf.response import WafResponse
from outwork.waf.rules import Directive, Marker, Remove, Rule, Setting, UpdateTarget, Variable
from outwork.waf.transforms import pipeline
from outwork.waf.variables import LIVE, Variables

# Beside seclang.py, an interpreted module: mypyc gives a compiled one a wrong __file__.
CRS_RULES: Final = Path(seclang.__file__).parent / "crs" / "rules"
REQUEST_PHASES: Final = (1, 2)
DISRUPTIVE: Final = ("pass", "block", "deny", "drop", "allow", "redirect", "proxy")
# Transformed values and pattern-set answers for values up to SHARED_VALUE_BYTES are kept
# across transactions, up to SHARED_ENTRIES each (then started again: a peer sending ever new
# values pays what it would with no memo, and memory stays bounded, about 10 MiB).
SHARED_VALUE_BYTES: Final = 256
SHARED_ENTRIES = 16384  # not Final: tests make it small
MAX_SETVAR_VALUE: Final = 64 * 1024  # a TX value built from request data is capped, not unbounded
_MACRO: Final = re.compile(r"%\{([^}]+)\}")
_unique_ids = itertools.count(1)
_NO_EXTRA: Final[tuple[tuple[Variable, ...], object]] = ((), ())
Values = list[tuple[bytes, bytes]]
Link = tuple[int, Callable[[bytes], bytes], Callable[[bytes], bytes], FastPath | None]
# What one entry of `Waf.scan_sets` scans: (scan variable, pattern set, pipeline id, pipeline);
# pipeline id -1 and no pipeline: the variable's values as they are and lowercased.
ScanSet = tuple[int, int, int, Callable[[bytes], bytes] | None]


class WafLoadError(ValueError):
    """A rule set that cannot run: the message starts with `FILE:LINE:`."""


@dataclass(frozen=True, slots=True)
class Setup:
    """What `crs-setup.conf` would set, from the filter's config."""

    paranoia_level: int = 1
    anomaly_threshold: int = 5
    outbound_anomaly_threshold: int = 4  # CRS's default: one leak of severity ERROR blocks
    allowed_methods: tuple[str, ...] = ()  # empty: CRS's default
    allowed_content_types: tuple[str, ...] = ()  # empty: CRS's default
    detect_only: bool = False
    # Further `tx.NAME=VALUE` settings (CRS's own test setup uses them for its limits).
    extra: tuple[tuple[str, str], ...] = ()

    def directive(self) -> str:
        settings = [
            ("crs_setup_version", "4280"),
            ("blocking_paranoia_level", str(self.paranoia_level)),
            ("detection_paranoia_level", str(self.paranoia_level)),
            ("inbound_anomaly_score_threshold", str(self.anomaly_threshold)),
            ("outbound_anomaly_score_threshold", str(self.outbound_anomaly_threshold)),
        ]
        if self.allowed_methods:
            settings.append(("allowed_methods", " ".join(self.allowed_methods)))
        if self.allowed_content_types:
            types = "".join(f"|{t.lower()}|" for t in self.allowed_content_types)
            settings.append(("allowed_request_content_type", types))
        settings.extend(self.extra)
        setvars = ",".join(f"setvar:'tx.{name}={_quote(value)}'" for name, value in settings)
        return f'SecAction "id:900990,phase:1,pass,nolog,t:none,{setvars}"'


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"')


@dataclass(slots=True)
class CompiledRule:
    id: int
    phase: int
    where: str
    targets: tuple[Variable, ...]
    excluded: tuple[Variable, ...]
    transforms: tuple[str, ...]
    transform: Callable[[bytes], bytes]
    operator: Operator
    operator_name: str
    argument: str  # the operator's argument as written
    negated: bool
    multi_match: bool
    capture: bool
    setvars: tuple[str, ...]
    ctls: tuple[tuple[str, str], ...]
    skip_after: str | None
    disruptive: str  # "pass", "deny", "drop", "allow", ... ("block" resolved to the default)
    status: int
    msg: str
    logdata: str
    severity: str
    tags: tuple[str, ...]
    log: bool
    chained: list[CompiledRule] = field(default_factory=list)
    live: bool = False  # reads TX or MATCHED_*: its values are never cached
    constant: bool = True  # its operator's argument holds no macro: a match can be reused
    # A rule reading one TX value by name (`TX:x` or `&TX:x`, nothing excluded): its key.
    tx_key: str | None = None
    tx_count: bool = False
    tx_name: bytes = b""
    # A lone rule testing one TX value against a constant, no transformation, no capture (the
    # paranoia-level checks, CRS's defaults and its score sums, half the rules CRS reaches):
    # run_phase evaluates it inline.
    tx_simple: bool = False
    # A numeric test (@eq, @lt, ...) against a constant: the test and the number.
    number: tuple[Callable[[int, int], bool], int] | None = None
    phrases: Pm | None = None  # a plain @pm's operator: its values are searched at once first
    targets_key: int = 0  # the same for rules with the same targets and exclusions
    pipeline_id: int = 0  # the same for rules with the same transformations
    # multiMatch: None (the value as is), then the value after each transformation in turn.
    steps: tuple[Callable[[bytes], bytes] | None, ...] = (None,)
    step_fasts: tuple[FastPath | None, ...] = (None,)  # each step's fast path
    transform_fn: Callable[[bytes], bytes] | None = None  # None: no transformation
    # What the prefilter scans: the rule's pipeline, or (multiMatch) each of its prefixes.
    step_ids: tuple[int, ...] = ()
    step_pipes: tuple[Callable[[bytes], bytes] | None, ...] = ()
    # The rule's @rx in its phase's pattern set: (group, its bit in the set's masks), or None.
    prefilter: tuple[int, int] | None = None
    # A prefiltered rule whose targets are all plain collections (not counted, not live):
    # their indexes in `Waf.scan_variables`, scanned once per (variable, pipeline) and
    # request phase; None: the rule's values are scanned as one list.
    scan: tuple[int, ...] | None = None
    # With `scan`: the entries of `Waf.scan_sets` its pattern may be found in, the values as
    # they are first (one per variable), then what each of its pipelines changes.
    scan_sets: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Match:
    """A rule that matched (a chain: all its links)."""

    id: int
    msg: str
    logdata: str
    severity: str
    tags: tuple[str, ...]
    log: bool

    @property
    def family(self) -> str:
        return str(self.id // 1000)


@dataclass(frozen=True, slots=True)
class Interruption:
    rule_id: int
    status: int
    action: str  # "deny", "drop", "redirect"


@dataclass(slots=True)
class Stats:
    rules_reached: int = 0  # rules whose turn came (not removed, not skipped)
    rules_full: int = 0  # of those, rules whose operator ran on at least one value
    rx_reached: int = 0  # rules reached whose @rx is in a pattern set (prefiltered)
    rx_full: int = 0  # of those, rules whose regex ran (the scan said it may match)

    @property
    def share_full(self) -> float:
        return self.rules_full / self.rules_reached if self.rules_reached else 0.0


class Waf:
    """A compiled rule set; immutable, shared by every transaction."""

    def __init__(
        self,
        programs: dict[int, list[CompiledRule | str]],
        markers: dict[int, dict[str, int]],
        rules: list[CompiledRule],
        pattern_sets: list[PatternSet],
        detect_only: bool,
    ) -> None:
        self.programs = programs
        self.markers = markers
        self.rules = rules
        self.by_id = {rule.id: rule for rule in rules}
        self.pattern_sets = pattern_sets
        self.detect_only = detect_only
        self.families = sorted({str(r.id // 1000) for r in rules if 900000 <= r.id < 1000000})
        self._selections: dict[tuple[str, str], frozenset[int]] = {}
        self.fast_paths: list[FastPath | None] = []  # by pipeline id (set by the compiler)
        self.scan_variables: list[Variable] = []  # see CompiledRule.scan (set by the compiler)
        self.scan_sets: list[ScanSet] = []  # see CompiledRule.scan_sets (set by the compiler)
        self.input_keys: list[Callable[[bytes], bytes] | None] = []  # by pipeline id (fastpath)
        # By pipeline id: a pipeline whose pipeline but for its last step also exists (the
        # prefixes a multiMatch rule scans): (that pipeline's id and function, the last step,
        # its fast path), so that a value goes through each step once for all of them.
        self.links: list[Link | None] = []
        # Results of pure functions of short values, shared by transactions: header values,
        # names and short values recur from request to request (see SHARED_ENTRIES).
        self.shared_transforms: dict[tuple[int, bytes], bytes] = {}  # (pipeline, value)
        self.shared_candidates: dict[tuple[int, bytes], int] = {}  # (set, value): its mask
        # What the setup decides for every request (fold.py): set by the compiler.
        self.prefix: Prefix | None = None
        self.folds: dict[int, Folded] = {}
        self.folded_ids: frozenset[int] = frozenset()  # rules whose outcome folding assumed

    def rule_ids(self, by: str, selector: str) -> frozenset[int]:
        """The ids of the rules a `ctl` names, by "id" (ranges) or "tag" (a regex): worked
        out once per distinct selector, as rules never change."""
        key = (by, selector)
        found = self._selections.get(key)
        if found is None:
            if by == "id":
                ranges = seclang.parse_id_ranges(selector)
                found = frozenset(r.id for r in self.rules if _in_ranges(r.id, ranges))
                # Ids of rules not loaded (yet) still count, as written.
                found |= {low for low, high in ranges if low == high}
            else:
                tag = re.compile(selector)
                found = frozenset(r.id for r in self.rules if any(tag.search(t) for t in r.tags))
            self._selections[key] = found
        return found

    @classmethod
    def load(
        cls,
        rules_dir: Path = CRS_RULES,
        setup: Setup | None = None,
        exclusions: Sequence[Path] = (),
        extra: str = "",
    ) -> Waf:
        """The setup SecAction, the exclusion files' rules (CRS's REQUEST-900 place), the rule
        files, then the exclusion files' configure-time directives (CRS's RESPONSE-999 place)."""
        setup = setup or Setup()
        try:
            directives: list[Directive] = seclang.parse(setup.directive(), "<setup>")
            if extra:
                directives += seclang.parse(extra, "<extra>")
            after: list[Directive] = []
            for path in exclusions:
                for directive in seclang.parse_file(path):
                    (directives if isinstance(directive, Rule | Marker) else after).append(
                        directive
                    )
            for path in seclang.rule_files(rules_dir):
                directives += seclang.parse_file(path)
            directives += after
        except OSError as error:
            raise WafLoadError(f"{error.filename}: {error.strerror}") from None
        except seclang.SeclangError as error:
            raise WafLoadError(str(error)) from None
        return _Compiler(rules_dir, setup.detect_only).compile(directives)

    def transaction(self, request: WafRequest) -> Transaction:
        return Transaction(self, request)


class _Compiler:
    def __init__(self, data_dir: Path, detect_only: bool) -> None:
        self.data_dir = data_dir
        self.detect_only = detect_only
        self.default_disruptive = "pass"
        self.pipeline_ids: dict[tuple[str, ...], int] = {}
        self.target_keys: dict[tuple[tuple[Variable, ...], tuple[Variable, ...]], int] = {}
        self.variables: dict[Variable, Variable] = {}
        # phase -> patterns, the rules they belong to
        self.groups: dict[int, list[tuple[str, CompiledRule]]] = {}

    def compile(self, directives: list[Directive]) -> Waf:
        heads: list[CompiledRule | str] = []
        removed_ids: list[tuple[int, int]] = []
        removed_tags: list[str] = []
        updates: list[UpdateTarget] = []
        for directive in directives:
            if isinstance(directive, Rule):
                heads.append(self._rule(directive, directive))
            elif isinstance(directive, Marker):
                heads.append(directive.name)
            elif isinstance(directive, Remove):
                removed_ids.extend(directive.rule_ids)
                if directive.tag is not None:
                    removed_tags.append(directive.tag)
            elif isinstance(directive, UpdateTarget):
                updates.append(directive)
            elif isinstance(directive, Setting):
                self._setting(directive)
        rules = [h for h in heads if isinstance(h, CompiledRule)]
        for update in updates:
            for rule in rules:
                if _in_ranges(rule.id, update.rule_ids):
                    rule.targets += tuple(
                        self._intern(v) for v in update.variables if not v.exclude
                    )
                    rule.excluded += tuple(self._intern(v) for v in update.variables if v.exclude)
                    rule.targets_key = self.target_keys.setdefault(
                        (rule.targets, rule.excluded), len(self.target_keys)
                    )
        tag_res = [re.compile(t) for t in removed_tags]

        def kept(rule: CompiledRule) -> bool:
            if _in_ranges(rule.id, removed_ids):
                return False
            return not any(r.search(tag) for r in tag_res for tag in rule.tags)

        programs: dict[int, list[CompiledRule | str]] = {}
        markers: dict[int, dict[str, int]] = {}
        for phase in (1, 2, 3, 4, 5):
            program: list[CompiledRule | str] = []
            for item in heads:
                if isinstance(item, str) or (item.phase == phase and kept(item)):
                    program.append(item)
            programs[phase] = program
            markers[phase] = {}
            for index, item in enumerate(program):
                if isinstance(item, str):
                    markers[phase][item] = index
                else:
                    markers[phase].setdefault(str(item.id), index)
        pattern_sets = self._pattern_sets()
        waf = Waf(programs, markers, rules, pattern_sets, self.detect_only)
        by_id = sorted(self.pipeline_ids.items(), key=lambda item: item[1])
        waf.fast_paths = [fast_path(names) for names, _ in by_id]
        waf.input_keys = [input_key(names) for names, _ in by_id]
        waf.links = [self._link(names) for names, _ in by_id]
        waf.scan_variables, waf.scan_sets = self._scan_variables(rules)
        waf.prefix, waf.folds, waf.folded_ids = fold(waf)
        return waf

    def _link(self, names: tuple[str, ...]) -> Link | None:
        parent = self.pipeline_ids.get(names[:-1]) if len(names) > 1 else None
        if parent is None:
            return None
        last = names[-1:]
        return (
            parent,
            segmented(names[:-1], pipeline(names[:-1])),
            pipeline(last),
            fast_path(last),
        )

    @staticmethod
    def _scan_variables(rules: list[CompiledRule]) -> tuple[list[Variable], list[ScanSet]]:
        """Give each prefiltered rule reading only plain collections its `scan` and
        `scan_sets`: rules name the same few collections (ARGS, REQUEST_COOKIES, ...), so a
        collection's values are scanned once per pipeline for all of them. Exclusions are
        left out: a scan of more values than the rule reads only lets the rule run its regex
        where it need not."""
        interned: dict[Variable, int] = {}
        scan_sets: dict[tuple[int, int, int], int] = {}
        steps: list[Callable[[bytes], bytes] | None] = []
        for head in rules:
            for rule in (head, *head.chained):
                if rule.prefilter is None or rule.live or rule.negated:
                    continue
                if any(v.count or v.name in LIVE for v in rule.targets):
                    continue
                rule.scan = tuple(
                    interned.setdefault(Variable(v.name, v.key, v.key_is_regex), len(interned))
                    for v in rule.targets
                )
                group = rule.prefilter[0]
                wanted: list[ScanSet] = [(variable, group, -1, None) for variable in rule.scan]
                wanted += [
                    (variable, group, step_id, step)
                    for variable in rule.scan
                    for step_id, step in zip(rule.step_ids, rule.step_pipes, strict=True)
                    if step is not None
                ]
                found: list[int] = []
                for variable, group, step_id, step in wanted:
                    index = scan_sets.setdefault((variable, group, step_id), len(scan_sets))
                    if index == len(steps):
                        steps.append(step)
                    found.append(index)
                rule.scan_sets = tuple(found)
        described = [(*key, steps[index]) for key, index in scan_sets.items()]
        return list(interned), described

    def _intern(self, variable: Variable) -> Variable:
        """One object per distinct variable: what a transaction works out for a variable is
        kept by its id, so that rules naming the same variable share it."""
        return self.variables.setdefault(variable, variable)

    def _setting(self, setting: Setting) -> None:
        if setting.name == "SecRuleEngine":
            self.detect_only = setting.arguments[0].lower() == "detectiononly" or self.detect_only
        elif setting.name == "SecDefaultAction":
            for action in seclang.parse_actions(setting.arguments[0]):
                if action.name in DISRUPTIVE and action.name != "block":
                    self.default_disruptive = action.name

    def _rule(self, rule: Rule, head: Rule) -> CompiledRule:
        where = str(rule.where)
        transforms: list[str] = []
        for value in rule.values("t"):
            if value.lower() == "none":
                transforms.clear()
            else:
                transforms.append(value.lower())
        try:
            operator = build_operator(rule.operator, rule.argument, self.data_dir)
            transform = pipeline(tuple(transforms))
        except (ValueError, KeyError, OSError) as error:
            raise WafLoadError(f"{where}: {error}") from None
        disruptive = "pass"
        for action in head.actions:
            if action.name in DISRUPTIVE:
                disruptive = action.name
        if disruptive == "block":
            disruptive = self.default_disruptive
        compiled = CompiledRule(
            id=head.id,
            phase=head.phase,
            where=where,
            targets=tuple(self._intern(v) for v in rule.variables if not v.exclude),
            excluded=tuple(self._intern(v) for v in rule.variables if v.exclude),
            transforms=tuple(transforms),
            transform=transform,
            operator=operator,
            operator_name=rule.operator,
            argument=rule.argument,
            negated=rule.negated,
            multi_match=rule.has("multimatch"),
            capture=rule.has("capture"),
            setvars=tuple(rule.values("setvar")),
            ctls=tuple(_ctl(v) for v in rule.values("ctl")),
            skip_after=rule.first("skipafter"),
            disruptive=disruptive,
            status=int(head.first("status") or 403),
            msg=head.first("msg") or "",
            logdata=head.first("logdata") or "",
            severity=head.first("severity") or "",
            tags=tuple(head.tags),
            log=not head.has("nolog"),
        )
        compiled.live = any(v.name in LIVE for v in rule.variables)
        if isinstance(operator, Pm) and not compiled.negated:
            compiled.phrases = operator
        if rule.operator.lower() in NUMBER_TESTS and compiled.constant:
            number = c_atoi(rule.argument.encode("utf-8", "surrogateescape"))
            compiled.number = (NUMBER_TESTS[rule.operator.lower()], number)
        compiled.constant = "%{" not in rule.argument
        if len(rule.variables) == 1:
            (only,) = rule.variables
            if only.name == "TX" and only.key and not only.key_is_regex and not only.exclude:
                compiled.tx_key = only.key.lower()
                compiled.tx_count = only.count
                compiled.tx_name = b"TX:" + compiled.tx_key.encode()
        compiled.pipeline_id = self.pipeline_ids.setdefault(
            compiled.transforms, len(self.pipeline_ids)
        )
        compiled.steps = (None, *(pipeline((name,)) for name in compiled.transforms))
        compiled.step_fasts = (None, *(fast_path((name,)) for name in compiled.transforms))
        compiled.transform_fn = (
            segmented(compiled.transforms, transform) if compiled.transforms else None
        )
        if compiled.multi_match:
            prefixes = [compiled.transforms[:n] for n in range(len(compiled.transforms) + 1)]
        else:
            prefixes = [compiled.transforms]
        ids = self.pipeline_ids
        compiled.step_ids = tuple(ids.setdefault(p, len(ids)) for p in prefixes)
        compiled.step_pipes = tuple(segmented(p, pipeline(p)) if p else None for p in prefixes)
        compiled.targets_key = self.target_keys.setdefault(
            (compiled.targets, compiled.excluded), len(self.target_keys)
        )
        if rule is head:
            compiled.chained = [self._rule(link, head) for link in rule.chained]
            compiled.tx_simple = (
                compiled.tx_key is not None
                and not compiled.chained
                and not compiled.transforms
                and not compiled.capture
                and not compiled.multi_match
                and compiled.constant
            )
        if rule.operator == "rx" and rule.variables:
            # One set per phase, whatever the transformations: a value that several pipelines
            # leave as it is (most values of benign requests) is scanned once for all.
            group = self.groups.setdefault(compiled.phase, [])
            group.append((rule.argument, compiled))
        return compiled

    def _pattern_sets(self) -> list[PatternSet]:
        sets: list[PatternSet] = []
        for members in self.groups.values():
            try:
                pattern_set = PatternSet([pattern for pattern, _ in members])
            except ValueError:
                continue  # those rules run their regex on every value: slower, never skipped
            for index, (_, compiled) in enumerate(members):
                compiled.prefilter = (len(sets), 1 << index)
            sets.append(pattern_set)
        return sets


def _ctl(value: str) -> tuple[str, str]:
    option, _, argument = value.partition("=")
    return option.strip().lower(), argument.strip()


def _in_ranges(rule_id: int, ranges: Iterable[tuple[int, int]]) -> bool:
    return any(low <= rule_id <= high for low, high in ranges)


def _to_int(value: bytes) -> int:
    match = re.match(rb"\s*([+-]?\d+)", value)
    return int(match.group(1)) if match else 0


class Transaction:
    """One request through the rules: `run_phase(1)` at the head, `run_phase(2)` once the
    body is in. `interruption` says what the rules decided; `matches` what they found."""

    def __init__(self, waf: Waf, request: WafRequest) -> None:
        self.waf = waf
        unique = f"{os.getpid():x}{next(_unique_ids):016x}"
        self.vars = Variables(request, unique)
        self.matches: list[Match] = []
        self.interruption: Interruption | None = None
        self.detect_only = waf.detect_only
        self.engine_off = False
        self.allowed = False
        self.stats = Stats()
        # The folded programs run (fold.py): from phase 1's prefix on, while no ctl has
        # removed rules or targets.
        self.folded = False
        self.removed: set[int] = set()  # rule ids removed for this request (ctl)
        self.removed_targets: list[tuple[frozenset[int], Variable]] = []
        self.tx_targets_removed = False  # a ctl took a TX target from some rules
        # By the rule's `targets_key`: CRS gives most rules the same variable list.
        self._values: dict[object, Values] = {}
        self._extra: dict[int, tuple[tuple[Variable, ...], object]] = {}  # by rule id
        self._tvalues: dict[object, list[bytes]] = {}  # by (values key, pipeline)
        self._unions: dict[object, int] = {}  # see _union
        # See _may_hit: by scan variable; by index in `Waf.scan_sets` (None: not worked out
        # yet in this phase).
        self._distinct: dict[int, tuple[list[bytes], frozenset[int], bool]] = {}
        self._scan_found: list[int | None] = [None] * len(waf.scan_sets)
        self._transformed: dict[tuple[int, bytes], bytes] = {}  # by (pipeline, value)
        self._matches: dict[tuple[int, bytes], OperatorMatch | None] = {}  # by (operator, value)
        self._candidates: dict[tuple[int, bytes], int] = {}  # (set, value): its mask
        self._candidate_lists: dict[object, list[int]] = {}  # see _candidate_list
        self._joined: dict[object, bytes] = {}  # see _phrases_found
        self._keyed: dict[tuple[int, int], list[bytes]] = {}  # see _var_extra
        self._rule: CompiledRule | None = None
        # What holds values of the phase's collections (not TX): cleared with the body's
        # arrival and by the ctls that change what the body shows.
        self._phase_caches: tuple[dict[Any, Any], ...] = (
            self._values,
            self._tvalues,
            self._unions,
            self._distinct,
            self._candidate_lists,
            self._joined,
            self._keyed,
        )

    # ---- phases --------------------------------------------------------------------------

    def respond(self, response: WafResponse) -> None:
        """The response arrived (before phase 3; its `body` is set before phase 4). In
        detection-only mode, what the request phases would have done is forgotten: the
        response phases decide on their own."""
        self.vars.read_response(response)
        if self.detect_only:
            self.interruption = None

    def run_phase(self, phase: int) -> Interruption | None:
        if phase != 1:
            # What rules read changes with each phase (the body, the response): values,
            # transformations and scans are computed afresh.
            if phase == 2:
                self.vars.read_body()
            elif phase == 4 and self.vars.response is not None:
                self.vars.read_response(self.vars.response)
            self._clear_phase_caches()
        # Read into a local: a narrowed attribute would stay "None" for mypyc after the rules'
        # actions set it (mypy keeps an attribute's narrowing across calls; compiled code
        # checks it).
        decided = self.interruption
        if decided is not None or self.engine_off or self.allowed:
            return decided
        waf = self.waf
        index = 0
        if phase == 1 and waf.prefix is not None:
            self._take_prefix(waf.prefix)
        folded = waf.folds.get(phase) if self.folded else None
        if folded is not None:
            program: list[Any] = folded.program
            targets = folded.targets
        else:
            program = waf.programs[phase]
            if phase == 1 and self.folded and waf.prefix is not None:
                index = waf.prefix.end
        markers = waf.markers[phase]
        stats = self.stats
        vars_ = self.vars
        removed = self.removed
        while index < len(program):
            item = program[index]
            index += 1
            kind = type(item)
            if kind is Jump:
                self.matches.append(item.match)
                if item.matched:  # (a SecAction leaves them as they were)
                    vars_.matched = list(item.matched)
                    vars_.matched_var = item.matched[-1]
                index = item.target
                continue
            if kind is str or kind is ClearMatched or item.id in removed:
                if kind is ClearMatched:
                    vars_.matched = []
                continue
            stats.rules_reached += 1
            if item.tx_simple and not self.tx_targets_removed:
                hit = self._tx_matches(item)
            elif item.scan is not None and not self._may_hit(item):
                # A prefiltered @rx that cannot match any value it reads: one look per
                # collection it names (scanned once per request phase), no rule machinery.
                stats.rx_reached += 1
                vars_.matched = []
                continue
            else:
                hit = self._chain_matches(item)
            if folded is not None and not self.folded:
                # A ctl removed rules or targets: the full program from here on.
                assert isinstance(folded, Folded)
                index = folded.origin[index - 1] + 1
                program = waf.programs[phase]
                folded = None
            if not hit:
                continue
            self._act(item)
            if self.engine_off or self.allowed:
                break
            if self.interruption is not None:
                break
            skip = item.skip_after
            if skip is not None:
                if folded is not None:
                    index = targets.get(skip, len(program))
                else:
                    index = markers.get(skip, len(program) - 1) + 1
        return None if self.detect_only else self.interruption

    def run_logging_phase(self) -> None:
        """Phase 5, once the exchange is over: it runs whatever the earlier phases decided (as
        ModSecurity 2 runs it after an interception and after `allow`; only a rule engine
        turned off skips it), and decides nothing (a `deny` or `allow` there is forgotten).
        Its logged matches are what it reports (CRS 980170's anomaly scores)."""
        if self.engine_off:
            return
        interruption, allowed = self.interruption, self.allowed
        self.interruption, self.allowed = None, False
        try:
            self.run_phase(5)
        finally:
            self.interruption, self.allowed = interruption, allowed

    def _take_prefix(self, prefix: Prefix) -> None:
        """What the setup rules at the head of phase 1 leave, at once (see fold.py)."""
        vars_ = self.vars
        vars_.tx.update(prefix.tx)
        self.matches.extend(prefix.matches)
        vars_.matched = list(prefix.matched)
        vars_.matched_var = prefix.matched_var
        self.folded = True

    @property
    def would_interrupt(self) -> Interruption | None:
        """What the rules decided, even in detection-only mode."""
        return self.interruption

    @property
    def anomaly_score(self) -> int:
        tx = self.vars.tx
        return _to_int(
            tx.get("blocking_inbound_anomaly_score", tx.get("inbound_anomaly_score", b"0"))
        )

    @property
    def outbound_anomaly_score(self) -> int:
        """The response phases' score (RESPONSE-959), as the blocking check reads it."""
        return _to_int(self.vars.tx.get("blocking_outbound_anomaly_score", b"0"))

    # ---- a rule --------------------------------------------------------------------------

    def _chain_matches(self, head: CompiledRule) -> bool:
        self._rule = head
        if not self._link_matches(head, head):
            return False
        return all(self._link_matches(link, head) for link in head.chained)

    def _tx_matches(self, rule: CompiledRule) -> bool:
        """A `tx_simple` rule: what _chain_matches gives, without the general machinery."""
        assert rule.tx_key is not None
        self._rule = rule
        vars_ = self.vars
        value = vars_.tx.get(rule.tx_key)
        if rule.tx_count:
            name, value = b"TX", b"1" if value is not None else b"0"
        elif value is None:
            vars_.matched = []
            return False
        else:
            name = rule.tx_name
        self.stats.rules_full += 1
        number = rule.number
        if number is not None:
            # What the operator's match does (c_atoi of both sides), its side read at load.
            matched = number[0](_atoi(value), number[1])
        else:
            memo_key = (id(rule.operator), value)
            memo = self._matches
            if memo_key in memo:
                found = memo[memo_key]
            else:
                found = memo[memo_key] = rule.operator.match(value, self.expand)
            matched = found is not None
        if matched == rule.negated:
            vars_.matched = []
            return False
        vars_.matched = [(name, value)]
        vars_.matched_var = (name, value)
        if rule.setvars or rule.ctls:
            self._actions(rule)
        return True

    def _values_of(self, rule: CompiledRule, head: CompiledRule) -> tuple[Values, object]:
        """The (name, value) pairs a rule reads, and a key they are cached under (None for
        live ones): rules with the same targets share one list per phase."""
        tx_key = rule.tx_key
        if tx_key is not None and not self.tx_targets_removed:
            # One TX value by name (the paranoia-level and score checks): no list to build.
            value = self.vars.tx.get(tx_key)
            if rule.tx_count:
                return [(b"TX", b"1" if value is not None else b"0")], None
            return ([(rule.tx_name, value)] if value is not None else []), None
        extra, extra_key = self._removed_targets_of(head) if self.removed_targets else _NO_EXTRA
        if rule.live:
            return self._resolve(rule, extra), None
        key = (rule.targets_key, extra_key)
        values = self._values.get(key)
        if values is None:
            values = self._values[key] = self._resolve(rule, extra)
        return values, key

    def _removed_targets_of(self, head: CompiledRule) -> tuple[tuple[Variable, ...], object]:
        """The targets `ctl:ruleRemoveTarget*` took from this rule (for this request), and a
        key for them (the variables live as long as the transaction: their ids are stable)."""
        extra = self._extra.get(head.id)
        if extra is None:
            found = tuple(v for ids, v in self.removed_targets if head.id in ids)
            extra = self._extra[head.id] = (found, tuple(id(v) for v in found))
        return extra

    def _resolve(self, rule: CompiledRule, extra: tuple[Variable, ...]) -> Values:
        vars_ = self.vars
        values: Values = []
        excluded = rule.excluded + extra if extra else rule.excluded
        for variable in rule.targets:
            exclusion = _exclusion(variable.name, excluded) if excluded else None
            if variable.count:
                pairs = vars_.select(variable)
                if exclusion is not None:
                    pairs = [p for p in pairs if not _excluded(exclusion, p[0])]
                values.append((variable.name.encode(), str(len(pairs)).encode()))
                continue
            named = vars_.named(variable)  # ("ARGS:foo", value), the key as the pair has it
            if exclusion is not None and named:
                keys = vars_.select(variable)
                named = [
                    n for n, (k, _) in zip(named, keys, strict=True) if not _excluded(exclusion, k)
                ]
            values += named
        return values

    def _transformed_of(
        self, values: Values, key: object, pipeline_id: int, fn: Callable[[bytes], bytes] | None
    ) -> list[bytes]:
        """The values through a pipeline: once per (values, pipeline) and phase."""
        if fn is None:
            return [v for _, v in values]
        if key is None:
            return [self._transform(pipeline_id, fn, v) for _, v in values]
        tkey = (key, pipeline_id)
        cached = self._tvalues.get(tkey)
        if cached is None:
            fast = self.waf.fast_paths[pipeline_id]
            if fast is None:
                cached = [self._transform(pipeline_id, fn, v) for _, v in values]
            elif fast.lowers:
                cached = [
                    self._transform(pipeline_id, fn, v) if fast.acts(v) else v.lower()
                    for _, v in values
                ]
            else:
                cached = [
                    self._transform(pipeline_id, fn, v) if fast.acts(v) else v for _, v in values
                ]
            self._tvalues[tkey] = cached
        return cached

    def _link_matches(self, rule: CompiledRule, head: CompiledRule) -> bool:
        if not rule.targets:  # SecAction
            self.stats.rules_full += rule is head
            self._actions(rule)
            return True
        if rule.scan is not None and not self._may_hit(rule):
            self.vars.matched = []
            self._count(rule, head, False)
            return False
        values, key = self._values_of(rule, head)
        self.vars.matched = []
        if not values:
            return False
        prefilter = rule.prefilter
        positions: Sequence[int] = range(len(values))
        transformed: list[bytes] = []
        if prefilter is not None and not rule.negated and key is not None and rule.scan is None:
            # The values the scan says the regex may match, from one look per (values,
            # pipeline): most rules stop here, the others run their regex on those only.
            group, bit = prefilter
            for step_id, step in zip(rule.step_ids, rule.step_pipes, strict=True):
                stepped = self._transformed_of(values, key, step_id, step)
                if self._union(group, stepped, (key, step_id)) & bit:
                    break
            else:
                self._count(rule, head, False)
                return False
        screen = prefilter
        if not rule.multi_match:
            transformed = self._transformed_of(values, key, rule.pipeline_id, rule.transform_fn)
            phrases = rule.phrases
            if phrases is not None and not self._phrases_found(phrases, transformed, key, rule):
                # No phrase in any value: one search over them all said so.
                self._count(rule, head, True)
                return False
            if prefilter is not None and not rule.negated and key is not None:
                # The values the scan names, from one list per (values, pipeline) that rules
                # share, instead of a look per value and rule (a large body has thousands).
                group, bit = prefilter
                found_in = self._candidate_list(key, rule.pipeline_id, group, transformed)
                positions = [p for p, found in enumerate(found_in) if found & bit]
                screen = None
        matched = False
        ran = False  # the operator ran on some value (the prefilter did not rule them all out)
        expand = self.expand
        memo = self._matches
        for position in positions:
            name, value = values[position]
            if rule.multi_match:
                if rule.constant:
                    memo_key = (id(rule), value)
                    if memo_key in memo:
                        found = memo[memo_key]
                    else:
                        found = memo[memo_key] = self._multi_match(rule, value)
                else:
                    found = self._multi_match(rule, value)
            else:
                value = transformed[position]
                found = None
                if screen is None or self._may_match(screen, value):
                    if rule.constant:
                        # Same operator, same value, same answer: a body that repeats a value
                        # (a JSON array of alike objects) costs one match per distinct value.
                        memo_key = (id(rule.operator), value)
                        if memo_key in memo:
                            found = memo[memo_key]
                        else:
                            found = memo[memo_key] = rule.operator.match(value, expand)
                    else:
                        found = rule.operator.match(value, expand)
            ran = True
            if (found is not None) == rule.negated:
                continue
            matched = True
            self.vars.matched.append((name, value))
            self.vars.matched_var = (name, value)
            if rule.capture and found is not None:
                for number, capture in enumerate(found.captures[:10]):
                    self.vars.tx[str(number)] = capture
            # As ModSecurity 2: a link's non-disruptive actions run for each value it matches,
            # at once (CRS sets a TX entry per header, and a chain link reads what the link
            # before it set).
            self._actions(rule)
        self._count(rule, head, ran)
        return matched

    def _phrases_found(
        self, phrases: Pm, transformed: list[bytes], key: object, rule: CompiledRule
    ) -> bool:
        """Whether one of `phrases` occurs in one of the values: their joined text is made
        once per (values, pipeline) and phase for the @pm rules that read them."""
        if key is None:
            return phrases.found_in(transformed)
        joined_key = (key, rule.pipeline_id)
        joined = self._joined.get(joined_key)
        if joined is None:
            joined = self._joined[joined_key] = joined_lower(transformed)
        return phrases.found_in_joined(joined)

    def _candidate_list(
        self, key: object, pipeline_id: int, group: int, transformed: list[bytes]
    ) -> list[int]:
        """The scan's answer for each of the values (once per list, pipeline and phase)."""
        list_key = (key, pipeline_id, group)
        found = self._candidate_lists.get(list_key)
        if found is None:
            found = self._candidate_lists[list_key] = [
                self._candidates_of(group, value) for value in transformed
            ]
        return found

    def _may_hit(self, rule: CompiledRule) -> bool:
        """Whether the scan says the rule's regex may match a value of one of its collections
        (a rule with `scan`): False rules the rule out. Rules that read the same collections
        share their values' scan as they are (most pipelines leave most values alone, or
        only lowercase them); only values a pipeline changes are scanned for it. Each look is
        one test of the rule's bit in a mask kept for the phase (`Waf.scan_sets`), up to the
        first that holds: no union of them is built, each rule asks for its own pattern."""
        prefilter = rule.prefilter
        assert prefilter is not None
        bit = prefilter[1]
        found = self._scan_found
        for index in rule.scan_sets:
            candidates = found[index]
            if candidates is None:
                candidates = found[index] = self._scan_set(index)
            if candidates & bit:
                return True
        return False

    def _scan_set(self, index: int) -> int:
        """The patterns entry `index` of `Waf.scan_sets` may match (see _may_hit)."""
        variable, group, step_id, step = self.waf.scan_sets[index]
        distinct = self._distinct.get(variable) or self._distinct_of(variable)
        values, triggers, double_space = distinct
        if not values:
            return 0
        if step is None:
            return self._base(group, values)
        fast = self.waf.fast_paths[step_id]
        if fast is not None and fast.leaves(triggers, double_space):
            return 0  # the pipeline changes none of the values beyond lowercasing
        return self._var_extra(variable, values, step_id, step, fast, group)

    def _var_extra(
        self,
        variable: int,
        values: list[bytes],
        step_id: int,
        step: Callable[[bytes], bytes],
        fast: FastPath | None,
        group: int,
    ) -> int:
        """The patterns of `group` that may match one of `values` that the pipeline changes,
        once through it (the others are in `_base`)."""
        if fast is not None:
            values = [value for value in values if fast.acts(value)]
        else:
            key = self.waf.input_keys[step_id]
            if key is not None:
                # One value for all those the pipeline turns into the same (fastpath.input_key),
                # picked once for the pipelines that share the key.
                keyed_key = (variable, id(key))
                keyed = self._keyed.get(keyed_key)
                if keyed is None:
                    keyed = self._keyed[keyed_key] = list(
                        {key(value): value for value in values}.values()
                    )
                values = keyed
        union = 0
        seen: set[bytes] = set()
        for value in values:
            changed = self._transform(step_id, step, value)
            # A value the pipeline leaves alone is in the base scan (`_base`); one that
            # several values become is scanned once.
            if changed == value or changed in seen:
                continue
            seen.add(changed)
            union |= self._candidates_of(group, changed)
        return union

    def _distinct_of(self, variable: int) -> tuple[list[bytes], frozenset[int], bool]:
        """A collection's distinct values, and their `signature` (see fastpath.py)."""
        pairs = self.vars.select(self.waf.scan_variables[variable])
        values = list(dict.fromkeys(v for _, v in pairs))
        distinct = self._distinct[variable] = (values, *signature(values))
        return distinct

    def _base(self, group: int, values: list[bytes]) -> int:
        """The patterns that may match a collection's values as they are or lowercased."""
        base = 0
        for value in values:
            base |= self._candidates_of(group, value)
            # (A long value takes the literal prefilter, which reads it lowercased.)
            if len(value) <= SET_MAX_VALUE:
                lower = value.lower()
                if lower != value:
                    base |= self._candidates_of(group, lower)
        return base

    def _union(self, group: int, transformed: list[bytes], key: object) -> int:
        """The patterns of `group` the scan says may match one of the values (once per list
        and phase)."""
        union = self._unions.get((key, group))
        if union is None:
            union = 0
            for value in transformed:
                union |= self._candidates_of(group, value)
            self._unions[(key, group)] = union
        return union

    def _count(self, rule: CompiledRule, head: CompiledRule, ran: bool) -> None:
        if rule is head:
            self.stats.rules_full += ran
            if rule.prefilter is not None:
                self.stats.rx_reached += 1
                self.stats.rx_full += ran

    def _actions(self, rule: CompiledRule) -> None:
        for setvar in rule.setvars:
            self._setvar(setvar)
        for option, argument in rule.ctls:
            self._ctl(option, argument)

    def _transform(self, pipeline_id: int, fn: Callable[[bytes], bytes], value: bytes) -> bytes:
        key = (pipeline_id, value)
        if len(value) > SHARED_VALUE_BYTES:
            memo = self._transformed
        else:
            memo = self.waf.shared_transforms
            if len(memo) >= SHARED_ENTRIES:
                memo.clear()
        result = memo.get(key)
        if result is None:
            link = self.waf.links[pipeline_id]
            if link is None:
                result = fn(value)
            else:
                # The pipeline but its last step (memoized too), then that step.
                parent, parent_fn, last, fast = link
                result = self._transform(parent, parent_fn, value)
                if fast is None or fast.acts(result):
                    result = last(result)
                elif fast.lowers:
                    result = result.lower()
            memo[key] = result
        return result

    def _multi_match(self, rule: CompiledRule, value: bytes) -> OperatorMatch | None:
        """`multiMatch`: the operator on the value and after each transformation that
        changes it (as ModSecurity: an unchanged value would give the same answer)."""
        prefilter = rule.prefilter
        for step, fast in zip(rule.steps, rule.step_fasts, strict=True):
            if step is not None:
                if fast is not None and not fast.acts(value):
                    changed = value.lower() if fast.lowers else value
                else:
                    changed = step(value)
                if changed == value:
                    continue
                value = changed
            if prefilter is None or self._may_match(prefilter, value):
                found = rule.operator.match(value, self.expand)
                if found is not None:
                    return found
        return None

    def _candidates_of(self, group: int, value: bytes) -> int:
        """The mask of the patterns of `group` that may match `value` (PatternSet.mask)."""
        key = (group, value)
        if len(value) > SHARED_VALUE_BYTES:
            memo = self._candidates
        else:
            memo = self.waf.shared_candidates
            if len(memo) >= SHARED_ENTRIES:
                memo.clear()
        candidates = memo.get(key)
        if candidates is None:
            candidates = memo[key] = self.waf.pattern_sets[group].mask(value)
        return candidates

    def _may_match(self, prefilter: tuple[int, int], value: bytes) -> bool:
        return self._candidates_of(prefilter[0], value) & prefilter[1] != 0

    # ---- actions -------------------------------------------------------------------------

    def _act(self, head: CompiledRule) -> None:
        if head.log:
            msg = self.expand(head.msg).decode("utf-8", "replace")
            logdata = self.expand(head.logdata).decode("utf-8", "replace")[:512]
        else:
            msg = logdata = ""  # nolog: nobody reads them (the setup and skip rules)
        self.matches.append(Match(head.id, msg, logdata, head.severity, head.tags, head.log))
        if head.disruptive in ("deny", "drop", "redirect") and self.interruption is None:
            self.interruption = Interruption(head.id, head.status, head.disruptive)
        elif head.disruptive == "allow":
            self.allowed = True

    def _setvar(self, spec: str) -> None:
        unset, collection, key_text, key, eq, sign, value = _setvar_parts(spec)
        if key is None:
            key = self.expand(key_text).decode("utf-8", "replace").lower()
        table = self.vars.collections.setdefault(collection, {})
        if unset:
            table.pop(key, None)
            return
        if not eq:
            table[key] = b"1"
            return
        expanded = self.expand(value)
        if sign:
            amount = _to_int(expanded)
            current = _to_int(table.get(key, b"0"))
            table[key] = str(current + amount if sign == "+" else current - amount).encode()
        else:
            table[key] = expanded[:MAX_SETVAR_VALUE]

    def _ctl(self, option: str, argument: str) -> None:
        if option in ("ruleremovebyid", "ruleremovebytag"):
            ids = self.waf.rule_ids("id" if option == "ruleremovebyid" else "tag", argument)
            self.removed |= ids
            # A rule folded away (fold.py) may be removed: its outcome no longer holds.
            self.folded = self.folded and ids.isdisjoint(self.waf.folded_ids)
        elif option in ("ruleremovetargetbyid", "ruleremovetargetbytag"):
            selector, _, target = argument.partition(";")
            variable = _target(target)
            ids = self.waf.rule_ids("id" if option == "ruleremovetargetbyid" else "tag", selector)
            # Folded rules read only TX: only a TX target taken from one of them matters.
            if variable.name == "TX" and not ids.isdisjoint(self.waf.folded_ids):
                self.folded = False
            self._extra.clear()
            self.removed_targets.append((ids, variable))
            self.tx_targets_removed |= variable.name == "TX"
        elif option == "ruleengine":
            mode = argument.lower()
            self.engine_off = mode == "off"
            self.detect_only = mode == "detectiononly" or self.waf.detect_only
        elif option == "requestbodyprocessor":
            self.vars.processor = argument.upper()
            self._forget_values()
        elif option == "forcerequestbodyvariable":
            self.vars.force_body_variable = argument.lower() == "on"
            self._forget_values()

    def _forget_values(self) -> None:
        """What rules read, computed for this phase, is computed again (a ctl changed it)."""
        self.vars.processor_changed()
        self._clear_phase_caches()

    def _clear_phase_caches(self) -> None:
        for cache in self._phase_caches:
            cache.clear()
        self._scan_found = [None] * len(self.waf.scan_sets)

    # ---- macros --------------------------------------------------------------------------

    def expand(self, text: str) -> bytes:
        """`%{tx.x}`, `%{MATCHED_VAR}`, `%{REQUEST_HEADERS.host}`, `%{rule.id}`, ..."""
        if "%{" not in text:
            return text.encode("utf-8", "surrogateescape")
        out: list[bytes] = []
        last = 0
        for match in _MACRO.finditer(text):
            out.append(text[last : match.start()].encode("utf-8", "surrogateescape"))
            out.append(self._macro(match.group(1)))
            last = match.end()
        out.append(text[last:].encode("utf-8", "surrogateescape"))
        return b"".join(out)

    def _macro(self, name: str) -> bytes:
        collection, dot, key = name.partition(".")
        upper = collection.upper()
        if upper == "TX" and dot:
            return self.vars.tx.get(key.lower(), b"")
        if upper == "RULE" and dot and self._rule is not None:
            rule = self._rule
            fields = {"id": str(rule.id), "msg": rule.msg, "severity": rule.severity}
            return fields.get(key.lower(), "").encode()
        if upper not in seclang.VARIABLES:
            return b""
        # Not `select`: it caches by the variable's id, and this one is a temporary.
        pairs = self.vars.select_uncached(Variable(upper, key or None))
        return pairs[0][1] if pairs else b""


def _atoi(value: bytes) -> int:
    # TX values are mostly a few short numbers ("0", "1", "5"): each is read once.
    return _short_atoi(value) if len(value) <= 32 else c_atoi(value)


@lru_cache(maxsize=1024)
def _short_atoi(value: bytes) -> int:
    return c_atoi(value)


@lru_cache(maxsize=4096)
def _setvar_parts(spec: str) -> tuple[bool, str, str, str | None, bool, str, str]:
    """A `setvar` as written, read once: (unset, COLLECTION, key as written, the key
    lower-cased if it holds no macro (else None), has "=", "+" or "-" or "", value text)."""
    unset = spec.startswith("!")
    target, eq, value = spec.lstrip("!").partition("=")
    collection, _, key_text = target.partition(".")
    key = None if "%{" in key_text else key_text.lower()
    sign = value[:1] if value[:1] in ("+", "-") else ""
    return unset, collection.upper(), key_text, key, bool(eq), sign, value[len(sign) :]


@lru_cache(maxsize=1024)
def _target(text: str) -> Variable:
    return seclang.parse_variables(text)[0]


# What a rule's exclusions take out of one collection: all of it, keys (lowercased as the
# rule file's text), key regexes (case-insensitive).
Exclusion = tuple[bool, frozenset[bytes], tuple[re.Pattern[bytes], ...]]


@lru_cache(maxsize=4096)
def _exclusion(name: str, excluded: tuple[Variable, ...]) -> Exclusion | None:
    """The exclusions among `excluded` that name collection `name`, read once (None: none
    does): a large body's thousands of keys are each tested against them."""
    ours = [other for other in excluded if other.name == name]
    if not ours:
        return None
    everything = any(other.key is None for other in ours)
    keys = frozenset(
        other.key.lower().encode("utf-8", "surrogateescape")
        for other in ours
        if other.key is not None and not other.key_is_regex
    )
    patterns = tuple(
        re.compile(other.key.encode("utf-8", "surrogateescape"), re.I)
        for other in ours
        if other.key is not None and other.key_is_regex
    )
    return everything, keys, patterns


def _excluded(exclusion: Exclusion, key: bytes) -> bool:
    everything, keys, patterns = exclusion
    if everything or key.lower() in keys:
        return True
    return any(pattern.search(key) for pattern in patterns)
