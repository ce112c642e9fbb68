"""What each repository of a project holds, for the project's usage chart: the distinct
manifests and blobs it holds (a digest once per repository; a digest shared by two
repositories counts in both, so the rows may add up to more than the project's usage,
which counts it once). Read from the metadata store the registry serves from."""

from __future__ import annotations

from dataclasses import dataclass

from layerstore.digest import Digest
from registry.metadata.store import MetadataStore

PAGE = 200


@dataclass(frozen=True)
class RepositoryUsage:
    """A repository's bytes (manifests and the blobs they reference) and manifests."""

    name: str
    bytes: int
    manifests: int


def project_repositories(meta: MetadataStore, project: str, limit: int) -> tuple[list[str],
                                                                                  bool]:
    """The first ``limit`` repositories of ``project`` by name, and whether there are more."""
    prefix = project + "/"
    found: list[str] = []
    last = prefix
    while True:
        names = meta.repositories(last=last, n=PAGE)
        for name in names:
            if not name.startswith(prefix):
                return found, False
            if len(found) == limit:
                return found, True
            found.append(name)
        if len(names) < PAGE:
            return found, False
        last = names[-1]


def repository_usage(meta: MetadataStore, repository: str) -> RepositoryUsage:
    """What ``repository`` holds (see the module docstring)."""
    sizes: dict[Digest, int] = {}
    wanted: set[Digest] = set()
    count = 0
    for record in meta.manifests(repository):
        count += 1
        sizes[record.digest] = record.size
        wanted.update(record.references)
    for digest in wanted - sizes.keys():
        size = meta.blob_size(repository, digest)
        if size is not None:
            sizes[digest] = size
    return RepositoryUsage(repository, sum(sizes.values()), count)


def usage_by_repository(meta: MetadataStore, project: str, limit: int = 40
                        ) -> tuple[list[RepositoryUsage], bool]:
    """The usage of the project's first ``limit`` repositories, largest first, and whether
    the project has more repositories than were counted."""
    names, more = project_repositories(meta, project, limit)
    rows = [repository_usage(meta, name) for name in names]
    rows.sort(key=lambda r: (-r.bytes, r.name))
    return rows, more
