"""Typed ``RUN --mount`` values and their one parser.

:func:`parse_mount` turns the (expanded) value of one ``--mount`` flag into a
:class:`CacheMount`, :class:`BindSpec`, :class:`TmpfsSpec`, :class:`SecretSpec` or
:class:`SshSpec`, as BuildKit's
Dockerfile frontend reads it. The graph compiler calls it while it compiles a RUN, so a bad
mount is reported with its Dockerfile line before anything runs; :func:`mount_option` reads one
option with the same tokenizer (the planner uses it to find ``from=`` stage references).
"""

from __future__ import annotations

import csv
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from builder.errors import DockerfileError

Sharing = Literal["shared", "private", "locked"]
_SHARING: dict[str, Sharing] = {"shared": "shared", "private": "private", "locked": "locked"}


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


@dataclass(frozen=True)
class SshSpec:
    """``type=ssh``: the SSH agent (or keys) given to the build as ``--ssh id`` as a socket
    at ``target`` (``/run/buildkit/ssh_agent.N`` when None, N counting the step's ssh
    mounts), owned by ``uid``:``gid`` with ``mode``. The first one of a step is also
    ``SSH_AUTH_SOCK``. An agent not given to the build is an error unless the mount says
    ``required=false`` (None: not said), which leaves the mount out."""

    id: str = "default"
    target: str | None = None
    required: bool | None = None
    mode: int = 0o600
    uid: int = 0
    gid: int = 0


RunMount = CacheMount | BindSpec | TmpfsSpec | SecretSpec | SshSpec

_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
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
    "ssh": {"target", "id", "required", "mode", "uid", "gid"},
}
_FLAGS = {"readonly": "true", "readwrite": "true", "required": "true"}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kKmMgGtTpP])?[iI]?[bB]?")


def _fields(text: str, fail: Callable[[str], DockerfileError]) -> list[str]:
    """The comma-separated ``key[=value]`` fields of a ``--mount`` value (CSV quoting)."""
    try:
        return next(csv.reader([text]), [])
    except csv.Error as exc:
        raise fail(f"cannot parse the mount options ({exc})") from None


def mount_option(text: str, name: str, *, line: int | None,
                 file: str = "Dockerfile") -> str | None:
    """The value of option ``name`` (its canonical spelling: ``from``, ``target``, …) in
    one ``--mount`` value, or None; aliases such as ``dst`` count."""

    def fail(message: str) -> DockerfileError:
        return DockerfileError(f"--mount={text}: {message}", line, file)

    found = None
    for field in _fields(text, fail):
        key, eq, value = field.partition("=")
        if eq and _ALIASES.get(key.strip().lower()) == name:
            found = value.strip() or None
    return found


def parse_mount(text: str, *, line: int | None, file: str = "Dockerfile",
                workdir: str = "/") -> RunMount:
    """Parse the (already expanded) value of one ``RUN --mount`` flag, such as
    ``type=cache,target=/root/.cache,id=pip,sharing=locked``.

    A relative target is taken relative to ``workdir``. Raises
    :class:`~builder.errors.DockerfileError` at ``file``:``line`` for an unknown type or key,
    a key that the type does not take, a bad value or a missing target."""

    def fail(message: str) -> DockerfileError:
        return DockerfileError(f"--mount={text}: {message}", line, file)

    fields = _fields(text, fail)
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
    if kind not in _TYPES:
        raise fail(f"unknown mount type {kind!r} (expected one of {', '.join(_TYPES)})")
    for name in options:
        if name not in _ALLOWED[kind]:
            raise fail(f"option {keys[name]!r} is not valid for {kind} mounts")
    value_of = _Values(options, fail)
    target = value_of.target(workdir)
    if kind == "secret":
        return _secret_spec(options, value_of, target, fail)
    if kind == "ssh":
        required = value_of.boolean("required", False) if "required" in options else None
        return SshSpec(options.get("id") or "default", target, required, value_of.mode(0o600),
                       value_of.number("uid"), value_of.number("gid"))
    if target is None:
        raise fail("a target is required")
    from_ = options.get("from") or None
    if kind == "bind":
        return BindSpec(target, options.get("source", "/"), from_, writable is True)
    if kind == "tmpfs":
        return TmpfsSpec(target, value_of.size())
    sharing = _SHARING.get(options.get("sharing", "shared").lower())
    if sharing is None:
        raise fail(f"invalid sharing {options['sharing']!r} (expected shared, private or locked)")
    return CacheMount(target, options.get("id", ""), sharing,
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


