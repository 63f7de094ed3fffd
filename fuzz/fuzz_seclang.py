"""Fuzz target: bytes as a SecLang rule file into the WAF's parser (outwork/waf/seclang.py).

    .venv/bin/python fuzz/fuzz_seclang.py /tmp/fuzz-seclang fuzz/corpus/seclang

The input is read as Latin-1 text (every byte a character). A crash is any exception other
than `SeclangError` (which names a file and line), or a parsed rule whose parts do not survive
being written back and parsed again (variables and actions).

`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

from outwork.waf import seclang
from outwork.waf.rules import Rule


def TestOneInput(data: bytes) -> None:
    try:
        directives = seclang.parse(data.decode("latin-1"), "fuzz.conf")
    except seclang.SeclangError as error:
        assert str(error).startswith("fuzz.conf:"), error
        return
    for directive in directives:
        if isinstance(directive, Rule):
            for rule in (directive, *directive.chained):
                if rule.variables:
                    text = "|".join(str(v) for v in rule.variables)
                    try:
                        again = seclang.parse_variables(text)
                    except ValueError:
                        continue  # a selector that only parses quoted: not written back
                    assert [v.name for v in again] == [v.name for v in rule.variables]


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
