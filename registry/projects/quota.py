"""Per-project storage quotas, checked before the bytes of a push are kept.

A project's usage is the size of the distinct blobs and manifests its repositories hold (a
digest shared by several of its repositories counts once; what a repository no longer
references counts until ``registry gc`` removes it). A push that would take the usage over
the quota is refused:

* when an upload *announces* its length (``Content-Length`` of a ``POST``, ``PATCH`` or the
  closing ``PUT``) and usage plus that length exceeds the quota: at once, before a byte is
  read, with **413 SIZE_INVALID** (as for any upload announcing more than the registry will
  take);
* when an upload session is opened while the project's usage has reached its quota: at
  once, **403 DENIED** (a mount of a digest the project holds still passes);
* when a blob is about to be committed (the closing ``PUT``, a monolithic ``POST``), mounted
  from another repository, or a manifest is about to be stored, and the project does not
  hold that digest yet and it would not fit: with **403 DENIED**, the code Harbor answers
  too (clients do not retry it; docker prints its message). The upload's bytes are
  discarded.

Messages name the project, its quota, its usage and what the push would add; every refusal
is also passed to the :attr:`QuotaGuard.listeners` as a :class:`QuotaExceeded` (for the
``quota-exceeded`` webhook event and the audit log), in a worker thread. Concurrent
pushes to one project are checked independently, so together they may pass the quota by
at most what they add at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from layerstore.digest import Digest
from registry.errors import DENIED, SIZE_INVALID, RegistryError
from registry.projects.model import Usage, format_size
from registry.projects.policy import ProjectEntry, ProjectRoles

TOO_LARGE = 413
log = logging.getLogger("registry.projects")


@dataclass(frozen=True)
class QuotaExceeded:
    """A push refused for its project's quota (what :attr:`QuotaGuard.listeners` get)."""

    project: str
    repository: str
    quota: int
    usage: int
    adding: int
    digest: str | None = None


class UsageSource(Protocol):
    """What a quota check asks the metadata store (a part of
    :class:`~registry.metadata.store.MetadataStore`)."""

    def namespace_usage(self, namespace: str) -> tuple[int, int]:
        """``(repositories, bytes)`` under ``namespace/``."""
        ...

    def namespace_holds(self, namespace: str, digest: Digest) -> bool:
        """Whether ``namespace/`` holds ``digest``."""
        ...


def quota_message(project: str, quota: int, usage: int, adding: int, what: str) -> str:
    """The one-line refusal of a push over quota."""
    return (f"quota exceeded: project {project} has a quota of {format_size(quota)} and uses "
            f"{format_size(usage)}; {what} of {format_size(adding)} would take it to "
            f"{format_size(usage + adding)}")


def _detail(repository: str, project: str, quota: int, usage: int, adding: int,
            digest: Digest | None = None) -> dict[str, object]:
    detail: dict[str, object] = {"repository": repository, "project": project,
                                 "quota": quota, "usage": usage, "adding": adding}
    if digest is not None:
        detail["digest"] = str(digest)
    return detail


class QuotaGuard:
    """The quota checks of the upload and manifest handlers (module docstring)."""

    def __init__(self, roles: ProjectRoles, usage: UsageSource) -> None:
        self.roles = roles
        self.usage_source = usage
        self.listeners: list[Callable[[QuotaExceeded], None]] = []

    def _refused(self, err: RegistryError) -> RegistryError:
        """Tell the listeners (webhooks, the audit log) about a refusal; ``err``."""
        d = err.entries[0].detail
        event = QuotaExceeded(d["project"], d["repository"], d["quota"], d["usage"],
                              d["adding"], d.get("digest"))
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a quota listener failed on %s", event)
        return err

    def limited(self, repository: str) -> ProjectEntry | None:
        """The project of ``repository`` if it has a quota (a lookup in memory)."""
        entry = self.roles.of_repository(repository)
        return entry if entry is not None and entry.project.quota is not None else None

    def usage(self, project: str) -> Usage:
        """What ``project``'s repositories hold now."""
        repositories, size = self.usage_source.namespace_usage(project)
        return Usage(repositories, size)

    def _check_announced(self, entry: ProjectEntry, repository: str, length: int) -> None:
        quota = entry.project.quota
        assert quota is not None
        used = self.usage(entry.project.name).bytes
        if used + length > quota:
            name = entry.project.name
            raise self._refused(RegistryError(
                SIZE_INVALID, quota_message(name, quota, used, length,
                                            f"an upload to {repository} announcing"),
                status=TOO_LARGE, detail=_detail(repository, name, quota, used, length),
                headers={"Connection": "close"}))

    def _check_adding(self, entry: ProjectEntry, repository: str, digest: Digest | None,
                      size: int, what: str) -> None:
        quota = entry.project.quota
        assert quota is not None
        name = entry.project.name
        if digest is not None and self.usage_source.namespace_holds(name, digest):
            return
        used = self.usage(name).bytes
        if used + size > quota:
            raise self._refused(RegistryError(
                DENIED, quota_message(name, quota, used, size, what),
                detail=_detail(repository, name, quota, used, size, digest)))

    async def check_announced(self, repository: str, length: int | None,
                              start: int | None = None) -> None:
        """Refuse (413 SIZE_INVALID) an upload to ``repository`` announcing ``length`` more
        bytes (from ``start``) than its project's quota leaves; ``None`` passes."""
        entry = self.limited(repository)
        if entry is None or not length:
            return
        total = (start or 0) + length
        await asyncio.get_running_loop().run_in_executor(
            None, self._check_announced, entry, repository, total)

    async def check_adding(self, repository: str, digest: Digest | None, size: int,
                           what: str = "the blob") -> None:
        """Refuse (403 DENIED) storing ``size`` bytes of ``digest`` in ``repository`` when
        its project does not hold the digest yet and it would not fit."""
        entry = self.limited(repository)
        if entry is None:
            return
        label = f"{what} {digest}" if digest is not None else what
        await asyncio.get_running_loop().run_in_executor(
            None, self._check_adding, entry, repository, digest, size, label)

    def _check_full(self, entry: ProjectEntry, repository: str) -> None:
        quota = entry.project.quota
        assert quota is not None
        name = entry.project.name
        used = self.usage(name).bytes
        if used >= quota:
            raise self._refused(RegistryError(
                DENIED, f"quota exceeded: project {name} has a quota of {format_size(quota)} "
                f"and uses {format_size(used)}: it is full, no new upload is taken",
                detail=_detail(repository, name, quota, used, 0)))

    async def check_full(self, repository: str) -> None:
        """Refuse (403 DENIED) to open an upload session in ``repository`` when its
        project's quota is used up already (fail fast, before the client sends bytes)."""
        entry = self.limited(repository)
        if entry is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, self._check_full, entry, repository)

    async def holds(self, repository: str, digest: Digest) -> bool | None:
        """Whether the quota-limited project of ``repository`` holds ``digest`` (``None``:
        no quota applies)."""
        entry = self.limited(repository)
        if entry is None:
            return None
        return await asyncio.get_running_loop().run_in_executor(
            None, self.usage_source.namespace_holds, entry.project.name, digest)
