"""Partial evaluation of a compiled rule set at load: what depends only on the setup.

CRS starts each request with setup rules (900990, REQUEST-901: `&TX:x "@eq 0"` defaults, score
resets) and every rule file with paranoia-level checks
(`SecRule TX:DETECTION_PARANOIA_LEVEL "@lt 2" "...,skipAfter:END-..."`). Their outcome is the
same for every request: it depends on TX values the setup gives and no rule changes at run
time. They are worked out once here, on a request with nothing in it:

- the `Prefix`: the setup rules at the head of phase 1 that read only TX (and set only TX, by
  values that depend only on TX): the TX values, matches and matched state they leave, which a
  transaction takes at once instead of running them;
- per phase, a `Folded` program: a rule whose first link reads only "frozen" TX keys (values
  the prefix set, which no other rule may write) and does not match is left out; one that
  matches and only skips becomes a `Jump` (its match, then the skip), so the rules of a
  paranoia level above the configured one are never walked.

A transaction uses the folded programs only while its rule set is as loaded: a `ctl` that
removes rules or targets (which could remove a paranoia-level check) makes it fall back to the
full programs at the same place (`Folded.origin` maps a folded index to the full one).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from outwork.waf.request import WafRequest

if TYPE_CHECKING:
    from outwork.waf.engine import CompiledRule, Match, Transaction, Waf

_MACRO = re.compile(r"%\{([^}]+)\}")
# Macros a folded rule's setvar may hold: what the TX state and the rule itself give.
_STATIC_MACROS = ("TX", "RULE", "MATCHED_VAR", "MATCHED_VAR_NAME")
_EMPTY = WafRequest(b"GET", b"/", b"HTTP/1.1", [], "0.0.0.0", 0, b"")


@dataclass(frozen=True, slots=True)
class Jump:
    """A folded rule that always matches and skips: its match, then the skip."""

    match: Match
    matched: list[tuple[bytes, bytes]]  # MATCHED_VARS after it (MATCHED_VAR: the last)
    target: int  # index in the folded program to go on from


@dataclass(frozen=True, slots=True)
class ClearMatched:
    """Folded rules that never match left MATCHED_VAR(S) empty: the next rule reads that."""


CLEAR_MATCHED = ClearMatched()


@dataclass(slots=True)
class Folded:
    program: list[CompiledRule | str | Jump | ClearMatched]
    # Where a skip to a marker (or rule id) goes on in `program` (absent: its end).
    targets: dict[str, int]
    origin: list[int]  # the index in the full program of each folded item


@dataclass(slots=True)
class Prefix:
    """What the setup rules at the head of phase 1 leave (see the module docstring)."""

    end: int  # the index in the full phase 1 program where a transaction goes on
    tx: dict[str, bytes]
    matches: list[Match]
    matched: list[tuple[bytes, bytes]]
    matched_var: tuple[bytes, bytes]
    rules: int  # how many rules it stands for


def fold(waf: Waf) -> tuple[Prefix | None, dict[int, Folded], frozenset[int]]:
    """The prefix and folded programs of a compiled rule set (empty when nothing folds), and
    the ids of the rules folded away (left out, or made a Jump)."""
    from outwork.waf.engine import Transaction

    probe = Transaction(waf, _EMPTY)
    prefix = _prefix(waf, probe)
    if prefix is None:
        return None, {}, frozenset()
    written = _runtime_writes(waf, prefix)

    def frozen(key: str) -> bool:
        """No rule sets the key at run time: it holds what the prefix left (or nothing)."""
        return not _may_write(written, key)

    programs: dict[int, Folded] = {}
    folded_ids: set[int] = set()
    for phase in (1, 2, 3, 4):
        start = prefix.end if phase == 1 else 0
        programs[phase] = _fold_phase(waf, probe, frozen, phase, start, folded_ids)
    return prefix, programs, frozenset(folded_ids)


def _reads_only_tx(rule: CompiledRule, known: Callable[[str], bool] | None) -> bool:
    """The link reads only TX values by name (`known`: only keys it accepts; None: any), and
    its operator's argument only TX values by name."""
    if rule.excluded:
        return False
    for variable in rule.targets:
        if variable.name != "TX" or variable.key is None or variable.key_is_regex:
            return False
        if known is not None and not known(variable.key.lower()):
            return False
    for macro in _MACRO.findall(rule.argument):
        collection, dot, key = macro.partition(".")
        if collection.upper() != "TX" or not dot:
            return False
        if known is not None and not known(key.lower()):
            return False
    return True


def _static_actions(rule: CompiledRule) -> bool:
    """The link's actions change only TX, by values the TX state gives."""
    if rule.ctls:
        return False
    for setvar in rule.setvars:
        target, _, value = setvar.lstrip("!").partition("=")
        collection, _, key = target.partition(".")
        if collection.upper() != "TX" or "%{" in key:
            return False
        for macro in _MACRO.findall(value):
            if macro.partition(".")[0].upper() not in _STATIC_MACROS:
                return False
    return True


