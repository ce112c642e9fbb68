"""``RUN --mount`` (cache, bind, tmpfs, secret) and ``--secret`` build secrets.

:func:`parse_mount` turns the value of one ``--mount`` flag into a typed spec, as BuildKit's
Dockerfile frontend reads it; :func:`run_mounts` turns the specs of one RUN step into the
executor's mounts (:class:`~builder.executor.protocol.BindMount`,
:class:`~builder.executor.protocol.TmpfsMount`) and the secret environment variables, and
cleans everything it made up afterwards.

What a RUN step writes into these mounts never reaches its layer: cache directories live
under the cache root, read-write binds are throwaway copies, tmpfs vanishes with the run and
secrets are bind-mounted copies in a scratch directory. Their mount points are created and
removed again by the executor.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import os
import posixpath
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from builder.errors import BuildError, DockerfileError
from builder.executor.protocol import BindMount, TmpfsMount
from builder.frontend.dockerignore import DockerIgnore
from builder.treecopy import copy_tree, filtered_tree, remove_tree
from layerstore.rootpath import resolve as resolve_path

Sharing = Literal["shared", "private", "locked"]

#: BuildKit refuses secrets larger than this.
MAX_SECRET_SIZE = 500 * 1024


@dataclass(frozen=True)
class CacheMount:
    """``type=cache``: a directory kept between builds under ``id`` (default: the target).

    ``sharing`` says what concurrent builds using the same id do: ``shared`` use it together,
    ``locked`` wait for each other, ``private`` get a fresh throwaway directory while it is
    in use. A new cache directory gets ``mode``, ``uid`` and ``gid``; with ``from_`` it starts
    as a copy of ``source`` in that stage or image, without it ``source`` is a subdirectory
    of the cache to mount."""

    target: str
    id: str = ""
    sharing: Sharing = "shared"
    from_: str | None = None
    source: str = "/"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    readonly: bool = False

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.target)


@dataclass(frozen=True)
class BindSpec:
    """``type=bind``: ``source`` of the build context (or of stage/image ``from_``) at
    ``target``, read-only unless ``readwrite``; writes to a read-write bind are discarded."""

    target: str
    source: str = "/"
    from_: str | None = None
    readwrite: bool = False


@dataclass(frozen=True)
class TmpfsSpec:
    """``type=tmpfs``: an empty tmpfs at ``target`` of at most ``size`` bytes."""

    target: str
    size: int | None = None


@dataclass(frozen=True)
class SecretSpec:
    """``type=secret``: build secret ``id`` as a read-only file at ``target`` and/or as the
    environment variable ``env``.

    ``target`` defaults to ``/run/secrets/<id>`` unless ``env`` is given, in which case the
    secret is only an environment variable (``target`` stays None). A secret not given to
    the build is an error when ``required``, otherwise the mount is left out."""

    id: str
    target: str | None = None
    env: str | None = None
    required: bool = False
    mode: int = 0o400
    uid: int = 0
    gid: int = 0

    def __post_init__(self) -> None:
        if self.target is None and self.env is None:
            object.__setattr__(self, "target", "/run/secrets/" + posixpath.basename(self.id))


RunMount = CacheMount | BindSpec | TmpfsSpec | SecretSpec


@dataclass(frozen=True)
class SecretSource:
    """Where the value of build secret ``id`` comes from: a file or an environment variable."""

    id: str
    path: Path | None = None
    env: str | None = None


@dataclass(frozen=True)
class MountPlan:
    """The executor's side of a RUN step's mounts: extra mounts and ``KEY=value`` secret
    environment variables to add to the step's environment."""

    mounts: tuple[BindMount | TmpfsMount, ...]
    env: tuple[str, ...]


