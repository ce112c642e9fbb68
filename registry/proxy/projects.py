"""Proxy-cache projects (Harbor's): a project created with ``--proxy URL`` serves
``PROJECT/<repository>`` from ``<repository>`` of that upstream, with the caching rules of
mirror mode, next to the registry's own projects.

A project's upstream is kept through the storage driver at ``proxy/projects/<name>.json``
(``{"url", "username", "password", "created_at"}``), where every server process and
replica sees it. The record holds the project's creation time: a record left behind by a
deleted project of the same name does not apply to a new one.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry.config import Settings
from registry.projects.model import Project, ProjectInvalid
from registry.projects.store import ProjectStore
from registry.proxy.errors import UpstreamInvalid, UpstreamRefused, UpstreamUnavailable
from registry.proxy.settings import ProxyUrlError, check_upstream_url
from registry.storage.driver import StorageDriver
from registry.storage.errors import PathNotFound, StorageError

if TYPE_CHECKING:
    from registry.proxy.upstream import Upstream

#: How long a server process trusts what it read of a project's upstream.
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class ProjectProxy:
    """The upstream of a proxy-cache project."""

    url: str
    username: str = ""
    password: str = ""
    created_at: float = 0.0

    def __repr__(self) -> str:
        return f"ProjectProxy(url={self.url!r}, username={self.username!r}, password=***)"


def record_path(project: str) -> str:
    """The driver path of a project's upstream record."""
    return f"proxy/projects/{project}.json"


def check_proxy_url(url: str) -> str:
    """The normalised ``--proxy`` URL; ProjectInvalid naming the flag otherwise."""
    try:
        return check_upstream_url(url)
    except ProxyUrlError as exc:
        raise ProjectInvalid(f"--proxy: {exc}") from None


def read_proxy(driver: StorageDriver, project: Project) -> ProjectProxy | None:
    """The upstream of ``project``, if it is a proxy-cache project."""
    try:
        doc = json.loads(driver.get_content(record_path(project.name)))
        found = ProjectProxy(str(doc["url"]), str(doc.get("username", "")),
                             str(doc.get("password", "")), float(doc["created_at"]))
    except (PathNotFound, ValueError, KeyError, TypeError):
        return None
    return found if abs(found.created_at - project.created_at) < 1e-3 else None


def write_proxy(driver: StorageDriver, project: Project, proxy: ProjectProxy) -> None:
    """Make ``project`` a proxy-cache project of ``proxy.url``."""
    doc = {"url": proxy.url, "username": proxy.username, "password": proxy.password,
           "created_at": project.created_at}
    driver.put_content(record_path(project.name), json.dumps(doc).encode())


def check_project_upstream(proxy: ProjectProxy, project: str,
                           warn: Callable[[str], None]) -> None:
    """Reach a project's upstream once: ProjectInvalid naming ``--proxy`` when it is no
    registry, does not resolve or refuses the credentials; ``warn`` when it cannot be
    reached now."""
    from registry.proxy.upstream import Upstream

    upstream = Upstream(proxy.url, username=proxy.username, password=proxy.password,
                        setting=f"--proxy of project {project}")
    try:
        upstream.check()
    except UpstreamUnavailable as exc:
        text = str(exc)
        if "not known" in text or "resolve" in text or "No address" in text:
            raise ProjectInvalid(text) from None
        warn(f"{text}; the project serves what it caches once it answers")
    except (UpstreamRefused, UpstreamInvalid) as exc:
        raise ProjectInvalid(str(exc)) from None
    finally:
        upstream.close()


