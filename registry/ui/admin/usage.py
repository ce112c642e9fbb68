"""What each repository of a project holds, for the project's usage chart: the distinct
blobs it links and manifests it holds (a digest once per repository; a digest shared by two
repositories counts in both, so the rows may add up to more than the project's usage,
which counts it once), one metadata query a repository. Read from the metadata store the
registry serves from."""

from __future__ import annotations

from dataclasses import dataclass

from registry.metadata.store import MetadataStore

PAGE = 200


@dataclass(frozen=True)
class RepositoryUsage:
    """The bytes a repository holds."""

    name: str
    bytes: int


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


def usage_by_repository(meta: MetadataStore, project: str, limit: int = 40
                        ) -> tuple[list[RepositoryUsage], bool]:
    """The usage of the project's first ``limit`` repositories, largest first, and whether
    the project has more repositories than were counted."""
    names, more = project_repositories(meta, project, limit)
    rows = [RepositoryUsage(name, meta.repository_usage(name)) for name in names]
    rows.sort(key=lambda r: (-r.bytes, r.name))
    return rows, more