_TYPES = ("bind", "cache", "tmpfs", "secret")
_ALIASES = {
    "type": "type", "from": "from", "source": "source", "src": "source", "target": "target",
    "dst": "target", "destination": "target", "readonly": "readonly", "ro": "readonly",
    "readwrite": "readwrite", "rw": "readwrite", "id": "id", "sharing": "sharing",
    "mode": "mode", "uid": "uid", "gid": "gid", "size": "size", "required": "required",
    "env": "env",
}
# readonly/readwrite are accepted by every type, as BuildKit does; tmpfs and secret
# mounts ignore them.
_ALLOWED = {
    "bind": {"target", "source", "from"},
    "cache": {"target", "source", "from", "id", "sharing", "mode", "uid", "gid"},
    "tmpfs": {"target", "size"},
    "secret": {"target", "source", "id", "env", "required", "mode", "uid", "gid"},
}
_FLAGS = {"readonly": "true", "readwrite": "true", "required": "true"}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kKmMgGtTpP])?[iI]?[bB]?")


def parse_mount(text: str, *, line: int | None, file: str = "Dockerfile",
                workdir: str = "/") -> RunMount:
    """Parse the (already expanded) value of one ``RUN --mount`` flag, such as
    ``type=cache,target=/root/.cache,id=pip,sharing=locked``.

    A relative target is taken relative to ``workdir``. Raises
    :class:`~builder.errors.DockerfileError` at ``file``:``line`` for an unknown type or key,
    a key that the type does not take, a bad value or a missing target."""

    def fail(message: str) -> DockerfileError:
        return DockerfileError(f"--mount={text}: {message}", line, file)

    try:
        fields = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise fail(f"cannot parse the mount options ({exc})") from None
    options: dict[str, str] = {}
    keys: dict[str, str] = {}
    writable: bool | None = None
    for field in fields:
        key, eq, value = field.partition("=")
        name = _ALIASES.get(key.lower())
        if name is None:
            raise fail(f"unknown mount option {key!r}")
        if not eq:
            if name not in _FLAGS:
                raise fail(f"option {key!r} must be a key=value pair")
            value = _FLAGS[name]
        if name in ("readonly", "readwrite"):
            flag = _boolean(value, key, fail)
            writable = flag if name == "readwrite" else not flag
            continue
        options[name] = value
        keys[name] = key
    kind = options.pop("type", "bind").lower()
    if kind == "ssh":
        raise fail("ssh mounts are not supported")
    if kind not in _TYPES:
        raise fail(f"unknown mount type {kind!r} (expected one of {', '.join(_TYPES)})")
    for name in options:
        if name not in _ALLOWED[kind]:
            raise fail(f"option {keys[name]!r} is not valid for {kind} mounts")
    value_of = _Values(options, fail)
    target = value_of.target(workdir)
    if kind == "secret":
        return _secret_spec(options, value_of, target, fail)
    if target is None:
        raise fail("a target is required")
    from_ = options.get("from") or None
    if kind == "bind":
        return BindSpec(target, options.get("source", "/"), from_, writable is True)
    if kind == "tmpfs":
        return TmpfsSpec(target, value_of.size())
    sharing = options.get("sharing", "shared").lower()
    if sharing not in ("shared", "private", "locked"):
        raise fail(f"invalid sharing {options['sharing']!r} (expected shared, private or locked)")
    return CacheMount(target, options.get("id", ""), sharing,  # type: ignore[arg-type]
                      from_, options.get("source", "/"), value_of.mode(0o755),
                      value_of.number("uid"), value_of.number("gid"), writable is False)


def _secret_spec(options: dict[str, str], value_of: _Values, target: str | None,
                 fail: Callable[[str], DockerfileError]) -> SecretSpec:
    if "source" in options and "id" in options:
        raise fail("a secret mount takes either source or id, not both")
    secret_id = options.get("id") or options.get("source")
    if not secret_id:
        if target is None:
            raise fail("a secret mount needs an id or a target")
        secret_id = posixpath.basename(target)
    env = options.get("env")
    if env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
        raise fail(f"invalid environment variable name {env!r}")
    return SecretSpec(secret_id, target, env, value_of.boolean("required", False),
                      value_of.mode(0o400), value_of.number("uid"), value_of.number("gid"))


def _boolean(value: str, name: str, fail: Callable[[str], DockerfileError]) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise fail(f"invalid value {value!r} for {name}")


