"""Containers that outlive ``pybuild run`` (run without ``--rm``): their records.

A container is an active snapshot (key ``container-<id>``) on top of its image's layers, plus
a record ``containers/<id>.json`` under the store root that says what it is: its name, the
image it was made from (the manifest, to find the base layers and config again), the config
the run used (what ``commit`` starts from, as docker's container config), and its state.

State, as docker shows it: ``created`` (recorded, not started yet), ``running`` (the
``pybuild run`` process that owns it is alive: its PID and start time are recorded, so a
reused PID is not mistaken for it) and ``exited`` (with the exit code). A run process that
died without recording its end (SIGKILL) leaves a record that reads as exited with 255.

Records are written to a temporary file and renamed into place, so a reader never sees half
of one. The snapshot keeps the image's committed layers alive (a prune keeps the parents of
every active snapshot); :func:`container_roots` keeps the image's blobs too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.errors import FailedPrecondition, InvalidArgument, LayerstoreError, NotFound
from layerstore.oci import Descriptor, ImageConfig

__all__ = [
    "SNAPSHOT_PREFIX",
    "Container",
    "ContainerStore",
    "NoSuchContainer",
    "generate_name",
    "process_alive",
    "process_start",
]

SNAPSHOT_PREFIX = "container-"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_ADJECTIVES = (
    "amber", "brave", "calm", "clever", "cosmic", "crisp", "daring", "eager", "fancy",
    "gentle", "golden", "happy", "humble", "jolly", "keen", "kind", "lively", "lucid",
    "merry", "mighty", "nimble", "noble", "patient", "polite", "proud", "quiet", "rapid",
    "serene", "sharp", "shiny", "silent", "steady", "sunny", "swift", "tender", "tidy",
    "vivid", "wise", "witty", "zealous",
)
_NOUNS = (
    "falcon", "otter", "heron", "lynx", "badger", "beaver", "bison", "condor", "crane",
    "dolphin", "eagle", "ferret", "finch", "gecko", "gibbon", "hawk", "ibis", "jaguar",
    "koala", "lemur", "magpie", "marten", "newt", "ocelot", "osprey", "panda", "puffin",
    "quokka", "raven", "salmon", "seal", "sparrow", "stork", "tapir", "toucan", "turtle",
    "walrus", "weasel", "wren", "yak",
)


class NoSuchContainer(BuildError):
    """No container has the given name or ID."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"No such container: {ref}")
        self.ref = ref


