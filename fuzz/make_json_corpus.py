"""Write the seed inputs of fuzz_json_limits.py into fuzz/corpus/json_limits/ (`seed-*`).

.venv/bin/python fuzz/make_json_corpus.py
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus" / "json_limits"

DOCS = {
    "object": {"id": 7, "name": "caf\u00e9", "tags": ["a", "b"], "ok": True, "none": None},
    "nested": [{"a": [1, 2, {"b": [3.5e-7, -0.0]}]}, {"c": {"d": {"e": "\U0001f600"}}}],
    "scalars": ["x", 1, -2.5, 1e300, True, False, None, "", [], {}],
}
RAW = {
    "escapes": b'"\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00 \\udc00"',
    "bad-escape": b'"\\x"',
    "control": b'"a\x01b"',
    "bom": b"\xef\xbb\xbf{}",
    "bad-utf8": b'"\xc3\x28"',
    "trailing": b'{"a": 1} x',
    "trailing-comma": b"[1, 2,]",
    "deep": b"[" * 40 + b"]" * 40,
    "long-number": b"1" * 120,
    "leading-zero": b"[01]",
    "nan": b"[NaN]",
    "cut-literal": b"[tru",
    "many-keys": b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(12)) + b"}",
    "long-array": b"[" + b",".join(b"%d" % i for i in range(12)) + b"]",
    # For the whole-body check (json_whole.py): what its counts and skeleton must not misread.
    "separators-in-strings": b'[{"k:,": "[,]{", "q\\"": ["\\\\", "\\\\\\"[", ",:"]}, 2]',
    "lone-surrogate": b'["\\ud800", "\\udc00\\ud800"]',
    "huge-exponent": b"[1e400, -1e400]",
    "duplicate-keys": b"{" + b",".join(b'"a":%d' % i for i in range(6)) + b"}",
    "many-containers": b"[" + b",".join(b'{"a":[%d]}' % i for i in range(30)) + b"]",
}


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, value in DOCS.items():
        for style, doc in (
            ("compact", json.dumps(value, separators=(",", ":"))),
            ("pretty", json.dumps(value, indent=2, ensure_ascii=False)),
        ):
            for mode in (0, 1, 2 | (32 << 2)):
                path = CORPUS / f"seed-{name}-{style}-{mode}"
                path.write_bytes(bytes([mode]) + doc.encode())
    for name, raw in RAW.items():
        for mode in (0, 2 | (16 << 2)):
            (CORPUS / f"seed-{name}-{mode}").write_bytes(bytes([mode]) + raw)


if __name__ == "__main__":
    main()
