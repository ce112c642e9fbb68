"""``--chmod`` values: octal (``755``, ``0644``, ``4755``) or symbolic (``u+x``, ``go-w``,
``a=r,u+w``, ``+x``, ``u=rwX,go=rX``, ``g=u``).

An octal value replaces all twelve mode bits, as current BuildKit does. A symbolic value
follows ``chmod(1)``: clauses are separated by ``,``; each is ``[ugoa]*`` followed by one or
more ``[+-=][rwxXst]*`` or ``[+-=][ugo]`` actions; without ``ugoa`` all classes are
affected (a umask of 0, as in BuildKit). ``X`` stands for the execute bits, but only on
directories and on files that have an execute bit when the action starts, so
``u=rwX,go=rX`` gives 0755 to directories and executables and 0644 to other files (the
Dockerfile reference's example; BuildKit checks itself against busybox ``chmod``). The
parser follows BSD ``setmode(3)``, which BuildKit uses.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

from builder.errors import DockerfileError

__all__ = ["ModeChange", "ModeSpec", "parse_chmod"]

_SUID, _SGID, _STICKY = stat.S_ISUID, stat.S_ISGID, stat.S_ISVTX
_STANDARD = _SUID | _SGID | 0o777
_USER, _GROUP, _OTHER = 0o700, 0o070, 0o007
_COPY_U, _COPY_G, _COPY_O, _SET, _CLEAR = 1, 2, 4, 8, 16
_ALL = 0o7777


@dataclass(frozen=True)
class ModeChange:
    """One step of a symbolic mode: ``op`` is ``+``, ``-``, ``X+``/``X-`` (set/clear if
    executable or a directory), a copy source ``u``, ``g``, ``o`` or ``mark`` (an action
    starts); ``bits`` the affected bits; ``flags`` the targets and set/clear of a copy."""

    op: str
    bits: int
    flags: int = 0


@dataclass(frozen=True)
class ModeSpec:
    """A parsed ``--chmod`` value; :meth:`apply` computes the new mode of one file."""

    text: str
    octal: int | None
    changes: tuple[ModeChange, ...] = ()

    def apply(self, mode: int, *, is_dir: bool) -> int:
        """The permission bits (``0o7777``) for a file that had ``mode``."""
        if self.octal is not None:
            return self.octal
        new = mode & _ALL
        before = new
        for change in self.changes:
            if change.op == "mark":
                before = new
            elif change.op == "+":
                new |= change.bits
            elif change.op == "-":
                new &= ~change.bits
            elif change.op in ("X+", "X-"):
                if before & 0o111 or is_dir:
                    new = new | change.bits if change.op == "X+" else new & ~change.bits
            else:
                shift = {"u": 6, "g": 3, "o": 0}[change.op]
                new = _copy_bits(new, change, (new >> shift) & 0o7)
        return new & _ALL


def _copy_bits(mode: int, change: ModeChange, value: int) -> int:
    """Apply a ``u``/``g``/``o`` copy (``g=u``, ``o+g`` …) of the 3-bit ``value``."""
    targets = ((_COPY_U, 6), (_COPY_G, 3), (_COPY_O, 0))
    if change.flags & _CLEAR:
        cleared = 0o7 if change.flags & _SET else value
        for flag, shift in targets:
            if change.flags & flag:
                mode &= ~((cleared << shift) & change.bits)
    if change.flags & _SET:
        for flag, shift in targets:
            if change.flags & flag:
                mode |= (value << shift) & change.bits
    return mode


def _invalid(text: str) -> DockerfileError:
    return DockerfileError(
        f"invalid chmod parameter: {text!r}. It should be an octal number between 0 and 07777 "
        "or a symbolic mode such as u+x, go-w or u=rwX,go=rX"
    )


def parse_chmod(text: str) -> ModeSpec:
    """Parse a ``--chmod`` value; a malformed one raises :class:`DockerfileError`."""
    if text and text[0].isdigit():
        if not all(c in "01234567" for c in text) or int(text, 8) > _ALL:
            raise _invalid(text)
        return ModeSpec(text, int(text, 8))
    changes = _Parser(text).parse()
    if changes is None:
        raise _invalid(text)
    return ModeSpec(text, None, tuple(changes))


class _Parser:
    """BSD ``setmode`` clause parsing (umask 0)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.changes: list[ModeChange] = []

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> list[ModeChange] | None:
        if not self.text:
            return None
        while True:
            who = 0
            while (c := self._peek()) and c in "augo":
                who |= {"a": _STANDARD, "u": _SUID | _USER, "g": _SGID | _GROUP,
                        "o": _OTHER}[c]
                self.pos += 1
            while True:
                op = self._peek()
                if op not in ("+", "-", "="):
                    return None
                self.pos += 1
                self.changes.append(ModeChange("mark", 0))
                self._actions(op, who & ~_STICKY)
                nxt = self._peek()
                if nxt in ("+", "-", "="):
                    continue
                break
            if self.pos == len(self.text):
                return self.changes
            if self._peek() != ",":
                return None
            self.pos += 1
            if self.pos == len(self.text):
                return None

    def _actions(self, op: str, who: int) -> None:
        """The permission letters after one operator."""
        perm = perm_x = 0
        equal_done = False
        while True:
            c = self._peek()
            if c == "r":
                perm |= 0o444
            elif c == "w":
                perm |= 0o222
            elif c == "x":
                perm |= 0o111
            elif c == "X":
                perm_x = 0o111
            elif c == "s":
                if who == 0 or who & ~_OTHER:
                    perm |= _SUID | _SGID
            elif c == "t":
                if who == 0 or who & ~_OTHER:
                    who |= _STICKY
                    perm |= _STICKY
            elif c in ("u", "g", "o"):
                if perm:
                    self._add(op, who, perm)
                    perm = 0
                if op == "=":
                    equal_done = True
                if perm_x:
                    self._add_x(op, who, perm_x)
                    perm_x = 0
                self._add_copy(c, who, op)
            else:
                if perm or (op == "=" and not equal_done):
                    self._add(op, who, perm)
                if perm_x:
                    self._add_x(op, who, perm_x)
                return
            self.pos += 1

    def _add(self, op: str, who: int, perm: int) -> None:
        if op == "=":
            self.changes.append(ModeChange("-", who or _STANDARD))
            op = "+"
        self.changes.append(ModeChange(op, (who or _ALL) & perm))

    def _add_x(self, op: str, who: int, perm: int) -> None:
        self.changes.append(ModeChange("X-" if op == "-" else "X+", (who or _ALL) & perm))

    def _add_copy(self, source: str, who: int, op: str) -> None:
        if who:
            flags = ((_COPY_U if who & 0o400 else 0) | (_COPY_G if who & 0o040 else 0)
                     | (_COPY_O if who & 0o004 else 0))
            bits = _ALL
        else:
            flags = _COPY_U | _COPY_G | _COPY_O
            bits = _ALL
        flags |= {"+": _SET, "-": _CLEAR, "=": _SET | _CLEAR}[op]
        self.changes.append(ModeChange(source, bits, flags))