class ProjectRouter:
    """Finds the upstream of a repository of a proxy-cache project: ``PROJECT/rest`` is
    ``rest`` there. Looks are cached for :data:`CACHE_SECONDS`; one :class:`Upstream` per
    project and configuration."""

    def __init__(self, settings: Settings, store: ProjectStore, driver: StorageDriver) -> None:
        self.settings = settings
        self.store = store
        self.driver = driver
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, ProjectProxy | None]] = {}
        self._upstreams: dict[tuple[str, ProjectProxy], Upstream] = {}

    def _proxy_of(self, project: str) -> ProjectProxy | None:
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(project)
        if seen is not None and now - seen[0] < CACHE_SECONDS:
            return seen[1]
        found = None
        try:
            record = self.store.get(project)
            if record is not None:
                found = read_proxy(self.driver, record)
        except StorageError:
            found = seen[1] if seen is not None else None
        with self._lock:
            self._seen[project] = (now, found)
        return found

    def __call__(self, name: str) -> tuple[Upstream, str] | None:
        """The upstream of repository ``name`` and its name there, or ``None``."""
        project, sep, rest = name.partition("/")
        if not sep:
            return None
        proxy = self._proxy_of(project)
        if proxy is None:
            return None
        key = (project, proxy)
        with self._lock:
            upstream = self._upstreams.get(key)
            if upstream is None:
                from registry.proxy.upstream import Upstream

                upstream = Upstream(proxy.url, username=proxy.username,
                                    password=proxy.password,
                                    setting=f"--proxy of project {project}")
                self._upstreams[key] = upstream
        return upstream, rest

    def close(self) -> None:
        """Close the upstream connections."""
        with self._lock:
            for upstream in self._upstreams.values():
                upstream.close()
            self._upstreams.clear()


# ``registry project create NAME --proxy URL``.


def add_proxy_flags(create: argparse.ArgumentParser) -> None:
    """The ``--proxy`` flags of ``registry project create``."""
    create.add_argument("--proxy", metavar="URL",
                        help="make it a proxy-cache project of the registry at URL: "
                             "NAME/REPOSITORY serves REPOSITORY of that registry")
    create.add_argument("--proxy-username", metavar="USER", default="",
                        help="user name for the upstream (with --proxy-password-stdin)")
    create.add_argument("--proxy-password-stdin", action="store_true",
                        help="read the upstream password from standard input")


def proxy_of_args(args: argparse.Namespace) -> ProjectProxy | None:
    """The upstream ``--proxy`` asks for, checked (before the project is created);
    ProjectInvalid naming the flag when it is malformed or the upstream refuses."""
    url = getattr(args, "proxy", None)
    username = getattr(args, "proxy_username", "") or ""
    from_stdin = bool(getattr(args, "proxy_password_stdin", False))
    if not url:
        if username or from_stdin:
            raise ProjectInvalid("--proxy-username and --proxy-password-stdin need --proxy")
        return None
    password = sys.stdin.readline().rstrip("\r\n") if from_stdin else ""
    if bool(username) != bool(password):
        raise ProjectInvalid("--proxy-username and --proxy-password-stdin go together")
    proxy = ProjectProxy(check_proxy_url(url), username, password)
    check_project_upstream(proxy, args.name,
                           lambda text: print(f"registry project: warning: {text}",
                                              file=sys.stderr))
    return proxy


def proxy_of_body(url: str | None, username: str, password: str) -> ProjectProxy | None:
    """The upstream a management API request asks for, its URL checked (ProjectInvalid
    naming ``proxy`` otherwise); the upstream itself is checked by :func:`attach_checked`
    once the caller was found allowed to create the project."""
    if not url:
        if username or password:
            raise ProjectInvalid("proxy_username and proxy_password need proxy")
        return None
    if bool(username) != bool(password):
        raise ProjectInvalid("proxy_username and proxy_password go together")
    try:
        return ProjectProxy(check_upstream_url(url), username, password)
    except ProxyUrlError as exc:
        raise ProjectInvalid(f"proxy: {exc}") from None


def attach_checked(driver: StorageDriver, project: Project, proxy: ProjectProxy) -> None:
    """Check a new project's upstream (ProjectInvalid if it is no registry, does not
    resolve or refuses the credentials) and record it."""
    check_project_upstream(proxy, project.name, lambda text: None)
    write_proxy(driver, project, proxy)


def attach_proxy(settings: Settings, project: Project, proxy: ProjectProxy) -> None:
    """Record the upstream of a project just created."""
    from registry.storage.backends import storage_driver

    write_proxy(storage_driver(settings), project, proxy)
    print(f"registry: project {project.name!r} is a proxy cache of {proxy.url}: pull "
          f"{project.name}/REPOSITORY for REPOSITORY there")


def show_proxy(settings: Settings, project: Project) -> None:
    """Print a proxy-cache project's upstream (``registry project show``)."""
    from registry.storage.backends import storage_driver

    proxy = read_proxy(storage_driver(settings), project)
    if proxy is not None:
        user = f" (as {proxy.username})" if proxy.username else ""
        print(f"  proxy cache of: {proxy.url}{user}")