def _prefix(waf: Waf, probe: Transaction) -> Prefix | None:
    """Run phase 1 on `probe` while its rules read and set only TX (from the start, TX holds
    what they set: nothing else)."""
    program = waf.programs[1]
    markers = waf.markers[1]
    index = 0
    rules = 0
    while index < len(program):
        item = program[index]
        if isinstance(item, str):
            index += 1
            continue
        links = (item, *item.chained)
        if not all(_reads_only_tx(link, None) for link in links):
            break
        static = all(_static_actions(link) for link in links)
        if item.chained or not static:
            # Its head may match and run what cannot be folded: fold it only when it does not.
            if not _reads_only_tx(item, None) or item.setvars or item.ctls:
                break
            if _head_matches(probe, item):
                break
            index += 1
            rules += 1
            continue
        vars_ = probe.vars
        saved = dict(vars_.tx), len(probe.matches), list(vars_.matched), vars_.matched_var
        matched = probe._link_matches(item, item)  # its actions run for each value it matches
        if matched and (item.disruptive != "pass" or item.log):
            vars_.tx.clear()
            vars_.tx.update(saved[0])
            del probe.matches[saved[1] :]
            vars_.matched, vars_.matched_var = saved[2], saved[3]
            break
        if matched:
            probe._act(item)
        index += 1
        rules += 1
        if matched and item.skip_after is not None:
            index = markers.get(item.skip_after, len(program) - 1) + 1
    if rules == 0:
        return None
    vars_ = probe.vars
    return Prefix(
        index,
        dict(vars_.tx),
        list(probe.matches),
        list(vars_.matched),
        vars_.matched_var,
        rules,
    )


def _head_matches(probe: Transaction, rule: CompiledRule) -> bool:
    """Whether a TX-reading link matches on the probe's TX, without running its actions."""
    saved = rule.setvars, rule.ctls
    rule.setvars, rule.ctls = (), ()
    try:
        return probe._link_matches(rule, rule)
    finally:
        rule.setvars, rule.ctls = saved


def _runtime_writes(waf: Waf, prefix: Prefix) -> tuple[set[str], list[str]]:
    """The TX keys rules may set at run time (every rule not in the prefix): exact keys, and
    the leading text of keys made by macros. `capture` sets TX.0 to TX.9."""
    folded_ids = {id(r) for r in waf.programs[1][: prefix.end] if not isinstance(r, str)}
    exact: set[str] = set()
    prefixes: list[str] = []
    for head in waf.rules:
        if id(head) in folded_ids:
            continue
        for rule in (head, *head.chained):
            if rule.capture:
                exact.update(str(n) for n in range(10))
            for setvar in rule.setvars:
                target = setvar.lstrip("!").partition("=")[0]
                collection, _, key = target.partition(".")
                if collection.upper() != "TX":
                    continue
                if "%{" in key:
                    prefixes.append(key.partition("%{")[0].lower())
                else:
                    exact.add(key.lower())
    return exact, prefixes


def _may_write(written: tuple[set[str], list[str]], key: str) -> bool:
    exact, prefixes = written
    return key in exact or any(key.startswith(p) for p in prefixes)


def _fold_phase(
    waf: Waf,
    probe: Transaction,
    frozen: Callable[[str], bool],
    phase: int,
    start: int,
    folded_ids: set[int],
) -> Folded:
    full = waf.programs[phase]
    program: list[CompiledRule | str | Jump | ClearMatched] = []
    origin: list[int] = []
    skips: dict[int, str] = {}  # folded index of a Jump -> its marker
    jumps: dict[int, tuple[Match, list[tuple[bytes, bytes]]]] = {}
    dropped = False
    for index in range(start, len(full)):
        item = full[index]
        if not isinstance(item, str) and _reads_only_tx(item, frozen):
            if not _head_matches(probe, item):
                dropped = True
                folded_ids.add(item.id)
                continue
            if (
                not item.chained
                and item.skip_after is not None
                and not item.setvars
                and not item.ctls
                and item.disruptive == "pass"
                and not item.log
            ):
                before = len(probe.matches)
                probe._act(item)
                match = probe.matches[before]
                del probe.matches[before:]
                folded_ids.add(item.id)
                skips[len(program)] = item.skip_after
                jumps[len(program)] = (match, list(probe.vars.matched))
                program.append(item)  # replaced by its Jump below
                origin.append(index)
                dropped = False
                continue
        if dropped and not isinstance(item, str):
            program.append(CLEAR_MATCHED)
            origin.append(index - 1)
            dropped = False
        program.append(item)
        origin.append(index)
    if dropped:
        program.append(CLEAR_MATCHED)
        origin.append(len(full) - 1)
    # A skip goes on after its marker in the full program: in the folded one, at the first
    # item at or after that place (`origin` grows with the index).
    targets = {
        name: bisect_left(origin, position + 1) for name, position in waf.markers[phase].items()
    }
    for position, marker in skips.items():
        match, matched = jumps[position]
        program[position] = Jump(match, matched, targets.get(marker, len(program)))
    return Folded(program, targets, origin)
