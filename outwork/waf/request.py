"""What the WAF sees of a request: the head as sent, and the body parsed as ModSecurity's body
processors parse it (URLENCODED, MULTIPART, JSON, XML) into ARGS_POST, FILES and XML text.

Names and values stay bytes (a rule matches bytes); keys compare case-insensitively, as
ModSecurity's tables do. Parsing is lenient where ModSecurity's is (a malformed body sets
REQBODY_ERROR, it does not raise): the rules decide what a malformed body means.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes
from xml.parsers import expat

from outwork.http.ascii import HASH, PERCENT, PLUS

Pairs = list[tuple[bytes, bytes]]

MAX_JSON_DEPTH = 64  # deeper documents are a REQBODY_ERROR, not a recursion
MAX_MULTIPART_PARTS = 1024
# Arguments read from a body, as ModSecurity's SecArgumentsLimit (1000): each one costs every
# rule that reads ARGS, so a body of 30,000 tiny fields would cost seconds of CPU. A body with
# more is not inspected further: `Body.too_many_args`, and the `waf` step refuses it.
MAX_BODY_ARGS = 1000


def url_decode(value: bytes) -> bytes:
    """`application/x-www-form-urlencoded` decoding as ModSecurity does it: `+` is a space,
    an invalid `%` escape is kept as is."""
    if PLUS in value:
        value = value.replace(b"+", b" ")
    return unquote_to_bytes(value) if PERCENT in value else value


def parse_urlencoded(data: bytes) -> Pairs:
    pairs: Pairs = []
    for part in data.split(b"&"):
        if not part:
            continue
        name, eq, value = part.partition(b"=")
        pairs.append((url_decode(name), url_decode(value) if eq else b""))
    return pairs


def parse_cookies(header_values: list[bytes]) -> Pairs:
    pairs: Pairs = []
    for header in header_values:
        for part in header.split(b";"):
            name, eq, value = part.strip().partition(b"=")
            if name or eq:
                pairs.append((name.strip(), value.strip()))
    return pairs


@dataclass(slots=True)
class Body:
    """The body as its processor read it."""

    processor: str = ""  # "URLENCODED", "MULTIPART", "JSON", "XML" or "" (none ran)
    args: Pairs = field(default_factory=list)
    files: Pairs = field(default_factory=list)  # (field name, file name)
    file_sizes: list[int] = field(default_factory=list)
    part_headers: Pairs = field(default_factory=list)  # (part name, header line)
    xml_text: list[bytes] = field(default_factory=list)
    xml_attributes: list[bytes] = field(default_factory=list)
    error: bytes = b""  # REQBODY_ERROR_MSG; empty: no error
    too_many_args: bool = False  # more than MAX_BODY_ARGS: the rest was not read


def processor_for(content_type: bytes) -> str:
    """The processor ModSecurity's recommended setup picks for a Content-Type."""
    mime = content_type.split(b";", 1)[0].strip().lower()
    if mime == b"application/x-www-form-urlencoded":
        return "URLENCODED"
    if mime == b"multipart/form-data":
        return "MULTIPART"
    if mime == b"application/json" or mime.endswith(b"+json"):
        return "JSON"
    if mime in (b"text/xml", b"application/xml") or mime.endswith(b"+xml"):
        return "XML"
    return ""


def parse_body(processor: str, content_type: bytes, data: bytes) -> Body:
    body = Body(processor)
    if not data or not processor:
        return body
    try:
        if processor == "URLENCODED":
            body.args = parse_urlencoded(data)
        elif processor == "JSON":
            _json(body, data)
        elif processor == "MULTIPART":
            _multipart(body, content_type, data)
        elif processor == "XML":
            _xml(body, data)
    except (ValueError, RecursionError, expat.ExpatError) as error:
        body.error = str(error).encode("utf-8", "replace")[:200] or b"error"
    except _TooManyArgs:
        body.too_many_args = True
        body.error = f"more than {MAX_BODY_ARGS} arguments".encode()
    if len(body.args) > MAX_BODY_ARGS:
        del body.args[MAX_BODY_ARGS:]
        body.too_many_args = True
        body.error = f"more than {MAX_BODY_ARGS} arguments".encode()
    return body


class _TooManyArgs(Exception):
    """Raised by a body reader past MAX_BODY_ARGS (so a huge body is not read to its end)."""


def _no_constant(name: str) -> object:
    raise ValueError(f"JSON: {name} is not JSON")  # Python's NaN/Infinity: yajl refuses them


def _json(body: Body, data: bytes) -> None:
    """ARGS from a JSON body named as ModSecurity 2.9's yajl callbacks name them (msc_json.c):
    a top-level key is its own name (no `json.` prefix), a nested key is `parent.key`, and an
    array's elements all take the array's key once more (`{"a": [1]}` gives `a.a`; a
    top-level array is `array`, its elements `array.array`). The prefix is popped at the
    last `.`, so a key holding a dot names what follows it as ModSecurity does."""
    # A number is its text as written (ModSecurity hands yajl's number text over as is): `str`
    # of the text json hands over is that text. An object is the tuple of its members in
    # order, duplicates kept (yajl reports each); arrays stay lists. Both hooks are C calls:
    # instances of Python subclasses of str and list made the parse of a 64 KiB body take
    # twice as long.
    document = json.loads(
        data,
        object_pairs_hook=tuple,
        parse_float=str,
        parse_int=str,
        parse_constant=_no_constant,
    )
    _JsonArgs(body).walk(document, 0)


