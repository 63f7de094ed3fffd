"""SecLang, read as ModSecurity 2 on Apache reads it, into the rule model (`rules`).

Three layers, each as its reference does it:
- lines: a line ending in `\\` continues on the next (Apache's config reader); a logical line
  whose first non-blank character is `#` is a comment;
- words: Apache's `ap_getword_conf`: a word is quoted (`"..."` or `'...'`, where `\\<quote>`
  does not end it) or runs to the next blank; in either, `\\\\` and `\\<quote>` lose their
  backslash;
- a rule's three parts: variables (`ARGS|!ARGS:foo|&TX:x|REQUEST_HEADERS:/regex/`), the
  operator (`!@rx ...`; no `@` means `@rx`), actions (`name:value` separated by commas, a
  value quoted in `'...'` with `\\'` and `\\\\` escapes, as ModSecurity's `msre_parse_generic`).

Anything unknown (directive, variable, operator, action, ctl option, transformation) is an
error naming its file and line: a rule set that half loads would protect half.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from outwork.waf.rules import (
    PHASE_NAMES,
    Action,
    Directive,
    Marker,
    Remove,
    Rule,
    Setting,
    UpdateTarget,
    Variable,
    Where,
)
from outwork.waf.transforms import TRANSFORMS

MAX_LINE = 1 << 20  # a logical line (continuations joined); CRS's longest is ~10 KiB
BLANKS = " \t\n\r\f\v"  # Apache's apr_isspace: ASCII only

OPERATORS = {
    name.lower(): name
    for name in (
        "rx",
        "pm",
        "pmf",
        "pmFromFile",
        "detectSQLi",
        "detectXSS",
        "within",
        "streq",
        "beginsWith",
        "endsWith",
        "contains",
        "containsWord",
        "eq",
        "ge",
        "gt",
        "lt",
        "le",
        "validateByteRange",
        "validateUrlEncoding",
        "validateUtf8Encoding",
        "ipMatch",
        "ipMatchFromFile",
        "ipMatchF",
        "unconditionalMatch",
        "noMatch",
        "strmatch",
    )
}

VARIABLES = frozenset(
    """ARGS ARGS_NAMES ARGS_GET ARGS_GET_NAMES ARGS_POST ARGS_POST_NAMES ARGS_COMBINED_SIZE
    REQUEST_HEADERS REQUEST_HEADERS_NAMES REQUEST_COOKIES REQUEST_COOKIES_NAMES REQUEST_URI
    REQUEST_URI_RAW REQUEST_FILENAME REQUEST_BASENAME REQUEST_LINE REQUEST_METHOD
    REQUEST_PROTOCOL QUERY_STRING REQUEST_BODY REQUEST_BODY_LENGTH FILES FILES_NAMES FILES_SIZES
    FILES_COMBINED_SIZE XML TX MATCHED_VAR MATCHED_VARS MATCHED_VAR_NAME MATCHED_VARS_NAMES
    REQBODY_PROCESSOR REQBODY_ERROR REQBODY_ERROR_MSG MULTIPART_PART_HEADERS
    MULTIPART_STRICT_ERROR MULTIPART_UNMATCHED_BOUNDARY MULTIPART_FILENAME MULTIPART_NAME
    REMOTE_ADDR REMOTE_PORT REMOTE_HOST SERVER_NAME SERVER_PORT SERVER_ADDR UNIQUE_ID DURATION
    TIME TIME_EPOCH RESPONSE_BODY RESPONSE_HEADERS RESPONSE_HEADERS_NAMES RESPONSE_STATUS
    RESPONSE_PROTOCOL RESPONSE_CONTENT_TYPE RESPONSE_CONTENT_LENGTH IP GLOBAL SESSION USER
    RESOURCE ENV RULE WEBSERVER_ERROR_LOG AUTH_TYPE FULL_REQUEST FULL_REQUEST_LENGTH
    INBOUND_DATA_ERROR OUTBOUND_DATA_ERROR URLENCODED_ERROR STATUS_LINE""".split()
)

# Every action ModSecurity 2 knows that a CRS file or an exclusion file may use.
ACTIONS = frozenset(
    """id phase pass block deny drop allow redirect proxy status t chain skip skipafter setvar
    ctl msg tag severity logdata capture multimatch ver rev maturity accuracy nolog log auditlog
    noauditlog expirevar initcol setenv setuid setsid sanitisematched sanitisearg
    sanitiserequestheader sanitiseresponseheader sanitisematchedbytes exec pause append
    prepend xmlns deprecatevar""".split()
)

CTL_OPTIONS = {
    name.lower(): name
    for name in (
        "ruleRemoveById",
        "ruleRemoveByTag",
        "ruleRemoveByMsg",
        "ruleRemoveTargetById",
        "ruleRemoveTargetByTag",
        "ruleRemoveTargetByMsg",
        "ruleEngine",
        "requestBodyProcessor",
        "forceRequestBodyVariable",
        "requestBodyAccess",
        "requestBodyLimit",
        "responseBodyAccess",
        "responseBodyLimit",
        "auditEngine",
        "auditLogParts",
        "debugLogLevel",
        "hashEngine",
        "hashEnforcement",
    )
}

SETTINGS = frozenset(
    """SecRuleEngine SecRequestBodyAccess SecResponseBodyAccess SecDefaultAction
    SecComponentSignature SecRequestBodyLimit SecRequestBodyNoFilesLimit
    SecRequestBodyInMemoryLimit SecRequestBodyLimitAction SecResponseBodyLimit
    SecResponseBodyLimitAction SecResponseBodyMimeType SecCollectionTimeout SecArgumentSeparator
    SecCookieFormat SecUnicodeMapFile SecStatusEngine SecAuditEngine SecAuditLog
    SecAuditLogParts SecAuditLogType SecAuditLogStorageDir SecAuditLogRelevantStatus
    SecDebugLog SecDebugLogLevel SecTmpDir SecDataDir SecPcreMatchLimit
    SecPcreMatchLimitRecursion SecArgumentsLimit SecRequestBodyJsonDepthLimit
    SecServerSignature SecHttpBlKey SecGeoLookupDb SecUploadDir SecUploadKeepFiles""".split()
)
_SETTINGS = {name.lower(): name for name in SETTINGS}


class SeclangError(ValueError):
    """A rule file the engine cannot run: `FILE:LINE: message`."""

    def __init__(self, where: Where, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


# ---- lines and words ----------------------------------------------------------------------


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, line) for each logical line that is not blank or a comment."""
    pending: list[str] = []
    start = 0
    size = 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip(BLANKS)
        if not pending:
            start = number
        size += len(line)
        if size > MAX_LINE:
            raise SeclangError(Where("", start), f"line longer than {MAX_LINE} characters")
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = "".join(pending)
        pending = []
        size = 0
        stripped = joined.strip(BLANKS)
        if stripped and not stripped.startswith("#"):
            yield start, stripped
    if pending:
        joined = "".join(pending).strip(BLANKS)
        if joined and not joined.startswith("#"):
            yield start, joined


