"""Shell-word expansion with BuildKit semantics (variables, quotes, escapes, word splitting).

Supported: ``$V``, ``${V}``, ``${V:-x}``, ``${V-x}``, ``${V:+x}``, ``${V+x}``, ``${V:?msg}``,
``${V?msg}``, ``${V#p}``/``${V##p}``/``${V%p}``/``${V%%p}`` (prefix/suffix trimming with ``*``
and ``?`` wildcards), ``${V/p/r}``/``${V//p/r}``, single and double quotes and the escape
character.
Unset variables expand to the empty string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from builder.errors import ExpansionError

__all__ = ["Lex", "ProcessWord", "ProcessWords", "process_word", "process_words"]


@dataclass
class _Words:
    """Accumulates characters into words; unquoted whitespace separates words."""

    words: list[str] = field(default_factory=list)
    word: list[str] = field(default_factory=list)
    in_word: bool = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word:
                self.words.append("".join(self.word))
                self.word = []
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.word.append(ch)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        for ch in text:
            self.add_raw_char(ch)

    def result(self) -> list[str]:
        if self.in_word:
            return [*self.words, "".join(self.word)]
        return list(self.words)


class _Scanner:
    """One pass of expansion over a single input string."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def run(self, stop: str = "", raw_escapes: bool = False) -> tuple[str, list[str]]:
        """Expand up to ``stop`` (or the end); return the joined text and the split words.

        With ``raw_escapes`` the escape characters are kept (for substitution patterns).
        """
        out: list[str] = []
        words = _Words()
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out), words.result()
            if ch == "'":
                tmp = self._single_quote()
                out.append(tmp)
                words.add_raw_string(tmp)
            elif ch == '"':
                tmp = self._double_quote(raw_escapes)
                out.append(tmp)
                words.add_raw_string(tmp)
            elif ch == "$":
                tmp = self._dollar()
                out.append(tmp)
                words.add_string(tmp)
            else:
                self.next()
                if ch == self.escape:
                    if raw_escapes:
                        words.add_raw_char(ch)
                        out.append(ch)
                    ch = self.next()
                    if not ch:
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def _single_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if not ch:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double_quote(self, raw_escapes: bool = False) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            self.next()
            if ch == self.escape:
                if raw_escapes:
                    out.append(ch)
                if not self.peek():
                    continue
                if self.peek() in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def _name(self) -> str:
        ch = self.peek()
        if ch.isdigit():
            digits: list[str] = []
            while self.peek().isdigit():
                digits.append(self.next())
            return "".join(digits)
        if ch and ch in _SPECIAL_PARAMS:
            return self.next()
        name: list[str] = []
        while (c := self.peek()) and (c.isalnum() or c == "_"):
            name.append(self.next())
        return "".join(name)

    def _until(self, stop: str, raw_escapes: bool, missing: str) -> str:
        try:
            word, _ = self.run(stop=stop, raw_escapes=raw_escapes)
        except ExpansionError:
            if not self.peek():
                raise ExpansionError(f"syntax error: missing {missing}") from None
            raise
        return word

    def _dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self._name()
            if not name:
                return "$"
            return self.env.get(name, "")
        self.next()
        ch = self.peek()
        if not ch:
            raise ExpansionError("syntax error: missing '}'")
        if ch in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self._name()
        ch = self.next()
        if not ch:
            raise ExpansionError("syntax error: missing '}'")
        if ch == "}":
            return self.env.get(name, "")
        if ch == "/":
            return self._replace(name)
        modifier = ch
        null_is_unset = ch == ":"
        if null_is_unset:
            ch = self.next()
            modifier += ch
        if ch not in ("+", "-", "?", "#", "%") or (null_is_unset and ch in "#%"):
            raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
        word = self._until("}", ch in "#%", "'}'")
        value = self.env.get(name)
        unset = value is None or (null_is_unset and value == "")
        if ch == "-":
            return word if unset else value or ""
        if ch == "+":
            return "" if unset else word
        if ch == "?":
            if value is None:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if unset:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        if ch == "#":
            return _trim_prefix(word, value or "", greedy)
        return _trim_suffix(word, value or "", greedy)

    def _replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        pattern = self._until("/", True, "'/' in ${}")
        replacement = self._until("}", True, "'}'")
        value = self.env.get(name, "")
        regex = _shell_pattern(pattern, greedy=True, anchored=False)
        return regex.sub(lambda _: replacement, value, count=0 if replace_all else 1)


_SPECIAL_PARAMS = "@*#?-$!0"
_REGEX_SPECIALS = "[]{}.+()|^$"


def _shell_pattern(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """Compile a ``${V#pattern}``-style pattern (``*`` and ``?`` wildcards) to a regex."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):
                continue
            if nxt not in ("*", "?", "\\"):
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution")
            out.append("\\" + nxt)
            i += 1
        else:
            out.append("\\" + ch if ch in _REGEX_SPECIALS else re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _reverse_pattern(pattern: str) -> str:
    """Reverse ``pattern`` keeping each ``\\x`` escape pair in order."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _shell_pattern(pattern, greedy, anchored=True).search(value)
    return value[match.end() :] if match else value


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


@dataclass(frozen=True)
class Lex:
    """A word expander using ``escape`` as the escape character (``\\`` or a backtick)."""

    escape: str = "\\"

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand ``word`` into one string (quotes removed, variables substituted)."""
        text, _ = _Scanner(word, env, self.escape).run()
        return text

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Expand ``word`` and split it on unquoted whitespace into separate words."""
        _, words = _Scanner(word, env, self.escape).run()
        return words


def process_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand ``word`` into one string; see :class:`Lex`."""
    return Lex(escape).process_word(word, env)


def process_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand ``word`` into a list of words split on unquoted whitespace; see :class:`Lex`."""
    return Lex(escape).process_words(word, env)


ProcessWord = process_word
ProcessWords = process_words


def expand_heredoc(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand ``$VAR`` / ``${VAR…}`` in a here-document body, keeping quotes as they are
    (an escaped ``$`` stays literal)."""
    scanner = _Scanner(text, env, escape)
    out: list[str] = []
    while scanner.pos < len(text):
        ch = scanner.peek()
        if ch == "$":
            out.append(scanner._dollar())
        elif ch == escape and text[scanner.pos + 1:scanner.pos + 2] in ("$", escape):
            scanner.next()
            out.append(scanner.next())
        else:
            out.append(scanner.next())
    return "".join(out)
