"""Regenerate the hand-made seeds of fuzz/corpus/waf/ (files named `seed-*`; files atheris
added, named by their SHA-1, are left alone).

    .venv/bin/python fuzz/make_waf_corpus.py

Seeds: encoded attack-looking values for each transformation target, a few CRS-style regexes
with a value each (matching and not), and operator arguments good and bad.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus" / "waf"

VALUES = [
    b"%u0027%20OR%201=1--+",
    b"&#x3c;script&#62;alert(1)&lt;/script&gt;&nbsp;",
    b"\\u003cimg src=x onerror=\\x61lert(1)\\076",
    b"\\3c\\73 cript\\\n\\ff1c",
    b'C:\\WINDOWS\\system32\\cmd.exe /c "dir" , ^p',
    b"/a/./b/../../../etc//passwd/",
    b"SELECT/**/1<!-- x -->--#\x00",
    "caf\u00e9 \u2603".encode() + b"\xc0\xaf",
    b"VGVzdENhc2U=\x000x414243",
]
REGEXES = [
    (rb"(?i)(?:union[\s\x0b]+select|sleep\()", b"1 UNION\x0bSELECT 2"),
    (rb"\x{e2}\x80[\x98\x99]$", b"\xe2\x80\x99"),
    (rb"^(?i)up", b"Up"),
    (rb"(a)\1", b"aa"),
    (rb"[^\]]+\]", b"x]"),
    (rb"(?|(a)|(b))", b"b"),
]
OPERATORS = [
    (0, b"9,10,13,32-126,128-255\x00ok\x07"),
    (1, b"127.0.0.1,::1,10.0.0.0/8\x0010.1.2.3"),
    (2, b"document.cookie ( )\x00x=Document.Cookie"),
    (3, b"%{tx.allowed_methods}\x00GET"),
    (0, b"300-1\x00x"),
    (2, b"secrets.json .env\x00/.a0proj/secrets.env"),  # acmp's one-step fail link
    (2, b"abcd bc\x00xabcx"),
]
# Bodies (selector: URLENCODED, JSON, MULTIPART, XML), JSON named as ModSecurity 2.9 names it.
BODIES = [
    (1, b'{ "() { :; }":"foo", "a": {"b": [1, {"c": 2}]} }'),
    (1, b'[1,"x",[2,3],{"k":"v"}]'),
    (1, b'{"a.b": {"c":1}, "d":2, "e":{"f":3.50}, "n": null, "t": true}'),
    (1, b'{"x":1} trailing'),
    (1, b"NaN"),
    (0, b"a=1&b=%41%zz&&c"),
    (2, b'--x\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n--x--\r\n'),
    (3, b"<a b='1'><c>t</c></a>"),
]


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for old in CORPUS.glob("seed-*"):
        old.unlink()
    seeds: list[bytes] = []
    for index, value in enumerate(VALUES):
        for selector in (index, index + 40, index + 90):
            seeds.append(bytes((selector % 4, selector)) + value)
    for pattern, value in REGEXES:
        seeds.append(b"\x04" + pattern + b"\x00" + value)
        seeds.append(b"\x05" + pattern + b"\x00" + value[::-1])
    for selector, data in OPERATORS:
        seeds.append(bytes((6, selector)) + data)
    for selector, data in BODIES:
        seeds.append(bytes((0xF0, selector)) + data)
    for index, seed in enumerate(seeds):
        (CORPUS / f"seed-{index:03d}").write_bytes(seed)


if __name__ == "__main__":
    main()
