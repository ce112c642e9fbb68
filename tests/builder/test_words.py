"""Shell-word expansion follows BuildKit's lexer."""

from __future__ import annotations

import pytest

from builder.errors import BuildError, ExpansionError
from builder.frontend.words import Lex, ProcessWord, ProcessWords, process_word, process_words

pytestmark = pytest.mark.unit

ENV = {"A": "a", "SP": "x  y", "EMPTY": "", "PATH": "/bin", "FILE": "archive.tar.gz"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "a"),
        ("${A}", "a"),
        ("pre${A}post", "preapost"),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${UNSET-dflt}", "dflt"),
        ("${A:-dflt}", "a"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-${A}x}", "ax"),
        ("'$A'", "$A"),
        ('"$A"', "a"),
        ('"\\$A"', "$A"),
        ('"a\\nb"', "a\\nb"),
        ('"q\\"q"', 'q"q'),
        ("\\$A", "$A"),
        ("a\\ b", "a b"),
        ("$", "$"),
        ("$/x", "$/x"),
        ("${PATH}:/usr/bin", "/bin:/usr/bin"),
        ("$1", ""),
        ("trailing\\", "trailing"),
        ("$10x", "x"),
        ("$$-$@", "-"),
        ("${FILE#*.}", "tar.gz"),
        ("${FILE##*.}", "gz"),
        ("${FILE%.*}", "archive.tar"),
        ("${FILE%%.*}", "archive"),
        ("${FILE#nomatch}", "archive.tar.gz"),
        ("${FILE#\\*}", "archive.tar.gz"),
        ("${FILE/a/A}", "Archive.tar.gz"),
        ("${FILE//a/A}", "Archive.tAr.gz"),
        ("${FILE/.*/}", "archive"),
        ("${UNSET/a/b}", ""),
    ],
)
def test_process_word(word: str, expected: str) -> None:
    assert process_word(word, ENV) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("a b  c", ["a", "b", "c"]),
        ('"a b" c', ["a b", "c"]),
        ("'a b'c d", ["a bc", "d"]),
        ("$SP z", ["x", "y", "z"]),
        ('"$SP" z', ["x  y", "z"]),
        ("a\\ b c", ["a b", "c"]),
        ("", []),
        ("$EMPTY", []),
    ],
)
def test_process_words(word: str, expected: list[str]) -> None:
    assert process_words(word, ENV) == expected


def test_backtick_escape() -> None:
    lex = Lex("`")
    assert lex.process_word("C:\\dir `$A", ENV) == "C:\\dir $A"
    assert lex.process_words("a` b c", ENV) == ["a b", "c"]
    assert lex.process_word('"`""', ENV) == '"'


def test_aliases() -> None:
    assert ProcessWord("$A", ENV) == "a"
    assert ProcessWords("$A $A", ENV) == ["a", "a"]


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("'open", "single-quote"),
        ('"open', "double-quote"),
        ("${A", "missing '}'"),
        ("${A:-x", "missing '}'"),
        ("${}", "bad substitution"),
        ("${:-x}", "bad substitution"),
        ("${A:%x}", "unsupported modifier"),
        ("${A^x}", "unsupported modifier"),
        ("${A/x", "missing '/'"),
        ("${A#\\q}", "invalid pattern"),
        ("${UNSET:?must be set}", "UNSET: must be set"),
        ("${UNSET?}", "UNSET: is not allowed to be unset"),
        ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
    ],
)
def test_errors_name_the_problem(word: str, message: str) -> None:
    with pytest.raises(ExpansionError, match=message) as info:
        process_word(word, ENV)
    assert isinstance(info.value, BuildError)


def test_question_without_colon_allows_empty() -> None:
    assert process_word("${EMPTY?x}", ENV) == ""
