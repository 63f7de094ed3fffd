"""The engine: rule files compiled once (`Waf.load`), run per request (`Transaction`).

What runs is what ModSecurity 2 runs for phases 1 (request head), 2 (request body), 3
(response head) and 4 (response body): rules in file order per phase, `chain`,
`skipAfter`/`SecMarker`, `setvar` on TX with macro expansion, runtime `ctl` (rule removal by
id, tag or target, rule engine, body processor), CRS's anomaly scoring (a rule's `block` is
the default action `pass`; the `deny` of 949110 is what blocks, of 959100 and 959101 on the
outbound score). Phase 5 (logging) is loaded and checked but not run: it only reports.

Speed comes from not doing work twice: each (value, transformation pipeline) is computed
once per transaction, and every `@rx` of a phase with the same pipeline sits in one
`PatternSet`, scanned once per distinct transformed value; a rule runs its exact regex only
on values the scan says it may match. `Transaction.stats` counts how many rules ran fully.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from outwork.waf import seclang
from outwork.waf.fastpath import FastPath, fast_path
from outwork.waf.operators import Operator, OperatorMatch, build_operator
from outwork.waf.patterns import PatternSet
from outwork.waf.request import WafRequest
from outwork.waf.response import WafResponse
from outwork.waf.rules import Directive, Marker, Remove, Rule, Setting, UpdateTarget, Variable
from outwork.waf.transforms import pipeline
from outwork.waf.variables import LIVE, Variables

CRS_RULES = Path(__file__).parent / "crs" / "rules"
REQUEST_PHASES = (1, 2)
DISRUPTIVE = ("pass", "block", "deny", "drop", "allow", "redirect", "proxy")
MAX_SETVAR_VALUE = 64 * 1024  # a TX value built from request data is capped, not unbounded
_MACRO = re.compile(r"%\{([^}]+)\}")
_unique_ids = itertools.count(1)
_NO_EXTRA: tuple[tuple[Variable, ...], object] = ((), ())
Values = list[tuple[bytes, bytes]]


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
    targets_key: int = 0  # the same for rules with the same targets and exclusions
    pipeline_id: int = 0  # the same for rules with the same transformations
    # multiMatch: None (the value as is), then the value after each transformation in turn.
    steps: tuple[Callable[[bytes], bytes] | None, ...] = (None,)
    transform_fn: Callable[[bytes], bytes] | None = None  # None: no transformation
    # What the prefilter scans: the rule's pipeline, or (multiMatch) each of its prefixes.
    step_ids: tuple[int, ...] = ()
    step_pipes: tuple[Callable[[bytes], bytes] | None, ...] = ()
    # A prefiltered, plain (not negated, not multiMatch, not live) @rx rule:
    # (pipeline id, pattern set, index in it); None for every other rule.
    quick: tuple[int, int, int] | None = None
    # The rule's @rx in its phase's pattern set for its pipeline: (group, index), or None.
    prefilter: tuple[int, int] | None = None


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
                    rule.targets += tuple(v for v in update.variables if not v.exclude)
                    rule.excluded += tuple(v for v in update.variables if v.exclude)
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
        return waf

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
            targets=tuple(v for v in rule.variables if not v.exclude),
            excluded=tuple(v for v in rule.variables if v.exclude),
            transforms=tuple(transforms),
            transform=transform,
            operator=operator,
            operator_name=rule.operator,
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
        compiled.transform_fn = transform if compiled.transforms else None
        if compiled.multi_match:
            prefixes = [compiled.transforms[:n] for n in range(len(compiled.transforms) + 1)]
        else:
            prefixes = [compiled.transforms]
        ids = self.pipeline_ids
        compiled.step_ids = tuple(ids.setdefault(p, len(ids)) for p in prefixes)
        compiled.step_pipes = tuple(pipeline(p) if p else None for p in prefixes)
        compiled.targets_key = self.target_keys.setdefault(
            (compiled.targets, compiled.excluded), len(self.target_keys)
        )
        if rule is head:
            compiled.chained = [self._rule(link, head) for link in rule.chained]
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
                compiled.prefilter = (len(sets), index)
                if not (compiled.negated or compiled.multi_match or compiled.live):
                    compiled.quick = (compiled.pipeline_id, len(sets), index)
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
        self.removed: set[int] = set()  # rule ids removed for this request (ctl)
        self.removed_targets: list[tuple[frozenset[int], Variable]] = []
        self.tx_targets_removed = False  # a ctl took a TX target from some rules
        # By the rule's `targets_key`: CRS gives most rules the same variable list.
        self._values: dict[object, Values] = {}
        self._extra: dict[int, tuple[tuple[Variable, ...], object]] = {}  # by rule id
        self._tvalues: dict[object, list[bytes]] = {}  # by (values key, pipeline)
        self._unions: dict[object, set[int]] = {}  # see _union
        self._transformed: dict[tuple[int, bytes], bytes] = {}  # by (pipeline, value)
        self._matches: dict[tuple[int, bytes], OperatorMatch | None] = {}  # by (operator, value)
        self._candidates: dict[tuple[int, bytes], set[int]] = {}
        self._rule: CompiledRule | None = None

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
            self._values.clear()
            self._tvalues.clear()
            self._unions.clear()
        if self.interruption is not None or self.engine_off or self.allowed:
            return self.interruption
        program = self.waf.programs[phase]
        markers = self.waf.markers[phase]
        unions = self._unions
        stats = self.stats
        index = 0
        while index < len(program):
            item = program[index]
            index += 1
            if isinstance(item, str) or item.id in self.removed:
                continue
            stats.rules_reached += 1
            quick = item.quick
            if quick is not None:
                # A prefiltered @rx whose values were scanned already (another rule reads
                # the same ones): one look says whether it can match at all.
                extra_key = self._removed_targets_of(item)[1] if self.removed_targets else ()
                union = unions.get((((item.targets_key, extra_key), quick[0]), quick[1]))
                if union is not None and quick[2] not in union:
                    stats.rx_reached += 1
                    self.vars.matched = []
                    continue
            if not self._chain_matches(item):
                continue
            self._act(item)
            if self.engine_off or self.allowed:
                break
            if self.interruption is not None:
                break
            skip = item.skip_after
            if skip is not None:
                index = markers.get(skip, len(program) - 1) + 1
        return None if self.detect_only else self.interruption

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
            if variable.count:
                pairs = vars_.select(variable)
                if excluded:
                    pairs = [p for p in pairs if not _excluded(variable, p[0], excluded)]
                values.append((variable.name.encode(), str(len(pairs)).encode()))
                continue
            named = vars_.named(variable)  # ("ARGS:foo", value), the key as the pair has it
            if excluded and named:
                keys = vars_.select(variable)
                named = [
                    n
                    for n, (k, _) in zip(named, keys, strict=True)
                    if not _excluded(variable, k, excluded)
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
            else:
                acts = fast.acts.search
                transform = self._transform
                if fast.lowers:
                    cached = [
                        transform(pipeline_id, fn, v) if acts(v) else v.lower() for _, v in values
                    ]
                else:
                    cached = [transform(pipeline_id, fn, v) if acts(v) else v for _, v in values]
            self._tvalues[tkey] = cached
        return cached

    def _link_matches(self, rule: CompiledRule, head: CompiledRule) -> bool:
        if not rule.targets:  # SecAction
            self.stats.rules_full += rule is head
            self._actions(rule)
            return True
        values, key = self._values_of(rule, head)
        self.vars.matched = []
        if not values:
            return False
        prefilter = rule.prefilter
        positions = range(len(values))
        transformed: list[bytes] = []
        if prefilter is not None and not rule.negated and key is not None:
            # The values the scan says the regex may match, from one look per (values,
            # pipeline): most rules stop here, the others run their regex on those only.
            group, index = prefilter
            for step_id, step in zip(rule.step_ids, rule.step_pipes, strict=True):
                stepped = self._transformed_of(values, key, step_id, step)
                if index in self._union(group, stepped, (key, step_id)):
                    break
            else:
                self._count(rule, head, False)
                return False
        if not rule.multi_match:
            transformed = self._transformed_of(values, key, rule.pipeline_id, rule.transform_fn)
        matched = False
        ran = False  # the operator ran on some value (the prefilter did not rule them all out)
        expand = self.expand
        memo = self._matches
        for position in positions:
            name, value = values[position]
            if rule.multi_match:
                found = self._multi_match(rule, value)
            else:
                value = transformed[position]
                found = None
                if prefilter is None or self._may_match(prefilter, value):
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

    def _union(self, group: int, transformed: list[bytes], key: object) -> set[int]:
        """The patterns of `group` the scan says may match one of the values (once per list
        and phase)."""
        union = self._unions.get((key, group))
        if union is None:
            union = set()
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
        result = self._transformed.get(key)
        if result is None:
            result = self._transformed[key] = fn(value)
        return result

    def _multi_match(self, rule: CompiledRule, value: bytes) -> OperatorMatch | None:
        """`multiMatch`: the operator on the value and after each transformation."""
        prefilter = rule.prefilter
        for step in rule.steps:
            if step is not None:
                value = step(value)
            if prefilter is None or self._may_match(prefilter, value):
                found = rule.operator.match(value, self.expand)
                if found is not None:
                    return found
        return None

    def _candidates_of(self, group: int, value: bytes) -> set[int]:
        key = (group, value)
        candidates = self._candidates.get(key)
        if candidates is None:
            candidates = self._candidates[key] = self.waf.pattern_sets[group].candidates(value)
        return candidates

    def _may_match(self, prefilter: tuple[int, int], value: bytes) -> bool:
        return prefilter[1] in self._candidates_of(prefilter[0], value)

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
        unset = spec.startswith("!")
        target, eq, value = spec.lstrip("!").partition("=")
        collection, _, key = target.partition(".")
        key = self.expand(key).decode("utf-8", "replace").lower()
        table = self.vars.collections.setdefault(collection.upper(), {})
        if unset:
            table.pop(key, None)
            return
        if not eq:
            table[key] = b"1"
            return
        if value[:1] in ("+", "-"):
            amount = _to_int(self.expand(value[1:]))
            current = _to_int(table.get(key, b"0"))
            table[key] = str(current + amount if value[0] == "+" else current - amount).encode()
        else:
            table[key] = self.expand(value)[:MAX_SETVAR_VALUE]

    def _ctl(self, option: str, argument: str) -> None:
        if option == "ruleremovebyid":
            self.removed |= self.waf.rule_ids("id", argument)
        elif option == "ruleremovebytag":
            self.removed |= self.waf.rule_ids("tag", argument)
        elif option in ("ruleremovetargetbyid", "ruleremovetargetbytag"):
            selector, _, target = argument.partition(";")
            variable = _target(target)
            ids = self.waf.rule_ids("id" if option == "ruleremovetargetbyid" else "tag", selector)
            self._extra.clear()
            self.removed_targets.append((ids, variable))
            self.tx_targets_removed |= variable.name == "TX"
        elif option == "ruleengine":
            mode = argument.lower()
            self.engine_off = mode == "off"
            self.detect_only = mode == "detectiononly" or self.waf.detect_only
        elif option == "requestbodyprocessor":
            self.vars.processor = argument.upper()
        elif option == "forcerequestbodyvariable":
            self.vars.force_body_variable = argument.lower() == "on"

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
        pairs = self.vars.select(Variable(upper, key or None))
        return pairs[0][1] if pairs else b""


@lru_cache(maxsize=1024)
def _target(text: str) -> Variable:
    return seclang.parse_variables(text)[0]


def _excluded(variable: Variable, key: bytes, excluded: tuple[Variable, ...]) -> bool:
    for other in excluded:
        if other.name != variable.name:
            continue
        if other.key is None:
            return True
        if other.key_is_regex:
            if re.search(other.key.encode("utf-8", "surrogateescape"), key, re.I):
                return True
        elif other.key.lower().encode("utf-8", "surrogateescape") == key.lower():
            return True
    return False