def _unescape(text: str, quote: str) -> str:
    """Apache's `substring_conf`: `\\\\` and `\\<quote>` lose their backslash."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and (text[i + 1] == "\\" or text[i + 1] == quote):
            out.append(text[i + 1])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def words(line: str) -> list[str]:
    """Apache's `ap_getword_conf` applied until the line is used up."""
    result: list[str] = []
    i = 0
    n = len(line)
    while True:
        while i < n and line[i] in BLANKS:
            i += 1
        if i >= n:
            return result
        quote = line[i]
        if quote in "\"'":
            j = i + 1
            while j < n and line[j] != quote:
                j += 2 if line[j] == "\\" and j + 1 < n and line[j + 1] == quote else 1
            if j >= n:
                raise ValueError(f"unterminated {quote}-quoted word")
            result.append(_unescape(line[i + 1 : j], quote))
            i = j + 1
        else:
            j = i
            while j < n and line[j] not in BLANKS:
                j += 1
            result.append(_unescape(line[i:j], ""))
            i = j


# ---- the three parts of a rule ------------------------------------------------------------


def parse_variables(text: str) -> tuple[Variable, ...]:
    result: list[Variable] = []
    i = 0
    n = len(text)
    if not text.strip():
        raise ValueError("empty variable list")
    while i < n:
        exclude = count = False
        while i < n and text[i] in "!&":
            exclude |= text[i] == "!"
            count |= text[i] == "&"
            i += 1
        j = i
        while j < n and text[j] not in ":|":
            j += 1
        name = text[i:j].strip().upper()
        if name not in VARIABLES:
            raise ValueError(f"unknown variable {text[i:j]!r}")
        key: str | None = None
        is_regex = False
        if j < n and text[j] == ":":
            j += 1
            if j < n and text[j] == "'":
                end = text.find("'", j + 1)
                if end < 0:
                    raise ValueError("unterminated '-quoted selector")
                key = text[j + 1 : end]
                j = end + 1
            elif j < n and text[j] == "/" and name != "XML":  # XML takes an XPath
                # A regex selector ends at the `/` followed by `|` or the end (it may hold `|`).
                end = j + 1
                while True:
                    end = text.find("/", end)
                    if end < 0:
                        raise ValueError("unterminated /regex/ selector")
                    if end + 1 == n or text[end + 1] == "|":
                        break
                    end += 1
                key = text[j + 1 : end]
                is_regex = True
                j = end + 1
            else:
                end = text.find("|", j)
                end = n if end < 0 else end
                key = text[j:end]
                j = end
            if not is_regex and len(key) >= 2 and key[0] == key[-1] == "/":
                key = key[1:-1]  # a quoted regex: `'/^_ga/'`
                is_regex = True
            if not key:
                raise ValueError(f"empty selector for {name}")
        if j < n:
            if text[j] != "|":
                raise ValueError(f"expected | after {name}")
            j += 1
            if j >= n:
                raise ValueError("variable list ends with |")
        result.append(Variable(name, key, is_regex, count, exclude))
        i = j
    return tuple(result)


