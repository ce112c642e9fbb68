"""Resolving layer entry paths inside an extraction root.

Every path is resolved component by component below the root as if the root were ``/``
(``chroot`` semantics, by :func:`layerstore.rootpath.walk`): ``..`` never climbs above the
root and symlinks, absolute or relative, are followed *within* the root. Intermediate
components of a resolved path are always real directories, so the final operation on an
entry only ever touches the last component, which is never followed.
"""

from __future__ import annotations

import os
import stat

from layerstore.errors import InvalidArgument, UnsafeLayer
from layerstore.rootpath import Missing, SymlinkLoop, walk

NAME_MAX = 255
PATH_MAX = 4096
_PREFIX_DEPTH = 16
_PREFIX_SEARCH = 64
_CACHE_BUDGET = 8_000_000


def clean_entry_name(name: str, *, link_of: str | None = None) -> tuple[str, ...]:
    """The components of a tar entry name (or, with ``link_of``, of the hardlink target of
    entry ``link_of``), relative to the root.

    A leading ``/`` is dropped (absolute names are taken relative to the root, as docker
    does); empty and ``.`` components are dropped; ``..`` removes the previous component.
    A name that climbs above the root, or whose length exceeds PATH_MAX or whose components
    exceed NAME_MAX, raises :class:`UnsafeLayer` naming the entry.
    """
    if link_of is None:
        what = f"layer entry {quote_name(name)}"
    else:
        what = f"layer entry {quote_name(link_of)}: hardlink target {quote_name(name)}"
    if "\x00" in name:
        raise UnsafeLayer(f"{what}: name contains a NUL byte")
    if len(os.fsencode(name)) >= PATH_MAX:
        raise UnsafeLayer(f"{what}: path is longer than PATH_MAX ({PATH_MAX} bytes)")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeLayer(f"{what}: path climbs above the root "
                                  "(outside the extraction root)")
            parts.pop()
            continue
        if len(os.fsencode(part)) > NAME_MAX:
            raise UnsafeLayer(
                f"{what}: component {quote_name(part)} is longer than NAME_MAX ({NAME_MAX} bytes)"
            )
        parts.append(part)
    return tuple(parts)


def quote_name(text: str, limit: int = 120) -> str:
    """``text`` quoted, shortened in the middle when very long (for error messages)."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[: limit // 2] + "..." + text[-limit // 2 :]) + f" ({len(text)} chars)"


class RootResolver:
    """Resolves entry paths inside ``root``, creating missing parent directories on demand.

    Resolutions of directories are memoised (the parents of entries, directory entries
    themselves via :meth:`remember`, and short prefixes), so memory stays proportional to
    the names in the layer; :meth:`invalidate` must be called whenever a directory or a
    symlink below the root is removed or replaced.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self._cache: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._cached_parts = 0
        self.created: list[str] = []

    def abspath(self, parts: tuple[str, ...] | list[str]) -> str:
        """The absolute path of already-resolved components."""
        if not parts:
            return self.root
        return self.root + "/" + "/".join(parts)

    def invalidate(self) -> None:
        """Forget memoised resolutions (after a directory or symlink was removed)."""
        self._cache.clear()
        self._cached_parts = 0

    def remember(self, parts: tuple[str, ...], resolved: tuple[str, ...]) -> None:
        """Record that directory ``parts`` resolves to the real directory ``resolved``."""
        if self._cached_parts > _CACHE_BUDGET:
            self.invalidate()
        self._cache[parts] = resolved
        self._cached_parts += len(parts) + len(resolved)

    def directory(self, parts: tuple[str, ...], entry: str, *, create: bool) -> str | None:
        """The real absolute path of directory ``parts`` (following symlinks inside the root).

        With ``create``, missing directories are made (mode 0755) and their paths appended
        to :attr:`created`; without it, ``None`` is returned when a component is missing.
        A component that exists but is not a directory raises :class:`InvalidArgument`.
        """
        resolved = self.resolve_dir(parts, entry, create=create)
        return None if resolved is None else self.abspath(resolved)

    def resolve_dir(
        self, parts: tuple[str, ...], entry: str, *, create: bool
    ) -> tuple[str, ...] | None:
        """Like :meth:`directory` but returns the resolved components."""
        if not parts:
            return ()
        cache = self._cache
        hit = cache.get(parts)
        if hit is not None:
            return hit
        i = len(parts) - 1
        lowest = max(0, i - _PREFIX_SEARCH)
        while i > lowest and parts[:i] not in cache:
            i -= 1
        current: tuple[str, ...] | None = cache.get(parts[:i]) if i else ()
        if current is None:
            i, current = 0, ()
        while i < len(parts):
            assert current is not None
            current = self._step(current, parts[i], entry, create)
            if current is None:
                return None
            i += 1
            if i <= _PREFIX_DEPTH or i == len(parts):
                self.remember(parts[:i], current)
        return current

    def _step(
        self, base: tuple[str, ...], component: str, entry: str, create: bool
    ) -> tuple[str, ...] | None:
        """Resolve one component below the real directory ``base`` to a real directory."""
        try:
            return walk(self.root, (component,), start=base, directories=True,
                        missing=Missing.CREATE if create else Missing.STOP,
                        created=self.created)
        except SymlinkLoop as exc:
            raise UnsafeLayer(
                f"layer entry {quote_name(entry)}: too many levels of symbolic links "
                f"(a symlink loop at {quote_name(str(exc.filename).lstrip('/'))})"
            ) from None
        except NotADirectoryError as exc:
            raise InvalidArgument(
                f"layer entry {quote_name(entry)}: parent {quote_name(str(exc.filename))} "
                "is not a directory"
            ) from None

    def still_real_dirs(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` (below the root) that are still chains of real directories.

        Used before touching directories recorded earlier, after later entries may have
        replaced one of their parents with a symlink.
        """
        good: set[str] = {self.root}
        bad: set[str] = set()
        prefix = self.root + "/"
        return [p for p in paths
                if p in good or (p.startswith(prefix) and self._real(p, good, bad))]

    def _real(self, path: str, good: set[str], bad: set[str]) -> bool:
        chain: list[str] = []
        current = path
        while current not in good:
            if current in bad or len(current) <= len(self.root):
                bad.update(chain)
                return False
            chain.append(current)
            current = current.rsplit("/", 1)[0]
        for current in reversed(chain):
            try:
                ok = stat.S_ISDIR(os.lstat(current).st_mode)
            except FileNotFoundError:
                ok = False
            if not ok:
                bad.update(chain)
                return False
            good.add(current)
        return True
