"""The SLSA provenance v1 predicate of a build, in the shape BuildKit gives it.

``mode=min`` records what identifies the build without its parameters' values: the builder,
the Dockerfile's and the context's digests, the base images by digest, the build's times.
``mode=max`` adds the build arguments, the target and the git commit (and remote) of the
context. Secrets are never recorded, in any mode: neither ``--secret`` values nor a git
remote's credentials.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from layerstore.digest import Digest
from layerstore.oci import Platform

__all__ = ["BUILD_TYPE", "PROVENANCE_V1", "BaseImage", "BuildFacts", "GitSource",
           "default_builder_id", "git_source", "provenance_predicate"]

PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
#: The build type whose ``externalParameters`` this predicate follows (BuildKit's
#: definitions: ``request.frontend``, ``request.args``, ``request.locals``).
BUILD_TYPE = "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"


@dataclass(frozen=True)
class BaseImage:
    """A base image the build used: the reference the Dockerfile gave, the platform and the
    digest it resolved to."""

    ref: str
    platform: Platform
    digest: Digest


@dataclass(frozen=True)
class GitSource:
    """The git commit (and, with its credentials removed, the remote) of the context."""

    revision: str
    source: str | None = None


@dataclass(frozen=True)
class BuildFacts:
    """What the provenance of one build states."""

    builder_id: str
    builder_platform: Platform
    dockerfile_name: str
    dockerfile_digest: Digest
    context_digest: Digest | None
    bases: tuple[BaseImage, ...]
    started: str
    finished: str
    invocation_id: str
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    platform: Platform | None = None
    git: GitSource | None = None


def default_builder_id() -> str:
    """The builder id when none is given: the CI run's URL where one is known (GitHub
    Actions, GitLab CI), else this builder's package URL."""
    env = os.environ
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    if env.get("CI_JOB_URL"):
        return env["CI_JOB_URL"]
    from importlib.metadata import PackageNotFoundError, version

    try:
        mine = version("pybuild")
    except PackageNotFoundError:
        mine = "unknown"
    return f"pkg:pypi/pybuild@{mine}"


def _without_credentials(url: str) -> str:
    """A remote URL with any ``user:password@`` removed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme and parts.netloc and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
    return url


def git_source(context: Path) -> GitSource | None:
    """The commit checked out in the git work tree holding ``context`` (None when it is not
    in one, or git is not installed)."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(context), *args], capture_output=True,
                                  text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    revision = git("rev-parse", "--verify", "HEAD")
    if revision is None:
        return None
    remote = git("config", "--get", "remote.origin.url")
    return GitSource(revision, _without_credentials(remote) if remote else None)


def _digest_map(digest: Digest) -> dict[str, str]:
    return {digest.algorithm: digest.hex}


def provenance_predicate(facts: BuildFacts, mode: str) -> dict[str, Any]:
    """The SLSA provenance v1 predicate (JSON-ready) for ``mode`` ``min`` or ``max``."""
    args: dict[str, str] = {}
    if mode == "max":
        args.update({f"build-arg:{k}": v for k, v in sorted(facts.build_args.items())})
        if facts.target:
            args["target"] = facts.target
        if facts.git is not None:
            args["vcs:revision"] = facts.git.revision
            if facts.git.source:
                args["vcs:source"] = facts.git.source
    if facts.platform is not None:
        args["platform"] = str(facts.platform)
    dependencies: list[dict[str, Any]] = [
        {"uri": _purl(base), "digest": _digest_map(base.digest)} for base in facts.bases]
    if facts.context_digest is not None:
        dependencies.append({"uri": "local://context", "name": "context",
                             "digest": _digest_map(facts.context_digest)})
    metadata: dict[str, Any] = {
        "invocationId": facts.invocation_id,
        "startedOn": facts.started,
        "finishedOn": facts.finished,
    }
    buildkit_metadata: dict[str, Any] = {}
    if mode == "max" and facts.git is not None:
        vcs = {"revision": facts.git.revision}
        if facts.git.source:
            vcs["source"] = facts.git.source
        buildkit_metadata["vcs"] = vcs
    metadata["buildkit_metadata"] = buildkit_metadata
    metadata["buildkit_completeness"] = {"request": True, "resolvedDependencies": False}
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "configSource": {"path": facts.dockerfile_name,
                                 "digest": _digest_map(facts.dockerfile_digest)},
                "request": {
                    "frontend": "dockerfile.v0",
                    "args": args,
                    "locals": [{"name": "context"}, {"name": "dockerfile"}],
                },
            },
            "internalParameters": {"builderPlatform": str(facts.builder_platform)},
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {"id": facts.builder_id},
            "metadata": metadata,
        },
    }


def _purl(base: BaseImage) -> str:
    from builder.attestations.intoto import image_purl

    return image_purl(base.ref, base.platform)


def unique_bases(bases: Sequence[BaseImage]) -> tuple[BaseImage, ...]:
    """``bases`` without repeats, in a stable order."""
    seen = {(b.ref, str(b.platform), str(b.digest)): b for b in bases}
    return tuple(seen[k] for k in sorted(seen))