def parse_operator(text: str) -> tuple[bool, str, str]:
    """(negated, operator name without `@`, argument)."""
    i = 0
    while i < len(text) and text[i] in BLANKS:
        i += 1
    negated = text.startswith("!", i)
    if negated:
        i += 1
    if not text.startswith("@", i):
        return negated, "rx", text[i:]
    j = i + 1
    while j < len(text) and text[j] not in BLANKS:
        j += 1
    name = OPERATORS.get(text[i + 1 : j].lower())
    if name is None:
        raise ValueError(f"unknown operator {text[i:j]!r}")
    while j < len(text) and text[j] in BLANKS:
        j += 1
    return negated, name, text[j:]


def parse_actions(text: str) -> tuple[Action, ...]:
    result: list[Action] = []
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in BLANKS:
            i += 1
        if i >= n:
            break
        j = i
        while j < n and text[j] not in ":," and text[j] not in BLANKS:
            j += 1
        name = text[i:j].lower()
        if not name:
            raise ValueError(f"empty action name at offset {i}")
        if name not in ACTIONS:
            raise ValueError(f"unknown action {text[i:j]!r}")
        while j < n and text[j] in BLANKS:
            j += 1
        value: str | None = None
        if j < n and text[j] == ":":
            j += 1
            while j < n and text[j] in BLANKS:
                j += 1
            if j < n and text[j] == "'":
                j += 1
                out: list[str] = []
                while True:
                    if j >= n:
                        raise ValueError(f"action {name}: unterminated '-quoted value")
                    char = text[j]
                    if char == "\\":
                        if j + 1 >= n or text[j + 1] not in "'\\":
                            raise ValueError(f"action {name}: invalid quoted pair")
                        out.append(text[j + 1])
                        j += 2
                    elif char == "'":
                        j += 1
                        break
                    else:
                        out.append(char)
                        j += 1
                value = "".join(out)
            else:
                k = j
                while k < n and text[k] != "," and text[k] not in BLANKS:
                    k += 1
                value = text[j:k]
                j = k
        while j < n and text[j] in BLANKS:
            j += 1
        if j < n and text[j] != ",":
            raise ValueError(f"action {name}: expected a comma at offset {j}")
        _check_action(name, value)
        result.append(Action(name, value))
        i = j + 1
    return tuple(result)


def _check_action(name: str, value: str | None) -> None:
    if name in ("id", "phase", "t", "setvar", "ctl", "skipafter", "skip", "status", "msg"):
        if value is None:
            raise ValueError(f"action {name} needs a value")
    if name == "id" and (value is None or not value.isdigit() or int(value) <= 0):
        raise ValueError(f"id must be a positive integer, not {value!r}")
    if name == "phase" and value is not None:
        if not (value.isdigit() and 1 <= int(value) <= 5) and value.lower() not in PHASE_NAMES:
            raise ValueError(f"unknown phase {value!r}")
    if name == "t" and value is not None and value.lower() != "none":
        if value.lower() not in TRANSFORMS:
            raise ValueError(f"unknown transformation {value!r}")
    if name == "ctl" and value is not None:
        option = value.partition("=")[0].strip().lower()
        if option not in CTL_OPTIONS:
            raise ValueError(f"unknown ctl option {value.partition('=')[0]!r}")
        if "=" not in value:
            raise ValueError(f"ctl:{option} needs =value")
    if name in ("skip", "status") and value is not None and not value.isdigit():
        raise ValueError(f"{name} must be a number, not {value!r}")


