"""`waf`: the OWASP Core Rule Set (or any SecLang rules) run on each request.

    policies: {api: {waf: {paranoia_level: 1, anomaly_threshold: 5, mode: block,
                           exclusions: [/etc/outwork/waf-exclusions.conf],
                           body_limit: 128KiB, on_body_limit: process_partial,
                           outbound_anomaly_threshold: 4, response_body_limit: 512KiB,
                           on_response_body_limit: process_partial,
                           response_mime_types: [text/plain, text/html, text/xml,
                                                 application/json],
                           early_blocking: false, reporting_level: 4}}}

Phase 1 runs at the request head, phase 2 once the body is in (up to `body_limit`; beyond it
`process_partial` inspects what came, `reject` answers 413). When CRS's anomaly score reaches
the threshold (rule 949110): `block` answers 403 (`waf_blocked`) and writes `waf.blocked`;
`detect` writes `waf.detected` and lets the request through. Either way the matched rules are
counted by family (`outwork_waf_matches_total`). `early_blocking` (CRS's tx.early_blocking)
judges the score at the end of phase 1 too: a request whose head reaches it is refused before
its body is read.

The response: phase 3 runs at its head; phase 4 once its body is in, for bodies of the
`response_mime_types` (ModSecurity's SecResponseBodyMimeType) that are not compressed: the
response is held (proxy/response_filters.py) up to `response_body_limit`, so that a leak
(CRS's RESPONSE-95x: SQL errors, PHP source, directory listings...) still gets a 403 instead
of the page; beyond the limit `process_partial` inspects what was held and lets the rest stream,
`reject` answers 502. Any other response gets phase 4 at its head (an empty RESPONSE_BODY: the
outbound score of phase 3 is judged there) and streams as it comes. Blocking is CRS's outbound
anomaly score reaching `outbound_anomaly_threshold` (rules 959100, 959101), and writes
`waf.response_blocked`. A response with no Content-Type is `null` in `response_mime_types`
(ModSecurity 2's name for it). Phase 5 runs once the exchange is over and reports what its rules
log (CRS 980170's anomaly scores, for the exchanges `reporting_level` names) as `waf.report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

from outwork.config.values import parse_size as parse_config_size
from outwork.filters import Filter, FilterType, register

if TYPE_CHECKING:
    from outwork.waf.engine import Setup

MAX_EXCLUSION_FILES = 64
MAX_EVENT_RULES = 32  # matched rules listed in one security event
MAX_EVENT_PATH = 256  # characters of the request path in `waf.report` (as in refusals' events)
DEFAULT_BODY_LIMIT = 128 * 1024
DEFAULT_RESPONSE_BODY_LIMIT = 512 * 1024  # ModSecurity's SecResponseBodyLimit default
# ModSecurity's recommended SecResponseBodyMimeType (text/plain text/html text/xml), and JSON:
# what APIs answer with, and where an SQL error message ends up as often as in a page.
DEFAULT_RESPONSE_MIME_TYPES = ("text/plain", "text/html", "text/xml", "application/json")
RESPONSE_PROTOCOL = b"HTTP/1.1"  # what the gateway speaks to upstreams
DEFAULT_REPORTING_LEVEL = 4  # CRS's own (REQUEST-901, rule 901111)
MAX_BODY_LIMIT = 64 * 1024 * 1024
TOKEN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
MEDIA_TYPE = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
# A response's MIME type, or `null`: a response with no Content-Type (ModSecurity 2's name for
# it in SecResponseBodyMimeType).
RESPONSE_MIME_TYPE = r"^[Nn][Uu][Ll][Ll]$|" + MEDIA_TYPE


class WafSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rules: str | None = None  # a CRS `rules/` folder; default: the vendored CRS v4.28
    paranoia_level: Annotated[int, Meta(ge=1, le=4)] = 1
    anomaly_threshold: Annotated[int, Meta(ge=1, le=100000)] = 5
    mode: Literal["block", "detect"] = "block"
    exclusions: Annotated[list[str], Meta(max_length=MAX_EXCLUSION_FILES)] = msgspec.field(
        default_factory=list
    )
    body_limit: str | int = DEFAULT_BODY_LIMIT
    on_body_limit: Literal["process_partial", "reject"] = "process_partial"
    # What crs-setup.conf's tx.allowed_methods / tx.allowed_request_content_type set; empty:
    # CRS's defaults (GET HEAD POST OPTIONS; the common form, JSON and XML types).
    allowed_methods: Annotated[list[Annotated[str, Meta(pattern=TOKEN)]], Meta(max_length=64)] = (
        msgspec.field(default_factory=list)
    )
    allowed_content_types: Annotated[
        list[Annotated[str, Meta(pattern=MEDIA_TYPE)]], Meta(max_length=256)
    ] = msgspec.field(default_factory=list)
    # The response (phases 3 and 4): CRS's tx.outbound_anomaly_score_threshold, and the bodies
    # held for inspection (of these types; an empty list: none, every response streams).
    outbound_anomaly_threshold: Annotated[int, Meta(ge=1, le=100000)] = 4
    # CRS's tx.early_blocking (crs-setup.conf's rule 900120): the scores are judged at the end
    # of phase 1 (949111) and phase 3 (959101) too, so that a request whose head alone reaches
    # the threshold is refused before its body is read, a response before its body is held.
    early_blocking: bool = False
    # CRS's tx.reporting_level (crs-setup.conf's rule 900115): which exchanges phase 5 reports
    # (`waf.report`, CRS 980170): 0 none, 1 those blocked, 2 those detection-level rules would
    # block, 3 those the blocking rules scored, 4 those any rule scored, 5 all.
    reporting_level: Annotated[int, Meta(ge=0, le=5)] = DEFAULT_REPORTING_LEVEL
    response_body_limit: str | int = DEFAULT_RESPONSE_BODY_LIMIT
    on_response_body_limit: Literal["process_partial", "reject"] = "process_partial"
    response_mime_types: Annotated[
        list[Annotated[str, Meta(pattern=RESPONSE_MIME_TYPE)]], Meta(max_length=256)
    ] = msgspec.field(default_factory=lambda: list(DEFAULT_RESPONSE_MIME_TYPES))

    def __post_init__(self) -> None:
        for key in ("body_limit", "response_body_limit"):
            limit = parse_size(getattr(self, key))
            if not 0 < limit <= MAX_BODY_LIMIT:
                raise ValueError(f"{key} must be between 1 byte and {MAX_BODY_LIMIT} bytes")
        from outwork.waf.engine import WafLoadError
        from outwork.waf.step import compiled

        try:
            compiled(*self.key())  # loads and checks every rule file now, not at first request
        except WafLoadError as error:
            raise ValueError(str(error)) from None

    def setup(self) -> Setup:
        from outwork.waf.engine import Setup

        return Setup(
            paranoia_level=self.paranoia_level,
            anomaly_threshold=self.anomaly_threshold,
            outbound_anomaly_threshold=self.outbound_anomaly_threshold,
            allowed_methods=tuple(self.allowed_methods),
            allowed_content_types=tuple(self.allowed_content_types),
            detect_only=self.mode == "detect",
            extra=self._extra_settings(),
        )

    def _extra_settings(self) -> tuple[tuple[str, str], ...]:
        """What CRS sets itself unless told otherwise (REQUEST-901): told only when the config
        differs from it."""
        extra = []
        if self.early_blocking:
            extra.append(("early_blocking", "1"))
        if self.reporting_level != DEFAULT_REPORTING_LEVEL:
            extra.append(("reporting_level", str(self.reporting_level)))
        return tuple(extra)

    def key(self) -> tuple[Path, Setup, tuple[tuple[Path, float], ...], float]:
        from outwork.waf.engine import CRS_RULES, WafLoadError

        rules = Path(self.rules) if self.rules is not None else CRS_RULES
        if not rules.is_dir():
            raise WafLoadError(f"rules: {rules} is not a folder")
        files = []
        for name in self.exclusions:
            path = Path(name)
            if not path.is_file():
                raise WafLoadError(f"exclusions: {path} is not a file")
            files.append((path, path.stat().st_mtime))
        return rules, self.setup(), tuple(files), _mtime(rules)


def _mtime(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.glob("*.conf")), default=0.0)


def parse_size(value: str | int) -> int:
    return parse_config_size(value)


def build(spec: WafSpec) -> Filter:
    # The engine (its matchers, CRS's compiled rules: megabytes per worker) is imported only
    # by a config that has a `waf` step.
    from outwork.waf.step import build_filter

    return build_filter(spec)


WAF = register(FilterType("waf", WafSpec, build))
