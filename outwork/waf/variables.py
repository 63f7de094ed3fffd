"""The variables a rule reads, for one transaction: collections as (key, value) pairs, each
computed once per transaction (or per phase, for what the body or the rules change).

A scalar variable is one pair with an empty key. Keys are matched case-insensitively, as
ModSecurity's tables do; `MATCHED_VAR_NAME` shows `COLLECTION:key`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final
from urllib.parse import unquote_to_bytes

from outwork.waf.request import Body, Pairs, WafRequest, parse_body, parse_cookies, processor_for
from outwork.waf.request import parse_urlencoded as parse_query
from outwork.waf.response import WafResponse
from outwork.waf.rules import Variable

# Collections whose content changes while rules run: never cached.
LIVE: Final = frozenset(
    {
        "TX",
        "MATCHED_VARS",
        "MATCHED_VARS_NAMES",
        "MATCHED_VAR",
        "MATCHED_VAR_NAME",
    }
)
# What a `ctl` changes (the body processor, a forced REQUEST_BODY): cached, and forgotten by
# `Variables.processor_changed` when the ctl runs.
SET_BY_CTL: Final = ("REQBODY_PROCESSOR", "REQUEST_BODY")
# What the body gives: cached only once the body is in (phase 2).
FROM_BODY: Final = frozenset(
    """ARGS ARGS_NAMES ARGS_POST ARGS_POST_NAMES ARGS_COMBINED_SIZE REQUEST_BODY
    REQUEST_BODY_LENGTH FILES FILES_NAMES FILES_SIZES FILES_COMBINED_SIZE XML
    MULTIPART_PART_HEADERS REQBODY_PROCESSOR REQBODY_ERROR REQBODY_ERROR_MSG
    MULTIPART_FILENAME MULTIPART_NAME REQUEST_FILENAME REQUEST_BASENAME""".split()
)
# What the response gives: cached only once it is there (phase 3; the body at phase 4).
FROM_RESPONSE: Final = frozenset(
    """RESPONSE_STATUS RESPONSE_PROTOCOL RESPONSE_HEADERS RESPONSE_HEADERS_NAMES
    RESPONSE_CONTENT_TYPE RESPONSE_CONTENT_LENGTH RESPONSE_BODY STATUS_LINE""".split()
)


@lru_cache(maxsize=4096)
def key_regex(pattern: str) -> re.Pattern[bytes]:
    return re.compile(pattern.encode("utf-8", "surrogateescape"), re.I)


class Variables:
    """Computes collections for one transaction; `tx` and the matched state are the engine's."""

    __slots__ = (
        "request",
        "response",
        "tx",
        "collections",
        "matched",
        "matched_var",
        "body",
        "processor",
        "force_body_variable",
        "unique_id",
        "_cache",
        "_selected",
        "_named",
        "_query",
        "_headers",
    )

    def __init__(self, request: WafRequest, unique_id: str) -> None:
        self.request = request
        self.response: WafResponse | None = None  # set at phase 3
        self.tx: dict[str, bytes] = {}  # lower-cased keys
        self.collections: dict[str, dict[str, bytes]] = {"TX": self.tx}
        self.matched: Pairs = []  # MATCHED_VARS: ("ARGS:foo", value)
        self.matched_var: tuple[bytes, bytes] = (b"", b"")
        self.body: Body | None = None  # parsed at phase 2
        content_type = (request.header_values(b"content-type") or [b""])[0]
        self.processor = processor_for(content_type)
        self.force_body_variable = False
        self.unique_id = unique_id
        self._cache: dict[str, Pairs] = {}
        self._selected: dict[int, Pairs] = {}
        self._named: dict[int, Pairs] = {}  # by id(variable): rules hold their variables
        self._query: Pairs | None = None
        self._headers: Pairs = [(n, v) for n, v in request.headers]

    # ---- the body, at phase 2 ------------------------------------------------------------

    def read_body(self) -> None:
        content_type = (self.request.header_values(b"content-type") or [b""])[0]
        self.body = parse_body(self.processor, content_type, self.request.body)
        for name in FROM_BODY:
            self._cache.pop(name, None)
        self._selected.clear()
        self._named.clear()

    def processor_changed(self) -> None:
        """A `ctl` set the body processor or forced REQUEST_BODY: what they show is read
        again."""
        for name in SET_BY_CTL:
            self._cache.pop(name, None)
        self._selected.clear()
        self._named.clear()

    # ---- the response, at phases 3 and 4 -----------------------------------------------

    def read_response(self, response: WafResponse) -> None:
        """The response (its head at phase 3, its body set on it before phase 4)."""
        self.response = response
        for name in FROM_RESPONSE:
            self._cache.pop(name, None)
        self._selected.clear()
        self._named.clear()

    # ---- selection -----------------------------------------------------------------------

    def select(self, variable: Variable) -> Pairs:
        """The pairs a variable selects; cached but for the live ones (TX, MATCHED_*)."""
        if variable.name in LIVE:
            key = variable.key
            if variable.name == "TX" and key is not None and not variable.key_is_regex:
                value = self.tx.get(key.lower())  # the common case: one TX value by name
                return [] if value is None else [(key.lower().encode(), value)]
            return self._select(variable)
        selected = self._selected.get(id(variable))
        if selected is None:
            selected = self._selected[id(variable)] = self._select(variable)
        return selected

    def select_uncached(self, variable: Variable) -> Pairs:
        """`select` for a variable that lives shorter than the transaction (a macro's):
        `select` caches by `id(variable)`, which a later temporary may take over."""
        if variable.name in LIVE:
            return self.select(variable)
        return self._select(variable)

    def named(self, variable: Variable) -> Pairs:
        """`select`, each pair named as MATCHED_VAR_NAME shows it (`ARGS:foo`, `REQUEST_URI`)."""
        if variable.name in LIVE:
            return self._name(variable, self.select(variable))
        named = self._named.get(id(variable))
        if named is None:
            named = self._named[id(variable)] = self._name(variable, self.select(variable))
        return named

    @staticmethod
    def _name(variable: Variable, pairs: Pairs) -> Pairs:
        name = variable.name.encode()
        prefix = name + b":"
        return [(prefix + k if k else name, v) for k, v in pairs]

    def _select(self, variable: Variable) -> Pairs:
        pairs = self.collection(variable.name)
        key = variable.key
        if key is None:
            return pairs
        if variable.name == "XML":
            return pairs if key in ("/*", "//*") else self._xml_attributes(key)
        if variable.key_is_regex:
            regex = key_regex(key)
            return [p for p in pairs if regex.search(p[0])]
        wanted = key.lower().encode("utf-8", "surrogateescape")
        return [p for p in pairs if p[0].lower() == wanted]

    def _xml_attributes(self, key: str) -> Pairs:
        if key == "//@*" and self.body is not None:
            return [(b"", v) for v in self.body.xml_attributes]
        return []

    def collection(self, name: str) -> Pairs:
        if name in LIVE:
            return self._live(name)
        cached = self._cache.get(name)
        if cached is None:
            cached = self._compute(name)
            if (name not in FROM_BODY or self.body is not None) and (
                name not in FROM_RESPONSE or self.response is not None
            ):
                self._cache[name] = cached
        return cached

    def _live(self, name: str) -> Pairs:
        if name == "TX":
            return [(k.encode(), v) for k, v in self.tx.items()]
        if name == "MATCHED_VARS":
            return list(self.matched)
        if name == "MATCHED_VARS_NAMES":
            return [(n, n) for n, _ in self.matched]
        if name == "MATCHED_VAR":
            return [(b"", self.matched_var[1])]
        if name == "MATCHED_VAR_NAME":
            return [(b"", self.matched_var[0])]
        scalar = self._scalar(name)
        return [] if scalar is None else [(b"", scalar)]

    def query_args(self) -> Pairs:
        if self._query is None:
            self._query = parse_query(self.query_string())
        return self._query

    def query_string(self) -> bytes:
        return self.request.path_and_query.partition(b"?")[2]

    def post_args(self) -> Pairs:
        return self.body.args if self.body is not None else []

    def _compute(self, name: str) -> Pairs:
        request = self.request
        body = self.body
        scalar = self._scalar(name)
        if scalar is not None:
            return [(b"", scalar)]
        if name == "ARGS":
            return self.query_args() + self.post_args()
        if name == "ARGS_NAMES":
            return [(k, k) for k, _ in self.query_args() + self.post_args()]
        if name == "ARGS_GET":
            return self.query_args()
        if name == "ARGS_GET_NAMES":
            return [(k, k) for k, _ in self.query_args()]
        if name == "ARGS_POST":
            return self.post_args()
        if name == "ARGS_POST_NAMES":
            return [(k, k) for k, _ in self.post_args()]
        if name == "REQUEST_HEADERS":
            return self._headers
        if name == "REQUEST_HEADERS_NAMES":
            return [(n, n) for n, _ in self._headers]
        if name == "REQUEST_COOKIES":
            return parse_cookies(request.header_values(b"cookie"))
        if name == "REQUEST_COOKIES_NAMES":
            return [(n, n) for n, _ in parse_cookies(request.header_values(b"cookie"))]
        if name == "RESPONSE_HEADERS":
            return list(self.response.headers) if self.response is not None else []
        if name == "RESPONSE_HEADERS_NAMES":
            return [(n, n) for n, _ in self.response.headers] if self.response is not None else []
        if body is None:
            return []
        if name == "FILES":
            return list(body.files)
        if name == "FILES_NAMES":
            return [(n, n) for n, _ in body.files]
        if name == "FILES_SIZES":
            return [
                (n, str(s).encode()) for (n, _), s in zip(body.files, body.file_sizes, strict=True)
            ]
        if name == "MULTIPART_PART_HEADERS":
            return list(body.part_headers)
        if name == "XML":
            return [(b"", t) for t in body.xml_text]
        # IP, GLOBAL, SESSION, ENV: empty.
        return [(k.encode(), v) for k, v in self.collections.get(name, {}).items()]

    def _scalar(self, name: str) -> bytes | None:
        request = self.request
        body = self.body
        if name == "REQUEST_METHOD":
            return request.method
        if name == "REQUEST_URI":
            return request.path_and_query
        if name == "REQUEST_URI_RAW":
            return request.target
        if name in ("REQUEST_FILENAME", "REQUEST_BASENAME"):
            # ModSecurity 2.9 reads Apache's parsed path: as sent in phase 1, percent-decoded
            # once Apache has resolved it (phase 2). CRS's 920200/920201 rely on the raw one.
            path = request.path_and_query.partition(b"?")[0]
            if body is not None:
                path = unquote_to_bytes(path)
            return path if name == "REQUEST_FILENAME" else path.rsplit(b"/", 1)[-1]
        if name == "REQUEST_LINE":
            return b" ".join((request.method, request.target, request.protocol))
        if name == "REQUEST_PROTOCOL":
            return request.protocol
        if name == "QUERY_STRING":
            return self.query_string()
        if name == "REMOTE_ADDR":
            return request.client_ip.encode()
        if name == "REMOTE_PORT":
            return str(request.client_port).encode()
        if name == "UNIQUE_ID":
            return self.unique_id.encode()
        if name == "SERVER_NAME":
            return (request.header_values(b"host") or [b""])[0].rsplit(b":", 1)[0]
        if name == "REQBODY_PROCESSOR":
            return self.processor.encode()
        if name in ("MULTIPART_STRICT_ERROR", "MULTIPART_UNMATCHED_BOUNDARY"):
            return b"0"
        if name == "REQUEST_BODY_LENGTH":
            return str(len(request.body)).encode() if body is not None else b"0"
        if name == "REQUEST_BODY":
            if body is None:
                return None
            if self.processor == "URLENCODED" or self.force_body_variable:
                return request.body
            return None
        if name == "REQBODY_ERROR":
            return b"1" if body is not None and body.error else b"0"
        if name == "REQBODY_ERROR_MSG":
            return body.error if body is not None else b""
        if name == "ARGS_COMBINED_SIZE":
            pairs = self.query_args() + self.post_args()
            return str(sum(len(k) + len(v) for k, v in pairs)).encode()
        if name == "FILES_COMBINED_SIZE":
            return str(sum(body.file_sizes) if body is not None else 0).encode()
        if name in FROM_RESPONSE:
            return self._response_scalar(name)
        return None

    def _response_scalar(self, name: str) -> bytes | None:
        response = self.response
        if response is None:
            return None  # the request phases: no such variable yet
        if name == "RESPONSE_STATUS":
            return b"%d" % response.status
        if name == "RESPONSE_PROTOCOL":
            return response.protocol
        if name == "STATUS_LINE":
            return b"%s %d" % (response.protocol, response.status)
        if name == "RESPONSE_CONTENT_TYPE":
            return response.content_type
        if name == "RESPONSE_CONTENT_LENGTH":
            length = response.content_length
            return b"%d" % length if length >= 0 else None
        if name == "RESPONSE_BODY":
            return response.body
        return None
