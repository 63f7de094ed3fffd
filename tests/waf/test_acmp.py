"""@pm as ModSecurity 2.9's acmp answers it (outwork/waf/acmp.py), against the cases seen on
ModSecurity 2.9.7 itself and against a full Aho-Corasick automaton."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from outwork.waf.acmp import ModsecAcmp
from outwork.waf.operators import build_operator
from tests.waf.crs_data import VENDORED_RULES


def test_restricted_files_as_modsecurity_answers() -> None:
    """What ModSecurity 2.9.7 answered with CRS's restricted-files.data (rule 930130): after
    `secrets.` (a prefix of `secrets.json`) its one-step fail link goes to the root, so the
    `.env` that follows is not seen."""
    operator = build_operator("pmFromFile", "restricted-files.data", VENDORED_RULES)
    missed = [b"/.a0proj/secrets.env", b"secrets.env", b"/secrets.env", b"/.a0proj/"]
    found = [b"x.env", b"a.env", b"ts.env", b"/.a.env", b".a.env", b"a..env", b"..env", b"/.env"]
    for value in missed:
        assert operator.match(value, lambda text: b"") is None, value
    for value in found:
        answer = operator.match(value, lambda text: b"")
        assert answer is not None and answer.matched == b".env", value


def test_reports_the_phrase_as_written_case_insensitively() -> None:
    operator = build_operator("pm", "Document.Cookie alert(", Path("."))
    answer = operator.match(b"x=DOCUMENT.cookie", lambda text: b"")
    assert answer is not None and answer.matched == b"Document.Cookie"


def over(alphabet: bytes, min_size: int, max_size: int) -> st.SearchStrategy[bytes]:
    letters = st.sampled_from([bytes([b]) for b in alphabet])
    return st.lists(letters, min_size=min_size, max_size=max_size).map(b"".join)


PHRASES = st.lists(over(b"abAB.", 1, 5), min_size=1, max_size=6)


@given(phrases=PHRASES, value=over(b"abAB.x", 0, 30))
def test_every_answer_is_a_real_occurrence(phrases: list[bytes], value: bytes) -> None:
    found = ModsecAcmp(phrases).first_match(value)
    if found is not None:
        assert found.lower() in value.lower()


@given(phrase=over(b"abc", 1, 3), value=over(b"abcx", 0, 30))
def test_one_phrase_is_found_wherever_it_is(phrase: bytes, value: bytes) -> None:
    """With one phrase the fail links are the textbook ones but for self-overlap; a phrase
    with no repeated letter is found exactly when the value holds it."""
    if len(set(phrase)) == len(phrase):
        assert (ModsecAcmp([phrase]).first_match(value) is not None) == (phrase in value)