@dataclass(frozen=True)
class Container:
    """One container's record; see the module docstring for the states."""

    id: str
    name: str
    image: str
    image_id: str
    manifest: Descriptor
    path: str
    args: tuple[str, ...]
    config: ImageConfig
    created: str
    state: str = "created"
    pid: int = 0
    pid_start: int = 0
    started_at: str = ""
    finished_at: str = ""
    exit_code: int = 0
    rootfs: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the ID, as docker shows it."""
        return self.id[:12]

    @property
    def snapshot(self) -> str:
        """The key of the container's active snapshot."""
        return SNAPSHOT_PREFIX + self.id

    @property
    def running(self) -> bool:
        """Whether the ``pybuild run`` process of the container is alive."""
        return self.state == "running" and process_alive(self.pid, self.pid_start)

    @property
    def status(self) -> str:
        """``created``, ``running`` or ``exited`` as it is now (a dead owner means exited)."""
        if self.state == "running" and not self.running:
            return "exited"
        return self.state

    @property
    def exit_status(self) -> int:
        """The exit code; 255 for a run whose process died without recording one."""
        if self.state == "running" and not self.running:
            return 255
        return self.exit_code

    @property
    def command(self) -> tuple[str, ...]:
        """The argv the container runs."""
        return (self.path, *self.args) if self.path else self.args

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON data."""
        return {
            **self.extra, "Id": self.id, "Name": self.name, "Image": self.image,
            "ImageID": self.image_id, "Manifest": self.manifest.to_dict(), "Path": self.path,
            "Args": list(self.args), "Config": self.config.to_dict(), "Created": self.created,
            "State": {"Status": self.state, "Pid": self.pid, "PidStart": self.pid_start,
                      "StartedAt": self.started_at, "FinishedAt": self.finished_at,
                      "ExitCode": self.exit_code},
            "Rootfs": self.rootfs,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Container:
        """Parse a record; InvalidArgument naming ``where`` when it is damaged."""
        try:
            state = data["State"]
            known = {"Id", "Name", "Image", "ImageID", "Manifest", "Path", "Args", "Config",
                     "Created", "State", "Rootfs"}
            return cls(
                id=str(data["Id"]), name=str(data["Name"]), image=str(data["Image"]),
                image_id=str(data["ImageID"]),
                manifest=Descriptor.from_dict(data["Manifest"], f"{where}: Manifest"),
                path=str(data["Path"]), args=tuple(str(a) for a in data["Args"]),
                config=ImageConfig.from_dict(data["Config"], f"{where}: Config"),
                created=str(data["Created"]), state=str(state["Status"]),
                pid=int(state["Pid"]), pid_start=int(state["PidStart"]),
                started_at=str(state["StartedAt"]), finished_at=str(state["FinishedAt"]),
                exit_code=int(state["ExitCode"]), rootfs=str(data.get("Rootfs", "")),
                extra={k: v for k, v in data.items() if k not in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"{where}: damaged container record ({exc})") from None


def _now() -> str:
    """This moment in RFC 3339 with microseconds (a fixed width, so records sort by it)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def process_start(pid: int) -> int:
    """The start time (clock ticks after boot) of process ``pid``; 0 when it has ended."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return 0
    fields = raw[raw.rfind(b")") + 2:].split()
    if len(fields) <= 19 or fields[0] in (b"Z", b"X"):
        return 0  # gone, or a zombie waiting for its parent to reap it
    return int(fields[19])


def process_alive(pid: int, start: int) -> bool:
    """Whether process ``pid`` exists and is the one that started at ``start``."""
    return pid > 0 and process_start(pid) == start and start != 0


def generate_name(taken: set[str]) -> str:
    """A random ``adjective_noun`` name not in ``taken`` (a number appended if need be)."""
    for attempt in range(1000):
        name = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
        if attempt > 50:
            name += str(secrets.randbelow(100))
        if name not in taken:
            return name
    raise BuildError("cannot find an unused container name; give one with --name")


class ContainerStore:
    """The container records under a store root (``containers/``)."""

    def __init__(self, store: BuildStore) -> None:
        self.store = store
        self.dir = store.root / "containers"

    def _path(self, container_id: str) -> Path:
        return self.dir / f"{container_id}.json"

    def list(self) -> list[Container]:
        """Every container, newest first; a damaged record is reported on stderr and
        left out."""
        import sys

        out = []
        if not self.dir.is_dir():
            return []
        for path in self.dir.glob("*.json"):
            try:
                out.append(self._read(path))
            except FileNotFoundError:
                continue
            except LayerstoreError as exc:
                print(f"WARNING: {exc}", file=sys.stderr)
        return sorted(out, key=lambda c: (c.created, c.id), reverse=True)

    def _read(self, path: Path) -> Container:
        raw = path.read_bytes()
        try:
            data = json.loads(raw)
        except ValueError:
            raise InvalidArgument(f"{path}: damaged container record (not JSON)") from None
        return Container.from_dict(data, str(path))

    def get(self, ref: str) -> Container:
        """The container ``ref`` names: its full ID, its name (with or without the leading
        ``/``), or a unique prefix of its ID, as docker looks them up."""
        containers = self.list()
        name = ref.removeprefix("/")
        for c in containers:
            if c.id == ref or c.name == name:
                return c
        if ref and re.fullmatch(r"[0-9a-f]+", ref):
            found = [c for c in containers if c.id.startswith(ref)]
            if len(found) > 1:
                raise BuildError(f"multiple IDs found with provided prefix: {ref}")
            if found:
                return found[0]
        raise NoSuchContainer(ref)

    def create(self, *, name: str | None, image: str, image_id: str, manifest: Descriptor,
               argv: Sequence[str], config: ImageConfig) -> Container:
        """Record a new container (state ``created``) with a fresh ID and ``name`` (a
        generated one when None); BuildError when the name is malformed or in use."""
        existing = self.list()
        if name is not None:
            if not _NAME_RE.match(name):
                raise BuildError(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-]"
                                 " are allowed")
            for c in existing:
                if c.name == name:
                    raise BuildError(
                        f'Conflict. The container name "/{name}" is already in use by container '
                        f'"{c.id}". You have to remove (or rename) that container to be able '
                        "to reuse that name.")
        else:
            name = generate_name({c.name for c in existing})
        container_id = secrets.token_hex(32)
        container = Container(
            id=container_id, name=name, image=image, image_id=image_id, manifest=manifest,
            path=argv[0] if argv else "", args=tuple(argv[1:]), config=config,
            created=_now())
        self.save(container)
        return container

    def save(self, container: Container) -> None:
        """Write ``container``'s record atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(container.id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(container.to_dict(), indent=1, sort_keys=True))
        os.replace(tmp, path)

    def started(self, container: Container, rootfs: Path) -> Container:
        """Record that this process runs ``container`` with its root mounted at ``rootfs``."""
        pid = os.getpid()
        now = replace(container, state="running", pid=pid, pid_start=process_start(pid),
                      started_at=_now(), rootfs=str(rootfs))
        self.save(now)
        return now

    def finished(self, container: Container, exit_code: int) -> Container:
        """Record that ``container`` ended with ``exit_code``."""
        now = replace(container, state="exited", pid=0, pid_start=0, exit_code=exit_code,
                      finished_at=_now(), rootfs="")
        self.save(now)
        return now

    def log_path(self, container: Container) -> Path:
        """Where the output of a detached run of ``container`` goes."""
        return self.dir / f"{container.id}.log"

    def delete(self, container: Container) -> None:
        """Forget ``container``: its record and log (the caller removes its snapshot
        first)."""
        for path in (self._path(container.id), self.log_path(container)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def manifests(self) -> Iterator[Descriptor]:
        """The image manifests the containers were made from."""
        for c in self.list():
            yield c.manifest


STOP_TIMEOUT = 10.0
"""Seconds ``rm -f`` waits for a killed container's run to end."""


def remove_container(store: BuildStore, container: Container, *, force: bool) -> None:
    """Remove ``container`` (snapshot, record, log): with ``force`` kill its run first
    (SIGKILL, as ``docker rm -f``), else refuse a running one."""
    if container.running:
        if not force:
            raise BuildError(f'cannot remove container "/{container.name}": container is '
                             "running: stop the container before removing or force remove")
        _kill(container)
    try:
        store.snapshots.remove(container.snapshot)
    except NotFound:
        pass
    except FailedPrecondition as exc:
        raise BuildError(f"cannot remove container {container.name}: {exc}") from None
    ContainerStore(store).delete(container)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        ppid = int(raw[raw.rfind(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill(container: Container) -> None:
    """SIGKILL the container's processes, then wait for its run to record the end (its run
    process is killed too when it does not end in time)."""
    for pid in _descendants(container.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT
    while process_alive(container.pid, container.pid_start):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(container.pid, signal.SIGKILL)
            time.sleep(0.5)
            break
        time.sleep(0.05)
