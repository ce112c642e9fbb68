"""The build-level key: a rebuild of unchanged inputs answered with the image stored last time.

The key is a hash of everything that decides a build's result: the Dockerfile, the ignore
file, a digest of the whole context tree (file contents through the persistent
:class:`~builder.solver.contenthash.StatCache`), the build args, target, platforms,
compression, SOURCE_DATE_EPOCH, labels and network mode. Secret values are not in it, as
they are not in the step keys. An entry (``<root>/buildkeys/<key>.json``) records the image
the build made and every image reference the build resolved (FROM, ``COPY --from``, mounts)
with the manifest digest it resolved to.

A lookup re-resolves each of those references (through the registry with ``--pull``) and
answers only when all give the same digests, the image's manifest, config and layers are
still stored and its snapshot still exists; anything else is a miss and the build runs as
usual. The caller still names, exports and pushes the result. Builds with ``--no-cache``,
``--no-cache-filter`` or ``--cache-to``, and builds that may ADD a URL (whose content can
change at any time), never take the short cut.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.solver.contenthash import StatCache, tree_digest

if TYPE_CHECKING:
    from builder.options import BuildOptions
    from builder.progress import Progress
    from builder.solver.images import ImageResolver
    from builder.store import BuildStore
    from layerstore.assembly import StoredImage
    from layerstore.oci import Platform

FORMAT = 1
"""Bumped whenever what a build makes from the same inputs changes."""

_URL = re.compile(r"(?i)\b(?:https?|git)://|git@")
_CONTINUATION = re.compile(r"[\\`][ \t]*\r?\n")
_FROM_STEP = re.compile(r"^\[[^\]]*\] FROM ")


@dataclass(frozen=True)
class Resolved:
    """An image reference a build resolved, for a platform, to a manifest digest."""

    ref: str
    os: str
    architecture: str
    variant: str | None
    digest: str


@dataclass(frozen=True)
class Shortcut:
    """A stored result for unchanged inputs."""

    image: StoredImage
    chain: str | None
    warnings: tuple[str, ...]


def _may_add_url(text: str, values: Sequence[str]) -> bool:
    """Whether an ADD (or ONBUILD ADD) in ``text`` may name a URL: one written in it, or a
    variable while a URL appears anywhere in the file or the build args."""
    url_anywhere = bool(_URL.search(text)) or any(_URL.search(v) for v in values)
    for line in _CONTINUATION.sub(" ", text).splitlines():
        words = line.split(None, 2)
        if words and words[0].upper() == "ONBUILD":
            words = words[1:]
        if words and words[0].upper() == "ADD" and (
                _URL.search(line) or ("$" in line and url_anywhere)):
            return True
    return False


def recordable(options: BuildOptions) -> bool:
    """Whether the result of a build with these options may answer a later build: not when
    an ADD may fetch a URL (its content can change behind the same Dockerfile), nor with
    named contexts (``--build-context``), whose sources this key does not cover."""
    if options.build_contexts:
        return False
    return not _may_add_url(options.dockerfile_text, list(options.build_args.values()))


def eligible(options: BuildOptions) -> bool:
    """Whether a build with these options may take the short cut: it must be recordable and
    ask for no fresh steps (``--no-cache``, ``--no-cache-filter``) and no cache export. Such
    a build still records its result, so the next build answers with the newest image."""
    if options.no_cache or options.no_cache_filter or options.cache_to:
        return False
    return recordable(options)


def _stat_cache_path(store: BuildStore, context: Path) -> Path:
    name = hashlib.sha256(os.fsencode(context)).hexdigest()[:32]
    return store.root / "statcache" / f"{name}.json"


def compute(store: BuildStore, options: BuildOptions, host: Platform) -> str | None:
    """The build-level key of ``options``, or None when the context cannot be read."""
    from builder.frontend.dockerignore import DockerIgnore, find_dockerignore

    ignore_file = find_dockerignore(options.context, options.dockerfile_path or
                                    options.context / "Dockerfile")
    cache = StatCache(_stat_cache_path(store, options.context))
    try:
        ignore_text = ignore_file.read_bytes() if ignore_file is not None else b""
        ignore = DockerIgnore.load(ignore_file)
        context = tree_digest(options.context, ignore, cache)
    except (OSError, UnicodeDecodeError):
        return None
    except Exception as exc:  # a bad ignore file: the build reports it
        from builder.errors import BuildError

        if isinstance(exc, BuildError):
            return None
        raise
    cache.save()
    platform = options.platform or host
    material: dict[str, Any] = {
        "format": FORMAT,
        "dockerfile": options.dockerfile_text,
        "dockerfile_name": options.dockerfile_name,
        "ignore": hashlib.sha256(ignore_text).hexdigest(),
        "context": context,
        "build_args": sorted(options.build_args.items()),
        "target": options.target,
        "platform": [platform.os, platform.architecture, platform.variant],
        "host": [host.os, host.architecture, host.variant],
        "compression": options.compression,
        "compression_level": options.compression_level,
        "source_date_epoch": options.source_date_epoch,
        "labels": sorted(options.labels.items()),
        "network": options.network,
    }
    if options.annotations:
        material["annotations"] = sorted(options.annotations.items())
    if options.extra_hosts:
        material["extra_hosts"] = [[h.name, h.address] for h in options.extra_hosts]
    raw = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()


def _entry_path(store: BuildStore, key: str) -> Path:
    return store.root / "buildkeys" / f"{key}.json"


def lookup(store: BuildStore, key: str, images: ImageResolver,
           progress: Progress) -> Shortcut | None:
    """The stored result of the build ``key`` names when it is still valid, with its steps
    shown as cached on ``progress``; None (a miss) otherwise."""
    from layerstore.assembly import load_image
    from layerstore.digest import Digest
    from layerstore.errors import LayerstoreError
    from layerstore.oci import Descriptor, Manifest, Platform
    from layerstore.walk import load_manifest

    try:
        doc = json.loads(_entry_path(store, key).read_bytes())
        if doc.get("format") != FORMAT:
            return None
        bases = [Resolved(**r) for r in doc["resolved"]]
        manifest = Descriptor.from_dict(doc["manifest"], "build key entry")
        chain = doc["chain"]
        warnings = tuple(str(w) for w in doc["warnings"])
        steps = [(str(n), str(s)) for n, s in doc["steps"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, LayerstoreError):
        return None
    from builder.errors import BuildError

    for base in bases:
        try:
            got = images.resolve(base.ref, Platform(os=base.os, architecture=base.architecture,
                                                    variant=base.variant))
        except (BuildError, LayerstoreError):
            return None
        if str(got.manifest.digest) != base.digest:
            return None
    try:
        image = load_image(store.content, manifest)
        doc_manifest = load_manifest(store.content, manifest)
        if not isinstance(doc_manifest, Manifest):
            return None
        for layer in doc_manifest.layers:
            store.content.info(Digest.parse(str(layer.digest)))
    except (LayerstoreError, OSError, ValueError):
        return None
    if chain is not None:
        from builder.store import snapshot_exists

        if not snapshot_exists(store, chain):
            return None
    for name, status in steps:
        vertex = progress.vertex(name)
        if status == "done" and _FROM_STEP.match(name):
            vertex.done()
        else:
            vertex.cached()
    return Shortcut(image, chain, warnings)


def record(store: BuildStore, key: str, image: StoredImage, chain: str | None,
           warnings: Sequence[str], images: ImageResolver, steps: Sequence[tuple[str, str]]
           ) -> None:
    """Remember what the build ``key`` names made (nothing when the images it resolved
    cannot be listed or carry ONBUILD triggers that may ADD a URL)."""
    resolved_fn = getattr(images, "resolved", None)
    if resolved_fn is None:
        return
    resolved = []
    for ref, platform, stored in resolved_fn():
        config = stored.image.config
        if config is not None and _may_add_url("\n".join(config.on_build or ()), ()):
            return
        resolved.append(Resolved(ref, platform.os, platform.architecture, platform.variant,
                                 str(stored.manifest.digest)))
    doc = {
        "format": FORMAT,
        "manifest": image.manifest.to_dict(),
        "chain": chain,
        "warnings": list(warnings),
        "resolved": [asdict(r) for r in resolved],
        "steps": [[n, s] for n, s in steps if not n.startswith("[internal]")],
    }
    path = _entry_path(store, key)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:  # a cache: failing to keep the entry fails nothing
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def forget_missing(store: BuildStore) -> int:
    """Remove the entries whose image manifest is no longer stored (after a prune);
    returns how many."""
    from layerstore.digest import Digest
    from layerstore.errors import LayerstoreError

    removed = 0
    directory = store.root / "buildkeys"
    for path in directory.glob("*.json") if directory.is_dir() else ():
        try:
            digest = Digest.parse(json.loads(path.read_bytes())["manifest"]["digest"])
            if store.content.exists(digest):
                continue
        except (OSError, ValueError, KeyError, TypeError, LayerstoreError):  # unreadable: goes too
            pass
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def forget_all(store: BuildStore) -> None:
    """Remove every entry: a build that ran steps afresh (``--no-cache``,
    ``--no-cache-filter``) replaced cache records that other entries' images came from, and
    the step cache, not an older entry, must answer the next build."""
    directory = store.root / "buildkeys"
    for path in directory.glob("*.json") if directory.is_dir() else ():
        path.unlink(missing_ok=True)