def parse_id_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """`942100`, `942100-942199`, or several separated by blanks or commas."""
    result: list[tuple[int, int]] = []
    for part in text.replace(",", " ").split():
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"bad rule id or range {part!r}")
        result.append((int(low), int(high) if dash else int(low)))
    if not result:
        raise ValueError("no rule id")
    return tuple(result)


# ---- directives ---------------------------------------------------------------------------


def _directive(where: Where, line: str) -> Directive:
    args = words(line)
    name, rest = args[0], args[1:]
    key = name.lower()
    if key == "secrule":
        if len(rest) not in (2, 3):
            raise ValueError("SecRule takes variables, an operator and actions")
        negated, operator, argument = parse_operator(rest[1])
        actions = parse_actions(rest[2]) if len(rest) == 3 else ()
        return Rule(where, parse_variables(rest[0]), operator, argument, negated, actions)
    if key == "secaction":
        if len(rest) != 1:
            raise ValueError("SecAction takes one action list")
        return Rule(where, (), "unconditionalMatch", "", False, parse_actions(rest[0]))
    if key == "secmarker":
        if len(rest) != 1 or not rest[0]:
            raise ValueError("SecMarker takes one name")
        return Marker(where, rest[0])
    if key == "secruleupdatetargetbyid":
        if len(rest) not in (2, 3):
            raise ValueError("SecRuleUpdateTargetById takes a rule id and variables")
        return UpdateTarget(where, parse_id_ranges(rest[0]), parse_variables(rest[1]))
    if key == "secruleremovebyid":
        return Remove(where, rule_ids=parse_id_ranges(" ".join(rest)))
    if key == "secruleremovebytag":
        if len(rest) != 1:
            raise ValueError("SecRuleRemoveByTag takes one tag")
        return Remove(where, tag=rest[0])
    canonical = _SETTINGS.get(key)
    if canonical is None:
        raise ValueError(f"unknown directive {name!r}")
    if canonical == "SecRuleEngine" and (len(rest) != 1 or rest[0].lower() not in ENGINE_MODES):
        raise ValueError("SecRuleEngine takes On, Off or DetectionOnly")
    if canonical == "SecDefaultAction":
        if len(rest) != 1:
            raise ValueError("SecDefaultAction takes one action list")
        parse_actions(rest[0])
    return Setting(where, canonical, tuple(rest))


ENGINE_MODES = ("on", "off", "detectiononly")


def parse(text: str, file: str = "<string>") -> list[Directive]:
    """The directives of one file, chains folded into their head rule."""
    result: list[Directive] = []
    open_chain: Rule | None = None  # the rule whose `chain` the next SecRule continues
    head: Rule | None = None
    for number, line in logical_lines(text):
        where = Where(file, number)
        try:
            directive = _directive(where, line)
        except SeclangError:
            raise
        except ValueError as error:
            raise SeclangError(where, str(error)) from None
        if open_chain is not None:
            if not isinstance(directive, Rule) or not directive.variables:
                raise SeclangError(where, "a chain must go on with a SecRule")
            assert head is not None
            head.chained.append(directive)
        else:
            result.append(directive)
            if isinstance(directive, Rule):
                head = directive
                if directive.first("id") is None:
                    raise SeclangError(where, "a rule needs an id")
        open_chain = directive if isinstance(directive, Rule) and directive.has("chain") else None
    if open_chain is not None:
        raise SeclangError(open_chain.where, "chain with no rule after it")
    return result


def parse_file(path: Path) -> list[Directive]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    return parse(text, str(path))


def rule_files(rules_dir: Path) -> list[Path]:
    """A CRS `rules/` folder's files in the order CRS includes them (`*.conf`, sorted:
    REQUEST-9xx before RESPONSE-9xx); `.conf.example` files are templates, not rules."""
    return sorted(p for p in rules_dir.glob("*.conf") if p.is_file())