class _Values:
    """Typed access to the parsed options of one ``--mount``."""

    def __init__(self, options: dict[str, str],
                 fail: Callable[[str], DockerfileError]) -> None:
        self.options = options
        self.fail = fail

    def boolean(self, name: str, default: bool) -> bool:
        value = self.options.get(name)
        return default if value is None else _boolean(value, name, self.fail)

    def target(self, workdir: str) -> str | None:
        value = self.options.get("target")
        if not value:
            return None
        path = posixpath.normpath(posixpath.join("/", workdir, value))
        path = "/" + path.lstrip("/")
        if path == "/":
            raise self.fail(f"invalid mount target {value!r}")
        return path

    def number(self, name: str) -> int:
        value = self.options.get(name, "0")
        if not value.isascii() or not value.isdigit() or int(value) >= 2**32:
            raise self.fail(f"invalid value {value!r} for {name}")
        return int(value)

    def mode(self, default: int) -> int:
        value = self.options.get("mode")
        if value is None:
            return default
        try:
            mode = int(value, 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o7777:
            raise self.fail(f"invalid value {value!r} for mode (an octal number)")
        return mode

    def size(self) -> int | None:
        value = self.options.get("size")
        if value is None:
            return None
        match = _SIZE.fullmatch(value)
        if match is None:
            raise self.fail(f"invalid value {value!r} for size")
        unit = "kmgtp".find(match[2].lower()) + 1 if match[2] else 0
        return int(float(match[1]) * 1024**unit)


def parse_secret_flag(text: str) -> SecretSource:
    """Parse one ``--secret`` value of the command line: ``id=x,src=path``,
    ``id=x,env=VAR``, ``type=file|env,...``; ``id=x`` alone reads the environment variable
    ``x`` when it is set and the file ``x`` otherwise.

    A file is checked to exist now; an environment variable is read when a RUN step uses the
    secret. Raises :class:`~builder.errors.BuildError` for a malformed value."""

    def fail(message: str) -> BuildError:
        return BuildError(f"invalid --secret {text!r}: {message}")

    try:
        fields = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise fail(str(exc)) from None
    kind = secret_id = source = env = None
    for field in fields:
        key, eq, value = field.partition("=")
        key = key.lower()
        if not eq:
            raise fail(f"{field!r} must be a key=value pair")
        if key == "type":
            if value not in ("file", "env"):
                raise fail(f"unsupported secret type {value!r} (expected file or env)")
            kind = value
        elif key == "id":
            secret_id = value
        elif key in ("src", "source"):
            source = value
        elif key == "env":
            env = value
        else:
            raise fail(f"unknown key {key!r} (expected id, src, env or type)")
    if not secret_id:
        raise fail("the secret needs an id")
    if kind == "env" and env is None:
        env, source = source or secret_id, None
    if kind == "file" and env is not None:
        raise fail("type=file takes src, not env")
    if source is not None and env is not None:
        raise fail("give either src or env, not both")
    if source is None and env is None:
        if kind != "file" and secret_id in os.environ:
            env = secret_id
        else:
            source = secret_id
    if env is not None:
        return SecretSource(secret_id, env=env)
    path = Path(os.path.abspath(os.path.expanduser(source or "")))
    try:
        info = path.stat()
    except OSError as exc:
        raise fail(f"cannot read {str(path)!r}: {exc.strerror}") from None
    if not path.is_file():
        raise fail(f"{str(path)!r} is not a regular file")
    if info.st_size > MAX_SECRET_SIZE:
        raise fail(f"{str(path)!r} is larger than {MAX_SECRET_SIZE // 1024} KiB")
    return SecretSource(secret_id, path=path)


@contextmanager
def run_mounts(specs: Sequence[RunMount], *, cache_root: Path, scratch: Path, context: Path,
               sources: Callable[[str], AbstractContextManager[Path]],
               secrets: Mapping[str, SecretSource], line: int | None,
               file: str = "Dockerfile", ignore: DockerIgnore | None = None
               ) -> Iterator[MountPlan]:
    """Make everything the ``--mount`` specs of one RUN step need and yield the plan.

    ``sources(name)`` yields the root directory of a stage or image named by ``from=``;
    bind sources without ``from=`` come from ``context``, filtered by ``ignore`` (the
    ``.dockerignore``) as BuildKit's context is. Cache directories persist under
    ``cache_root``; everything else is made in a private directory under ``scratch``, and
    it, the cache locks and the ``sources`` views are gone when the block ends, also on an
    exception. Errors that the Dockerfile caused are
    :class:`~builder.errors.DockerfileError` at ``file``:``line``."""
    with contextlib.ExitStack() as stack:
        scratch.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="pybuild-mounts-", dir=scratch))
        stack.callback(remove_tree, work)
        maker = _Maker(stack, work, cache_root, context, sources, secrets, line, file, ignore)
        mounts: list[BindMount | TmpfsMount] = []
        env: list[str] = []
        maker.take_caches([spec for spec in specs if isinstance(spec, CacheMount)])
        for spec in specs:
            if isinstance(spec, CacheMount):
                mounts.append(maker.cache(spec))
            elif isinstance(spec, BindSpec):
                mounts.append(maker.bind(spec))
            elif isinstance(spec, TmpfsSpec):
                mounts.append(TmpfsMount(spec.target, spec.size))
            else:
                secret_mount, secret_env = maker.secret(spec)
                mounts.extend(secret_mount)
                env.extend(secret_env)
        yield MountPlan(tuple(mounts), tuple(env))