class _JsonArgs:
    """The walk of `_json`: ARGS named as yajl's callbacks name them. A class rather than
    closures: a closure that calls itself holds its own cell, a reference cycle that kept every
    parsed document for the garbage collector."""

    __slots__ = ("body", "prefix", "key")

    def __init__(self, body: Body) -> None:
        self.body = body
        self.prefix: bytes | None = None
        self.key: bytes | None = None

    def add(self, value: bytes) -> None:
        if self.key is None:
            self.key = b""
        key = self.key
        name = self.prefix + b"." + key if self.prefix is not None else key
        args = self.body.args
        if len(args) >= MAX_BODY_ARGS:
            raise _TooManyArgs
        args.append((name, value))

    def pop(self) -> bytes | None:
        assert self.prefix is not None
        head, dot, tail = self.prefix.rpartition(b".")
        self.prefix = head if dot else None
        return tail

    def walk(self, node: object, depth: int) -> None:
        if depth > MAX_JSON_DEPTH:
            raise ValueError("JSON nested too deep")
        if isinstance(node, tuple):  # an object's members
            key = self.key
            if key is not None:  # a top-level object opens no prefix
                self.prefix = self.prefix + b"." + (key or b"") if self.prefix is not None else key
            for member, value in node:
                self.key = member.encode("utf-8", "surrogatepass")
                if type(value) is str:  # a string or a number (most members): a leaf at once
                    self.add(value.encode("utf-8", "surrogatepass"))
                else:
                    self.walk(value, depth + 1)
            if self.prefix is not None:  # yajl_end_map: back to the parent, the key it had
                self.key = self.pop()
        elif isinstance(node, list):
            if self.key is None and self.prefix is None:
                self.prefix = self.key = b"array"
            else:
                key = self.key or b"(null)"
                self.prefix = self.prefix + b"." + key if self.prefix is not None else self.key
            for value in node:
                if type(value) is str:
                    self.add(value.encode("utf-8", "surrogatepass"))
                else:
                    self.walk(value, depth + 1)
            if self.prefix is not None:  # yajl_end_array: the key stays what it was
                self.pop()
        elif node is None:
            self.add(b"")
        elif node is True or node is False:
            self.add(b"true" if node else b"false")
        else:
            assert isinstance(node, str)
            self.add(node.encode("utf-8", "surrogatepass"))


_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))', re.I)
_DISPOSITION_PARAM = re.compile(rb'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]+))')


def _multipart(body: Body, content_type: bytes, data: bytes) -> None:
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise ValueError("multipart without a boundary")
    boundary = b"--" + (found.group(1) or found.group(2))
    sections = data.split(boundary)
    if len(sections) < 3:
        raise ValueError("multipart without parts")
    for section in sections[1 : MAX_MULTIPART_PARTS + 1]:
        if section.startswith(b"--"):
            break
        section = section.removeprefix(b"\r\n").removeprefix(b"\n")
        head, sep, content = section.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = section.partition(b"\n\n")
        content = content.removesuffix(b"\r\n").removesuffix(b"\n")
        name = b""
        filename: bytes | None = None
        lines = [line for line in re.split(rb"\r?\n", head) if line]
        for line in lines:
            if line.lower().startswith(b"content-disposition:"):
                for match in _DISPOSITION_PARAM.finditer(line.partition(b":")[2]):
                    value = match.group(2) if match.group(2) is not None else match.group(3)
                    if match.group(1).lower() == b"name":
                        name = value
                    elif match.group(1).lower() == b"filename":
                        filename = value
        for line in lines:
            body.part_headers.append((name, line))
        if filename is not None:
            body.files.append((name, filename))
            body.file_sizes.append(len(content))
        else:
            if len(body.args) >= MAX_BODY_ARGS:
                raise _TooManyArgs
            body.args.append((name, content))


def _xml(body: Body, data: bytes) -> None:
    parser = expat.ParserCreate()

    def no_doctype(*_: object) -> None:
        raise ValueError("XML with a DTD")  # entities are an expansion bomb waiting

    def start(_: str, attributes: dict[str, str]) -> None:
        body.xml_attributes.extend(v.encode("utf-8") for v in attributes.values())

    def text(value: str) -> None:
        body.xml_text.append(value.encode("utf-8"))

    parser.StartDoctypeDeclHandler = no_doctype
    parser.EntityDeclHandler = no_doctype
    parser.StartElementHandler = start
    parser.CharacterDataHandler = text
    parser.Parse(data, True)


@dataclass(slots=True)
class WafRequest:
    """One request as the rules read it."""

    method: bytes
    target: bytes  # the request target as sent (origin form, or absolute form)
    protocol: bytes  # b"HTTP/1.1"
    headers: Pairs  # names as sent
    client_ip: str = ""
    client_port: int = 0
    body: bytes = b""
    body_complete: bool = True  # False: only the first `body_limit` bytes are in `body`

    @property
    def path_and_query(self) -> bytes:
        target = self.target
        if not target.startswith(b"/") and b"://" in target.split(b"?", 1)[0]:  # absolute form
            rest = target.split(b"://", 1)[1]
            slash = rest.find(b"/")
            target = rest[slash:] if slash >= 0 else b"/"
        if HASH in target:  # as Apache parses it for ModSecurity: REQUEST_URI_RAW keeps it
            target = target[: target.index(b"#")]
        return target

    def header_values(self, name: bytes) -> list[bytes]:
        lower = name.lower()
        return [v for n, v in self.headers if n.lower() == lower]
