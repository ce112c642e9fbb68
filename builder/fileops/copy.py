"""COPY and ADD: putting sources into the root filesystem of the image being built.

The semantics are BuildKit's (``dockerfile2llb`` + the ``fsutil`` copier), checked against
Docker 20.10's BuildKit:

- A directory source copies its *contents*. When the destination does not exist it is made
  (mode 0755, owned by the ``--chown`` user or root); an existing destination directory keeps
  its own mode and owner, while directories merged below it take the source's metadata.
- A file source goes to ``dest/<name>`` when ``dest`` ends in ``/`` or is an existing
  directory, else to ``dest`` itself. Missing parents are made (0755, ``--chown`` owner).
- The destination is resolved inside the root filesystem, following symlinks there (also
  the last component, as BuildKit does); nothing is ever written outside it.
- Source symlinks named directly or matched by a wildcard are followed (inside the source
  root); symlinks inside a copied directory are copied as symlinks. Hard links within one
  source stay hard links. Mode bits (setuid, setgid, sticky), mtimes and xattrs are kept.
- Owners: context files (and heredocs and downloads) become 0:0, files from a stage or image
  keep theirs; ``--chown`` overrides both. ``--chmod`` applies to every file and directory
  copied, not to directories made for the destination.
- A file never replaces a directory and a directory never merges into a non-directory.
- ADD unpacks local tar archives into ``dest`` (see :mod:`builder.fileops.unpack`) and
  downloads URLs (see :mod:`builder.fileops.download`).
- ``--parents`` keeps the source path below ``dest`` (below the ``/./`` pivot when there is
  one); ``--exclude`` patterns match paths relative to each source, as in BuildKit.

Where BuildKit would silently overwrite (several sources into a destination that is not a
directory), this raises the documented error instead.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError, DockerfileError
from builder.fileops.chmod import ModeSpec, parse_chmod
from builder.fileops.download import download, is_git_source, is_url, parse_checksum
from builder.fileops.sources import Source, contains_wildcards, select_sources
from builder.fileops.unpack import is_archive, unpack
from builder.fileops.users import resolve_chown
from builder.frontend.dockerignore import DockerIgnore, IgnorePattern
from layerstore import treecopy
from layerstore.rootpath import clean, relative_to_root, resolve

__all__ = ["CopySpec", "copy_into"]

_ROOT_OWNER = (0, 0)


@dataclass(frozen=True)
class CopySpec:
    """One COPY or ADD instruction, with its words already expanded.

    ``sources`` are paths or wildcard patterns below the source root, or URLs for ADD; a
    source equal to the name of one of ``heredocs`` is that heredoc (heredocs not named in
    ``sources`` are copied after them). ``dest`` is relative to ``workdir`` unless absolute;
    a trailing ``/`` makes it a directory. ``from_context`` says whether the source root is
    the build context (owners become 0:0) or a stage or image (owners are kept).
    """

    sources: tuple[str, ...]
    dest: str
    workdir: str = "/"
    chown: str | None = None
    chmod: str | None = None
    parents: bool = False
    exclude: tuple[str, ...] = ()
    add: bool = False
    checksum: str | None = None
    from_context: bool = True
    heredocs: tuple[tuple[str, bytes], ...] = ()
    instruction: str = "COPY"
    line: int | None = None
    file: str = "Dockerfile"


def copy_into(spec: CopySpec, source_root: Path | None, rootfs: Path, *,
              ignore: DockerIgnore | None = None, scratch: Path) -> None:
    """Carry out ``spec``: copy from ``source_root`` into the mounted ``rootfs``.

    ``source_root`` is the build context (pass its ``.dockerignore`` as ``ignore``) or
    another stage's root filesystem (``ignore=None``, ``spec.from_context=False``); ``None``
    when there is no context. ``scratch`` is a writable directory for downloads and heredoc
    files. Every failure raises :class:`DockerfileError` located at ``spec.line``.
    """
    operation = _Operation(spec, source_root, Path(rootfs), ignore, Path(scratch))
    try:
        operation.run()
    except BuildError as exc:
        message = exc.message if isinstance(exc, DockerfileError) else str(exc)
        raise DockerfileError(f"{spec.instruction} failed: {message}", spec.line,
                              spec.file) from None
    except OSError as exc:
        raise DockerfileError(f"{spec.instruction} failed: {operation.describe(exc)}",
                              spec.line, spec.file) from None


@dataclass(frozen=True)
class _Heredoc:
    name: str
    content: bytes


@dataclass(frozen=True)
class _Url:
    url: str


@dataclass(frozen=True)
class _Parents:
    """A ``--parents`` source: copy what ``include`` selects below each of ``roots``."""

    roots: tuple[Source, ...]
    include: IgnorePattern | None


_Item = Source | _Heredoc | _Url | _Parents


@dataclass
class _Dir:
    """A source directory being copied; ``ready`` once its destination exists."""

    src: str
    dst: str
    st: os.stat_result
    rel: str
    ctx: str | None
    parent: _Dir | None
    ready: bool = False
    names: list[str] = field(default_factory=list)


class _Operation:
    """The state of one :func:`copy_into` call."""

    def __init__(self, spec: CopySpec, source_root: Path | None, rootfs: Path,
                 ignore: DockerIgnore | None, scratch: Path) -> None:
        self.spec = spec
        self.source_root = source_root
        self.rootfs = rootfs
        self.ignore = ignore if spec.from_context else None
        self.scratch = scratch
        dest = spec.dest if spec.dest.startswith("/") else posixpath.join(
            spec.workdir or "/", spec.dest)
        self.dest = clean(dest)
        self.dest_is_dir = (spec.dest in ("", ".") or spec.dest.endswith("/")
                            or spec.dest.endswith("/."))
        self.mode: ModeSpec | None = None
        self.chown: tuple[int, int] | None = None
        self.exclude: DockerIgnore | None = None
        self.inodes: dict[tuple[int, int], str] = {}

    # -- planning ---------------------------------------------------------------------

    def run(self) -> None:
        spec = self.spec
        if spec.chmod:
            self.mode = parse_chmod(spec.chmod)
        if spec.exclude:
            self.exclude = DockerIgnore.parse("\n".join(spec.exclude))
        items = self._plan()
        if spec.chown:
            self.chown = resolve_chown(self.rootfs, spec.chown)
        if (len(items) > 1 and not spec.parents and not self.dest_is_dir
                and not all(isinstance(i, Source) and i.path.is_dir() for i in items)
                and not resolve(self.rootfs, self.dest).is_dir()):
            raise DockerfileError(
                f"When using {spec.instruction} with more than one source file, the "
                f"destination must be a directory and end with a / ({spec.dest!r} is not)")
        for item in items:
            self.inodes = {}
            self._carry_out(item)

    def _check_options(self) -> None:
        spec = self.spec
        if spec.checksum is None:
            return
        if not spec.add:
            raise DockerfileError("checksum can't be specified for COPY")
        if len(spec.sources) + len(spec.heredocs) != 1:
            raise DockerfileError("checksum can't be specified for multiple sources")
        if not spec.sources or not is_url(spec.sources[0]):
            raise DockerfileError("checksum requires HTTP(S) sources")

    def _plan(self) -> list[_Item]:
        """The items to copy, in order; local patterns are already resolved."""
        self._check_options()
        spec = self.spec
        heredocs = dict(spec.heredocs)
        items: list[_Item] = []
        used: set[str] = set()
        for source in spec.sources:
            if source in heredocs:
                items.append(_Heredoc(source, heredocs[source]))
                used.add(source)
            elif is_git_source(source):
                raise DockerfileError(f"{source}: Git sources are not supported")
            elif is_url(source):
                if not spec.add:
                    raise DockerfileError(f"source can't be a URL for COPY: {source}")
                items.append(_Url(source))
            else:
                items.extend(self._local(source))
        items.extend(_Heredoc(n, c) for n, c in spec.heredocs if n not in used)
        return items

    def _local(self, source: str) -> list[_Item]:
        if self.source_root is None:
            raise DockerfileError(f"{source!r}: there is no build context to copy from")
        context = self.spec.from_context
        if not self.spec.parents:
            return list(select_sources(self.source_root, source, ignore=self.ignore,
                                       context=context))
        parent, pivot, pattern = source.partition("/./")
        if not pivot:
            parent, pattern = "/", source
        pattern = clean(pattern).lstrip("/")
        if not contains_wildcards(parent) and not contains_wildcards(pattern):
            required = pattern if parent == "/" else f"{parent}/{pattern}"
            select_sources(self.source_root, required, ignore=self.ignore, context=context)
        roots = tuple(select_sources(self.source_root, parent, ignore=self.ignore,
                                     context=context))
        return [_Parents(roots, IgnorePattern.parse(pattern) if pattern else None)]

    # -- carrying out -----------------------------------------------------------------

    def _carry_out(self, item: _Item) -> None:
        if isinstance(item, Source):
            owner = _ROOT_OWNER if self.spec.from_context else None
            ctx = self._context_relpath(item.path)
            self._copy_source(item.path, posixpath.basename(item.relpath), owner, ctx,
                              unpack_archives=self.spec.add)
        elif isinstance(item, _Parents):
            owner = _ROOT_OWNER if self.spec.from_context else None
            for root in item.roots:
                self._copy_source(root.path, posixpath.basename(root.relpath), owner,
                                  self._context_relpath(root.path), include=item.include,
                                  contents=True)
        elif isinstance(item, _Heredoc):
            path = self._heredoc_file(item)
            try:
                self._copy_source(path, posixpath.basename(item.name) or item.name,
                                  _ROOT_OWNER, None)
            finally:
                path.unlink(missing_ok=True)
        else:
            checksum = parse_checksum(self.spec.checksum) if self.spec.checksum else None
            got = download(item.url, self.scratch, checksum=checksum)
            try:
                self._copy_source(got.path, got.name, _ROOT_OWNER, None)
            finally:
                got.path.unlink(missing_ok=True)

    def _context_relpath(self, path: Path) -> str | None:
        if self.ignore is None or self.source_root is None:
            return None
        rel = os.path.relpath(path, self.source_root)
        return "" if rel == "." else rel

    def _heredoc_file(self, heredoc: _Heredoc) -> Path:
        fd, name = tempfile.mkstemp(prefix="heredoc-", dir=self.scratch)
        with os.fdopen(fd, "wb") as out:
            out.write(heredoc.content)
        os.chmod(name, 0o644)
        return Path(name)

    def _copy_source(self, src: Path, name: str, owner: tuple[int, int] | None,
                     ctx: str | None, *, include: IgnorePattern | None = None,
                     contents: bool = False, unpack_archives: bool = False) -> None:
        """Copy one selected source the way BuildKit's ``copy.Copy`` does."""
        st = os.lstat(src)
        if unpack_archives and stat.S_ISREG(st.st_mode) and is_archive(src):
            target = resolve(self.rootfs, self.dest)
            self._make_dirs(target)
            unpack(src, target, owner=self.chown, display_name=name)
            return
        self._make_dirs(resolve(self.rootfs, self.dest if self.dest_is_dir
                                else posixpath.dirname(self.dest)))
        dst = resolve(self.rootfs, self.dest)
        dst_st = _lstat(dst)
        is_dir = stat.S_ISDIR(st.st_mode)
        if contents and not is_dir:
            raise DockerfileError(f"{name!r} is not a directory")
        if not is_dir and dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
            dst = dst / name
        self._make_dirs(dst if is_dir and dst_st is None else dst.parent)
        if not is_dir:
            self._copy_leaf(os.fspath(src), os.fspath(dst), st, owner)
            return
        top_st = os.lstat(dst)
        if not stat.S_ISDIR(top_st.st_mode):
            raise DockerfileError(f"cannot copy a directory to the non-directory "
                                  f"{self.image_path(dst)}")
        top = _Dir(os.fspath(src), os.fspath(dst), st, "", ctx, None, ready=True)
        self._copy_tree(top, owner, include)

    def _make_dirs(self, host: Path) -> None:
        """Make the missing directories of ``host`` (0755, ``--chown`` owner)."""
        rel = os.path.relpath(host, self.rootfs)
        if rel == ".":
            return
        current = os.fspath(self.rootfs)
        for part in rel.split("/"):
            current = f"{current}/{part}"
            st = _lstat(Path(current))
            if st is None:
                os.mkdir(current, 0o755)
                os.chmod(current, 0o755)
                if self.chown is not None:
                    os.lchown(current, *self.chown)
            elif not stat.S_ISDIR(st.st_mode):
                raise DockerfileError(f"cannot make directory {self.image_path(current)}: "
                                      "a file of that name exists")

    def _verdict(self, rel: str, ctx: str | None, is_dir: bool,
                 include: IgnorePattern | None) -> str:
        """``copy``, ``descend`` (only something below may be copied) or ``skip``."""
        if self.ignore is not None and ctx is not None and self.ignore.excluded(ctx):
            return "descend" if is_dir and self.ignore.must_descend(ctx) else "skip"
        if self.exclude is not None and self.exclude.excluded(rel):
            return "descend" if is_dir and self.exclude.must_descend(rel) else "skip"
        if include is not None and not include.match(rel):
            return "descend" if is_dir and include.may_match_below(rel) else "skip"
        return "copy"

    def _copy_tree(self, top: _Dir, owner: tuple[int, int] | None,
                   include: IgnorePattern | None) -> None:
        """Copy the contents of ``top`` depth first, directory metadata after children."""
        top.names = sorted(os.listdir(top.src), reverse=True)
        stack = [top]
        while stack:
            current = stack[-1]
            if not current.names:
                stack.pop()
                if current.ready and current is not top:
                    self._metadata(current.src, current.dst, current.st, owner)
                continue
            name = current.names.pop()
            src = f"{current.src}/{name}"
            st = os.lstat(src)
            rel = f"{current.rel}/{name}" if current.rel else name
            ctx = None if current.ctx is None else (f"{current.ctx}/{name}" if current.ctx
                                                    else name)
            is_dir = stat.S_ISDIR(st.st_mode)
            verdict = self._verdict(rel, ctx, is_dir, include)
            if verdict == "skip" or (verdict == "descend" and not is_dir):
                continue
            if is_dir:
                child = _Dir(src, f"{current.dst}/{name}", st, rel, ctx, current)
                child.names = sorted(os.listdir(src), reverse=True)
                if verdict == "copy":
                    self._ensure_dir(child)
                stack.append(child)
                continue
            self._ensure_dir(current)
            self._copy_leaf(src, f"{current.dst}/{name}", st, owner)

    def _ensure_dir(self, directory: _Dir) -> None:
        """Make (or merge into) the destination of ``directory`` and of its parents."""
        chain = []
        node: _Dir | None = directory
        while node is not None and not node.ready:
            chain.append(node)
            node = node.parent
        for node in reversed(chain):
            st = _lstat(Path(node.dst))
            if st is None:
                os.mkdir(node.dst, 0o700)
            elif not stat.S_ISDIR(st.st_mode):
                raise DockerfileError(f"cannot copy a directory to the non-directory "
                                      f"{self.image_path(node.dst)}")
            node.ready = True

    def _copy_leaf(self, src: str, dst: str, st: os.stat_result,
                   owner: tuple[int, int] | None) -> None:
        """Copy a file, symlink or special file to ``dst`` (replacing a non-directory)."""
        existing = _lstat(Path(dst))
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise DockerfileError(f"cannot replace the directory {self.image_path(dst)} "
                                      "with a file")
            os.unlink(dst)
        try:
            treecopy.copy_leaf(src, dst, st, self.inodes)
        except OSError as exc:
            if exc.errno == errno.EINVAL and exc.filename == src:
                raise DockerfileError(f"cannot copy {src!r}: unsupported file type") from None
            raise
        self._metadata(src, dst, st, owner)

    def _metadata(self, src: str, dst: str, st: os.stat_result,
                  owner: tuple[int, int] | None) -> None:
        """Owner, mode, times and xattrs of ``dst`` from ``st``, ``--chown`` and ``--chmod``."""
        bits = None
        if self.mode is not None:
            bits = self.mode.apply(stat.S_IMODE(st.st_mode), is_dir=stat.S_ISDIR(st.st_mode))
        treecopy.copy_metadata(src, dst, st, owner=self.chown or owner, mode=bits)

    # -- messages ---------------------------------------------------------------------

    def image_path(self, host: str | os.PathLike[str]) -> str:
        """A host path below the root filesystem as seen in the image."""
        return relative_to_root(self.rootfs, host)

    def describe(self, exc: OSError) -> str:
        """An OSError in terms of paths in the image or in the source."""
        text = exc.strerror or str(exc)
        if exc.filename is None:
            return text
        name = os.fsdecode(exc.filename)
        roots = [(os.fspath(self.rootfs), "")]
        if self.source_root is not None:
            label = "build context" if self.spec.from_context else "source"
            roots.insert(0, (os.fspath(self.source_root), label))
        for root, label in roots:
            if name == root or name.startswith(root.rstrip("/") + "/"):
                inside = relative_to_root(root, name)
                return f"{inside}{f' (in the {label})' if label else ''}: {text}"
        return f"{text}"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