class _Maker:
    """Makes the host side of the mounts of one RUN step."""

    def __init__(self, stack: contextlib.ExitStack, work: Path, cache_root: Path,
                 context: Path, sources: Callable[[str], AbstractContextManager[Path]],
                 secrets: Mapping[str, SecretSource], line: int | None, file: str,
                 ignore: DockerIgnore | None = None) -> None:
        self.ignore = ignore
        self.stack = stack
        self.work = work
        self.cache_root = cache_root
        self.context = context
        self.sources = sources
        self.secrets = secrets
        self.line = line
        self.file = file
        self.count = 0
        self.caches: dict[str, Path] = {}

    def error(self, message: str) -> DockerfileError:
        """An error located at the RUN step."""
        return DockerfileError(message, self.line, self.file)

    def scratch_path(self, kind: str) -> Path:
        """A new, unused path in the step's scratch directory."""
        self.count += 1
        return self.work / f"{kind}-{self.count}"

    def root_of(self, from_: str | None) -> Path:
        """The root of stage or image ``from_``, open until the step ends."""
        if from_ is None:
            return self.context
        return Path(self.stack.enter_context(self.sources(from_)))

    def source_path(self, from_: str | None, source: str, what: str) -> Path:
        """``source`` inside the root of ``from_`` (the context when None), which must
        exist."""
        root = self.root_of(from_)
        where = "the build context" if from_ is None else repr(from_)
        try:
            path = resolve_path(root, source)
        except OSError as exc:
            raise self.error(f"{what} source {source!r} in {where}: {exc.strerror}") from None
        if not os.path.lexists(path):
            raise self.error(f"{what} source {source!r} not found in {where}")
        return path

    def bind(self, spec: BindSpec) -> BindMount:
        path = self.source_path(spec.from_, spec.source, "bind mount")
        if spec.from_ is None and self.ignore is not None and self.ignore.patterns:
            view = self.scratch_path("context")
            rel = os.path.relpath(path, self.context)
            filtered_tree(path, view, "" if rel == "." else rel, self.ignore,
                           link=not spec.readwrite)
            return BindMount(str(view), spec.target, readonly=not spec.readwrite)
        if not spec.readwrite:
            return BindMount(str(path), spec.target, readonly=True)
        copy = self.scratch_path("bind")
        copy_tree(path, copy)
        return BindMount(str(copy), spec.target, readonly=False)

    def take_caches(self, specs: Sequence[CacheMount]) -> None:
        """Lock (and make, on first use) the cache directory of every id in ``specs``.

        Ids are taken in one global order so that two builds never wait for each other
        crosswise; an id mounted twice in one step is taken once, in its strictest
        sharing mode."""
        groups: dict[str, list[CacheMount]] = {}
        for spec in specs:
            groups.setdefault(_cache_key(spec.id), []).append(spec)
        if groups:
            self.cache_root.mkdir(parents=True, exist_ok=True)
        for digest in sorted(groups):
            modes = {spec.sharing for spec in groups[digest]}
            sharing = next(m for m in ("locked", "private", "shared") if m in modes)
            self.caches[digest] = self.take_cache(digest, sharing, groups[digest][0])

    def take_cache(self, digest: str, sharing: Sharing, spec: CacheMount) -> Path:
        """Hold the id's lock as ``sharing`` asks for the rest of the step; the directory
        to mount."""
        lock = self.stack.enter_context(_open_lock(self.cache_root / f"{digest}.lock"))
        if sharing == "private":
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                throwaway = self.scratch_path("cache")
                self.new_cache(spec, throwaway)
                return throwaway
        else:
            fcntl.flock(lock, fcntl.LOCK_EX if sharing == "locked" else fcntl.LOCK_SH)
        directory = self.cache_root / digest
        if directory.is_dir():
            return directory
        # Made under a lock of its own, held only while it is made, so that a build
        # making it never waits for the builds using it.
        with _open_lock(self.cache_root / f"{digest}.new") as making:
            fcntl.flock(making, fcntl.LOCK_EX)
            if not directory.is_dir():
                building = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=self.cache_root))
                try:
                    self.new_cache(spec, building)
                    building.rename(directory)
                except BaseException:
                    remove_tree(building)
                    raise
        return directory

    def cache(self, spec: CacheMount) -> BindMount:
        directory = self.caches[_cache_key(spec.id)]
        if spec.from_ is None and spec.source.strip("/"):
            try:
                directory = resolve_path(directory, spec.source)
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self.error(f"cache mount source {spec.source!r}: {exc.strerror}") \
                    from None
        return BindMount(str(directory), spec.target, readonly=spec.readonly)

    def new_cache(self, spec: CacheMount, directory: Path) -> None:
        """Make a new cache directory, seeded from ``from_``:``source`` when given."""
        directory.mkdir(exist_ok=True)
        if spec.from_ is not None:
            seed = self.source_path(spec.from_, spec.source, "cache mount")
            if not seed.is_dir():
                raise self.error(f"cache mount source {spec.source!r} in {spec.from_!r} "
                                 "is not a directory")
            copy_tree(seed, directory, contents=True)
        os.chown(directory, spec.uid, spec.gid)
        os.chmod(directory, spec.mode)

    def secret(self, spec: SecretSpec) -> tuple[list[BindMount], list[str]]:
        value = self.secret_value(spec)
        if value is None:
            return [], []
        mounts: list[BindMount] = []
        if spec.target is not None:
            copy = self.scratch_path("secret")
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, value)
                os.fchown(fd, spec.uid, spec.gid)
                os.fchmod(fd, spec.mode)
            finally:
                os.close(fd)
            mounts.append(BindMount(str(copy), spec.target, readonly=True))
        env = [] if spec.env is None else [f"{spec.env}={os.fsdecode(value)}"]
        return mounts, env

    def secret_value(self, spec: SecretSpec) -> bytes | None:
        """The secret's bytes; None when it was not given and is not required."""
        source = self.secrets.get(spec.id)
        value: bytes | None = None
        if source is not None and source.path is not None:
            try:
                with open(source.path, "rb") as f:
                    value = f.read(MAX_SECRET_SIZE + 1)
            except OSError as exc:
                raise BuildError(f"secret {spec.id!r}: cannot read {str(source.path)!r}: "
                                 f"{exc.strerror}") from None
            if len(value) > MAX_SECRET_SIZE:
                raise BuildError(f"secret {spec.id!r} is larger than "
                                 f"{MAX_SECRET_SIZE // 1024} KiB")
        elif source is not None and source.env is not None:
            text = os.environ.get(source.env)
            value = None if text is None else os.fsencode(text)
        if value is None and spec.required:
            raise self.error(f"secret {spec.id!r} is required but was not given to the build "
                             f"(--secret id={spec.id},src=FILE)")
        return value


def _cache_key(cache_id: str) -> str:
    """The file name of cache ``cache_id`` under the cache root."""
    return hashlib.sha256(cache_id.encode()).hexdigest()


@contextmanager
def _open_lock(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)
