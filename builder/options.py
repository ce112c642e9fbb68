"""What one build is asked to do: the values behind ``pybuild build``'s flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from builder.attestations.request import AttestRequest
from builder.entitlements import Entitlements
from builder.limits import Limits

if TYPE_CHECKING:
    from builder.buildcontexts import NamedContext
    from builder.executor.protocol import ExtraHost
    from builder.remotecache import CacheSpec
    from builder.runmounts import SecretSource
    from builder.sshforward import SshSource
    from layerstore.oci import Platform


@dataclass(frozen=True)
class BuildOptions:
    """A build request.

    ``dockerfile_text`` is the Dockerfile's content and ``dockerfile_name`` how errors name it;
    ``dockerfile_path`` (None when read from stdin) is where ``<Dockerfile>.dockerignore`` is
    looked for. ``source_date_epoch`` clamps layer timestamps and dates the image and its
    history, making builds reproducible. ``compression_level`` is the compressor's own level
    for new layers (None: its default). ``limits`` are the resource limits of every RUN step
    (they change neither cache keys nor the image). ``platform`` is the one target platform
    (None: this machine's); ``platforms`` lists two or more for a multi-platform build.
    ``build_contexts`` are the named contexts of ``--build-context``, by name; ``ssh`` the
    agents of ``--ssh``, by id; ``annotations`` those of ``--annotation``, put on the image
    manifests, and ``index_annotations`` those for the index of a multi-platform build.
    ``attest`` is the SBOM and provenance asked for (see :mod:`builder.attestations`).
    """

    context: Path
    dockerfile_text: str
    dockerfile_name: str = "Dockerfile"
    dockerfile_path: Path | None = None
    tags: tuple[str, ...] = ()
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, SecretSource] = field(default_factory=dict)
    platform: Platform | None = None
    platforms: tuple[Platform, ...] = ()
    """Several target platforms: one image each, stored and pushed as one index."""
    compression: str = "gzip"
    compression_level: int | None = None
    source_date_epoch: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    network: str = "default"
    allow: Entitlements = field(default_factory=Entitlements)
    limits: Limits = field(default_factory=Limits)
    extra_hosts: tuple[ExtraHost, ...] = ()
    no_cache: bool = False
    no_cache_filter: tuple[str, ...] = ()
    cache_from: tuple[CacheSpec, ...] = ()
    cache_to: tuple[CacheSpec, ...] = ()
    build_contexts: Mapping[str, NamedContext] = field(default_factory=dict)
    ssh: Mapping[str, SshSource] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    index_annotations: Mapping[str, str] = field(default_factory=dict)
    attest: AttestRequest = field(default_factory=AttestRequest)
