"""``RUN --mount`` (cache, bind, tmpfs, secret) and ``--secret`` build secrets.

The typed mount values and their parser live in :mod:`builder.graph.mounts` (re-exported
here); :func:`run_mounts` turns the specs of one RUN step into the
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
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError, DockerfileError
from builder.executor.protocol import BindMount, TmpfsMount
from builder.frontend.dockerignore import DockerIgnore
from builder.graph.mounts import (
    BindSpec,
    CacheMount,
    RunMount,
    SecretSpec,
    Sharing,
    SshSpec,
    TmpfsSpec,
    parse_mount,
)
from builder.sshforward import SshAgents
from builder.treecopy import copy_tree, filtered_tree, remove_tree
from layerstore.rootpath import resolve as resolve_path

__all__ = [
    "MAX_SECRET_SIZE", "BindSpec", "CacheMount", "MountPlan", "RunMount", "SecretSource",
    "SecretSpec", "Sharing", "SshSpec", "TmpfsSpec", "cache_dir_name", "parse_mount",
    "parse_secret_flag", "run_mounts",
]  # fmt: skip

#: BuildKit refuses secrets larger than this.
MAX_SECRET_SIZE = 500 * 1024

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
               file: str = "Dockerfile", ignore: DockerIgnore | None = None,
               ssh: SshAgents | None = None,
               restore: Callable[[str, Path], None] | None = None) -> Iterator[MountPlan]:
    """Make everything the ``--mount`` specs of one RUN step need and yield the plan.

    ``sources(name)`` yields the root directory of a stage or image named by ``from=``;
    bind sources without ``from=`` come from ``context``, filtered by ``ignore`` (the
    ``.dockerignore``) as BuildKit's context is. Cache directories persist under
    ``cache_root``; everything else is made in a private directory under ``scratch``, and
    it, the cache locks and the ``sources`` views are gone when the block ends, also on an
    exception. ``ssh`` holds the build's SSH agents, which ssh mounts reach through a relay
    socket of their own. ``restore(id, directory)``, when given, fills a cache directory
    made for the first time (from an imported cache). Errors that the Dockerfile caused are
    :class:`~builder.errors.DockerfileError` at ``file``:``line``."""
    with contextlib.ExitStack() as stack:
        scratch.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="pybuild-mounts-", dir=scratch))
        stack.callback(remove_tree, work)
        maker = _Maker(stack, work, cache_root, context, sources, secrets, line, file, ignore,
                       restore)
        mounts: list[BindMount | TmpfsMount] = []
        env: list[str] = []
        ssh_count = 0
        maker.take_caches([spec for spec in specs if isinstance(spec, CacheMount)])
        for spec in specs:
            if isinstance(spec, CacheMount):
                mounts.append(maker.cache(spec))
            elif isinstance(spec, BindSpec):
                mounts.append(maker.bind(spec))
            elif isinstance(spec, TmpfsSpec):
                mounts.append(TmpfsMount(spec.target, spec.size))
            elif isinstance(spec, SshSpec):
                target = spec.target or f"/run/buildkit/ssh_agent.{ssh_count}"
                ssh_count += 1
                socket_mount = maker.ssh(spec, target, ssh)
                if socket_mount is not None:
                    mounts.append(socket_mount)
                if ssh_count == 1:
                    env.append(f"SSH_AUTH_SOCK={target}")
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
                 ignore: DockerIgnore | None = None,
                 restore: Callable[[str, Path], None] | None = None) -> None:
        self.ignore = ignore
        self.restore = restore
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
            groups.setdefault(cache_dir_name(spec.id), []).append(spec)
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
                    if self.restore is not None and spec.from_ is None:
                        self.restore(spec.id, building)
                    building.rename(directory)
                except BaseException:
                    remove_tree(building)
                    raise
        return directory

    def cache(self, spec: CacheMount) -> BindMount:
        directory = self.caches[cache_dir_name(spec.id)]
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

    def ssh(self, spec: SshSpec, target: str, agents: SshAgents | None) -> BindMount | None:
        """The relay socket of an ssh mount at ``target``; None when the build was not
        given the agent and the mount says ``required=false``."""
        relay = self.stack.enter_context(agents.relay(
            spec.id, mode=spec.mode, uid=spec.uid, gid=spec.gid)) if agents else None
        if relay is None:
            if spec.required is not False:
                raise self.error(f"RUN --mount=type=ssh needs the SSH agent {spec.id!r}, which "
                                 f"was not given to the build: pass --ssh {spec.id} (or "
                                 "required=false to run without it)")
            return None
        return BindMount(str(relay.path), target, readonly=False)

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


def cache_dir_name(cache_id: str) -> str:
    """The file name of cache ``cache_id`` under the cache root."""
    return hashlib.sha256(cache_id.encode()).hexdigest()


@contextmanager
def _open_lock(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)
