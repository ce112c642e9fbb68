"""``pybuild build``: build an image from a Dockerfile and a context directory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from builder import config, entitlements
from builder.commands.limitflags import add_limit_flags, limits_from
from builder.commands.registryflags import add_registry_flags, settings_from
from builder.errors import BuildError
from builder.options import BuildOptions
from builder.progress import Progress
from builder.store import BuildStore

if TYPE_CHECKING:
    from collections.abc import Collection

    from builder.buildcontexts import NamedContext
    from builder.executor.protocol import ExtraHost
    from builder.outputs import OutputSpec
    from builder.runmounts import SecretSource
    from builder.sshforward import SshSource
    from builder.transfer import RegistryAccess
    from layerstore.assembly import StoredImage
    from layerstore.oci import Platform

# The rest is imported where it is used: a fully cached rebuild needs little of it.

def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``build``."""
    p = sub.add_parser("build", help="build an image from a Dockerfile",
                       description="Build an image from a Dockerfile and a context directory.")
    p.add_argument("context", metavar="CONTEXT", help="the build context directory")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME",
                   help="name the image name[:tag] (repeatable)")
    p.add_argument("-f", "--file", metavar="FILE",
                   help="the Dockerfile (default CONTEXT/Dockerfile; '-' reads stdin)")
    p.add_argument("--target", metavar="STAGE", help="build this stage, not the last one")
    p.add_argument("--build-context", action="append", default=[], metavar="NAME=VALUE",
                   help="a named context for FROM NAME / --from=NAME: a directory, "
                   "docker-image://REF, oci-layout://PATH[:TAG] or target:STAGE (repeatable)")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]",
                   help="set a build-time variable; KEY alone takes it from the environment")
    p.add_argument("--secret", action="append", default=[], metavar="id=ID,src=PATH",
                   help="a secret for RUN --mount=type=secret (src=PATH or env=VAR)")
    p.add_argument("--ssh", action="append", default=[], metavar="default|ID[=SOCKET|KEY,...]",
                   help="an SSH agent (or keys) for RUN --mount=type=ssh; default is "
                   "$SSH_AUTH_SOCK (repeatable)")
    p.add_argument("--annotation", action="append", default=[], metavar="[manifest:]KEY=VALUE",
                   help="annotate the image manifest (repeatable)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="set an image label")
    p.add_argument("--platform", metavar="OS/ARCH[,...]",
                   help="target platform(s), e.g. linux/amd64,linux/arm64: several make one "
                        "image index; a foreign architecture RUNs under qemu-user-static")
    p.add_argument("--network", choices=("default", "none", "host"), default="default",
                   help="network mode of RUN steps (default: default)")
    p.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                   help="grant an entitlement: network.host, security.insecure (repeatable)")
    p.add_argument("--add-host", action="append", default=[], metavar="HOST:IP",
                   help="add a line to /etc/hosts of RUN steps; IP may be host-gateway "
                        "(repeatable)")
    p.add_argument("--progress", choices=("auto", "plain", "tty", "quiet"), default="auto",
                   help="progress output (default auto: tty on a terminal, else plain)")
    p.add_argument("--compression", default="gzip", choices=("gzip", "zstd", "none"),
                   help="layer compression (default gzip)")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument("--cache-from", action="append", default=[], metavar="SPEC",
                   help="import build cache: type=registry,ref=R | type=local,src=DIR "
                   "(repeatable)")
    p.add_argument("--cache-to", action="append", default=[], metavar="SPEC",
                   help="export the build cache: type=registry,ref=R[,mode=min|max] | "
                   "type=local,dest=DIR[,mode=...]")
    p.add_argument("--no-cache-filter", action="append", default=[], metavar="STAGE",
                   help="do not use the build cache for this stage (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the image ID (no progress)")
    p.add_argument("--iidfile", type=Path, help="write the image ID to this file")
    p.add_argument("-o", "--output", action="append", default=[], metavar="SPEC",
                   help="also write the result: type=oci|docker,dest=FILE; type=local,dest=DIR; "
                   "type=tar,dest=FILE; type=registry[,name=NAME] (repeatable)")
    p.add_argument("--push", action="store_true",
                   help="push the image to its registry (same as --output type=registry)")
    p.add_argument("--pull", action="store_true",
                   help="always pull the base images, even when they are stored locally")
    p.add_argument("--call", choices=("build", "check"), default="build",
                   help="build (default), or check: run the build checks, build nothing")
    p.add_argument("--check", dest="call", action="store_const", const="check",
                   help="same as --call=check")
    p.add_argument("--print-graph", action="store_true",
                   help="print the op graph the build would run, and build nothing")
    p.add_argument("--sbom", metavar="VALUE",
                   help="attach an SPDX SBOM of the image: true|false (--attest type=sbom)")
    p.add_argument("--provenance", metavar="VALUE",
                   help="attach SLSA provenance: true|false|mode=min|mode=max[,builder-id=URI]"
                   " (--attest type=provenance,...)")
    p.add_argument("--attest", action="append", default=[], metavar="SPEC",
                   help="attach an attestation: type=sbom | type=provenance[,mode=min|max] "
                   "(repeatable)")
    add_limit_flags(p)
    add_registry_flags(p)
    p.add_argument("--metadata-file", type=Path,
                   help="write the image digest and names as JSON (containerimage.digest)")
    p.set_defaults(command_module=sys.modules[__name__])


def _pairs(values: list[str], what: str, from_env: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key:
            raise BuildError(f"{what} {item!r}: expected KEY=VALUE")
        if not eq:
            if not from_env:
                raise BuildError(f"{what} {item!r}: expected KEY=VALUE")
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out


def options_from(args: argparse.Namespace) -> BuildOptions:
    """The :class:`BuildOptions` of the parsed command line."""
    context = Path(args.context)
    if args.context == "-":
        raise BuildError("a context read from stdin is not supported; give a directory")
    if not context.is_dir():
        raise BuildError(f"build context {args.context!r} is not a directory")
    dockerfile_path: Path | None
    if args.file == "-":
        text, name, dockerfile_path = sys.stdin.read(), "Dockerfile", None
    else:
        dockerfile_path = Path(args.file) if args.file else context / "Dockerfile"
        name = str(dockerfile_path) if args.file else "Dockerfile"
        try:
            text = dockerfile_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BuildError(f"cannot read the Dockerfile: {dockerfile_path} does not "
                             "exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BuildError(f"cannot read the Dockerfile {dockerfile_path}: {exc}") from None
    build_args = _pairs(args.build_arg, "--build-arg", True)
    secrets: dict[str, SecretSource] = {}
    if args.secret:
        from builder.runmounts import parse_secret_flag
    for item in args.secret:
        secret = parse_secret_flag(item)
        secrets[secret.id] = secret
    epoch_text = build_args.get("SOURCE_DATE_EPOCH") or os.environ.get("SOURCE_DATE_EPOCH")
    epoch = None
    if epoch_text:
        try:
            epoch = int(epoch_text)
        except ValueError:
            raise BuildError(f"SOURCE_DATE_EPOCH={epoch_text!r} is not a whole number of "
                             "seconds") from None
    platforms = target_platforms(args.platform) if args.platform else ()
    platform = platforms[0] if len(platforms) == 1 else None
    settings = config.load()
    from layerstore.compression import check as check_compression
    from layerstore.errors import InvalidArgument

    try:
        compression = check_compression(args.compression)
    except InvalidArgument as exc:
        raise BuildError(str(exc)) from None
    for tag in args.tag:
        from layerstore.images import split_name

        try:
            split_name(tag)
        except InvalidArgument as exc:
            raise BuildError(f"-t {tag}: {exc}") from None
    if args.cache_from or args.cache_to:
        from builder.remotecache import parse_cache_spec
    annotations = annotations_from(args.annotation, len(platforms) > 1)
    from builder.attestations import parse_attest_flags

    attest = parse_attest_flags(args.sbom, args.provenance, args.attest)
    return BuildOptions(
        context=context.resolve(), dockerfile_text=text, dockerfile_name=name,
        dockerfile_path=dockerfile_path.resolve() if dockerfile_path else None,
        tags=tuple(args.tag), target=args.target, build_args=build_args, secrets=secrets,
        platform=platform, platforms=platforms if len(platforms) > 1 else (),
        compression=compression, source_date_epoch=epoch,
        labels=_pairs(args.label, "--label", False), network=args.network,
        allow=entitlements.parse(args.allow).union(settings.entitlements),
        limits=limits_from(args, settings),
        extra_hosts=extra_hosts(args.add_host),
        no_cache=args.no_cache,
        cache_from=tuple(parse_cache_spec(c, export=False) for c in args.cache_from),
        cache_to=tuple(parse_cache_spec(c, export=True) for c in args.cache_to),
        no_cache_filter=tuple(n for item in args.no_cache_filter for n in item.split(",") if n),
        build_contexts=_build_contexts(args.build_context),
        ssh=_ssh(args.ssh),
        annotations=annotations[0], index_annotations=annotations[1],
        attest=attest)


def annotations_from(values: list[str], multi: bool = False
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """The ``--annotation [TYPE:]KEY=VALUE`` values: those for the image manifests (no type
    or ``manifest:``) and, in a multi-platform build (``multi``), those for its index
    (``index:``). Descriptor annotations, and ``index:`` without an index, are refused by
    name."""
    manifest: dict[str, str] = {}
    index: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        types = {"manifest"}
        head, colon, rest = key.partition(":")
        if colon and all(t.split("[")[0] in _ANNOTATION_TYPES for t in head.split(",")):
            types, key = {t.split("[")[0] for t in head.split(",")}, rest
        if not eq or not key.strip():
            raise BuildError(f"--annotation {item!r}: expected [TYPE:]KEY=VALUE")
        unsupported = sorted(types - {"manifest", "index"})
        if unsupported:
            raise BuildError(f"--annotation {item!r}: {', '.join(unsupported)} annotations "
                             "are not supported; use manifest: or index:")
        if "index" in types and not multi:
            raise BuildError(f"--annotation {item!r}: index annotations need an image index, "
                             "which a single-platform build does not make; use manifest:")
        if "manifest" in types:
            manifest[key.strip()] = value
        if "index" in types:
            index[key.strip()] = value
    return manifest, index


_ANNOTATION_TYPES = ("manifest", "index", "manifest-descriptor", "index-descriptor")


def _ssh(values: list[str]) -> dict[str, SshSource]:
    if not values:
        return {}
    from builder.sshforward import parse_ssh_flags

    return parse_ssh_flags(values)


def _build_contexts(values: list[str]) -> dict[str, NamedContext]:
    if not values:
        return {}
    from builder.buildcontexts import parse_build_contexts

    return parse_build_contexts(values)


def extra_hosts(values: list[str]) -> tuple[ExtraHost, ...]:
    """The ``--add-host`` values as /etc/hosts lines."""
    if not values:
        return ()
    from builder.executor.network import parse_extra_hosts

    return parse_extra_hosts(values)


def target_platforms(text: str) -> tuple[Platform, ...]:
    """The ``--platform`` list (``linux/amd64,linux/arm64``), normalised; foreign
    architectures are built under emulation (see :mod:`builder.platforms_qemu`)."""
    from builder.platforms import parse_platforms

    return parse_platforms(text, "--platform")


def _with_output_compression(options: BuildOptions, outputs: list[OutputSpec]
                             ) -> BuildOptions:
    """Build the layers the way the outputs ask (the first one that names a compression)."""
    from dataclasses import replace

    from builder.outputformat import build_compression, codec_level

    compression, level = build_compression([o.layers for o in outputs if o.type != "docker"],
                                           options.compression)
    return replace(options, compression=compression,
                   compression_level=codec_level(compression, level))


def _output_image(store: BuildStore, image: StoredImage, out: OutputSpec,
                  built_with: str, tags: tuple[str, ...]) -> StoredImage:
    """The image as ``out`` writes it. A docker archive holds uncompressed layer tars, so
    only an image or OCI output is converted; an image output not pushed names the
    converted image locally."""
    if out.type not in ("image", "oci") or out.layers.is_default:
        return image
    from builder.outputformat import convert_image

    converted = convert_image(store.content, image, out.layers, built_with)
    if out.type == "image" and not out.push:
        for name in out.names or tags:
            store.images.put(name, converted.manifest)
    return converted


DEFAULT_CACHE_LIMIT = "20GB"
DEFAULT_CACHE_BYTES = 20 * 1000**3  # DEFAULT_CACHE_LIMIT, without importing the parser
AUTO_PRUNE_GRACE = 3600.0


def _limit_cache(store: BuildStore) -> None:
    """Keep the build cache under ``$PYBUILD_CACHE_MAX`` (default 20GB): past it, the least
    recently used steps are forgotten and what only they held is removed (anything younger
    than an hour stays, for builds running at the same time)."""
    text = os.environ.get("PYBUILD_CACHE_MAX")
    limit = DEFAULT_CACHE_BYTES
    if text:
        from builder.commands.prune import parse_size

        try:
            limit = parse_size(text)
        except argparse.ArgumentTypeError as exc:
            raise BuildError(f"PYBUILD_CACHE_MAX: {exc}") from None
    if store.cache.total_size() <= limit:
        return
    from builder.gc import auto_prune

    auto_prune(store, limit, AUTO_PRUNE_GRACE)


def _import_in_background(module: str) -> None:
    """Import ``module`` on a thread of its own: the build's subprocesses and system calls
    leave the interpreter idle, so the push client is ready when the image is."""
    import contextlib
    import importlib
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):  # the import where it is needed reports it
            importlib.import_module(module)

    threading.Thread(target=load, name=f"import {module}", daemon=True).start()

def _registry_access(store: BuildStore, args: argparse.Namespace,
                     progress: Progress) -> RegistryAccess:
    """The registry client of one build, set by the registry flags, reporting to
    ``progress`` and warning on stderr."""
    from builder.transfer import RegistryAccess

    return RegistryAccess(store, settings_from(args), vertex_for=progress.vertex,
                          warn=lambda m: print(f"WARNING: {m}", file=sys.stderr),
                          always_pull=args.pull)


def _print_graph(store: BuildStore, args: argparse.Namespace, options: BuildOptions) -> int:
    """``--print-graph``: compile and print; base images are resolved (pulled if needed) for
    their configs, nothing is built."""
    from builder.api import build_graph
    from builder.graph.render import render
    from builder.solver.images import ResolvedImages

    progress = Progress("quiet" if args.quiet else args.progress)
    try:
        access = _registry_access(store, args, progress)
        images = ResolvedImages(access.images)
        if len(options.platforms) > 1:
            from dataclasses import replace

            text = "".join(f"# platform {p}\n" + render(build_graph(
                replace(options, platform=p, platforms=()), images))
                for p in options.platforms)
        else:
            text = render(build_graph(options, images))
    finally:
        progress.close()
    sys.stdout.write(text)
    return 0


def _check(options: BuildOptions) -> int:
    """``--call=check``: lint the stages the target needs; 1 when anything was found."""
    from builder.api import host_platform
    from builder.errors import DockerfileError
    from builder.frontend.checks import check_dockerfile, check_policy, report
    from builder.frontend.convert import plan
    from builder.frontend.dockerignore import DockerIgnore, find_dockerignore
    from builder.frontend.instructions import parse_dockerfile

    dockerfile = parse_dockerfile(options.dockerfile_text, options.dockerfile_name)
    host = host_platform()
    needed: Collection[int]
    try:
        needed = plan(dockerfile, build_args=options.build_args, target=options.target,
                      build_platform=host, target_platform=options.platform or host,
                      file=options.dockerfile_name, contexts=options.build_contexts).stages
    except DockerfileError as exc:  # the build would fail here; lint every stage instead
        print(f"error: {exc}", file=sys.stderr)
        needed = range(len(dockerfile.stages))
    ignore = DockerIgnore.load(find_dockerignore(
        options.context, options.dockerfile_path or options.context / "Dockerfile"))
    policy = check_policy(dockerfile.directives.check,
                          options.build_args.get("BUILDKIT_DOCKERFILE_CHECK"))
    found = check_dockerfile(options.dockerfile_text, dockerfile, needed=needed, ignore=ignore,
                             policy=policy)
    sys.stdout.write(report(found, options.dockerfile_text, options.dockerfile_name))
    return 1 if found else 0


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Build, name, report."""
    from builder.api import build

    options = options_from(args)
    if args.push or any("registry" in o or "push" in o for o in args.output):
        _import_in_background("registry.client.push")
    if args.output or args.push:
        from builder.outputs import OutputSpec, parse_output, write_outputs
    outputs = [parse_output(o) for o in args.output]
    if args.push:
        outputs.append(OutputSpec("image", push=True))
    if any(o.type == "cacheonly" for o in outputs):
        if len(outputs) > 1 or options.tags:
            raise BuildError("--output type=cacheonly only fills the build cache: it takes no "
                             "-t/--tag, --push or other --output")
        outputs = []
    if args.print_graph:
        return _print_graph(store, args, options)
    if args.call == "check":
        return _check(options)
    if len(options.platforms) > 1:
        from builder.platforms_outputs import check_outputs

        check_outputs(outputs, options.platforms, bool(getattr(args, "load", False)))
    if options.attest.any:
        for out in outputs:
            if out.type in ("image", "oci") and not out.layers.is_default:
                raise BuildError(f"--output type={out.type}: converting the layers of an "
                                 "image with attestations is not supported (its attestations "
                                 "name the image as built); drop the compression attributes "
                                 "or the attestations")
    options = _with_output_compression(options, outputs)
    progress = Progress("quiet" if args.quiet else args.progress)
    access: RegistryAccess | None = None
    try:
        access = _registry_access(store, args, progress)
        pushed_names = [n for o in outputs if o.push for n in (o.names or options.tags)]
        access.warm_up_push(pushed_names)
        result = build(store, options, progress, access)
        image_id = str(result.index.digest if result.index else result.image.config.digest)
        for warning in result.warnings:
            print(f"WARNING: {warning}", file=sys.stderr)
        if not args.quiet:
            v = progress.vertex("exporting to image")
            for part in result.platforms:
                v.log(f"{part.platform} manifest {part.image.manifest.digest} config "
                      f"{part.image.config.digest}\n".encode())
            v.log(f"writing image {image_id}\n".encode())
            if result.platforms:
                v.log(f"index {result.image.manifest.digest}\n".encode())
            else:
                v.log(f"manifest {result.image.manifest.digest}\n".encode())
            if result.index is not None and not result.platforms:
                v.log(f"index with attestations {result.index.digest}\n".encode())
            for tag in result.tags:
                v.log(f"naming to {tag}\n".encode())
            v.done()
        if result.index is not None and any(o.type == "docker" for o in outputs):
            print("WARNING: --output type=docker: a docker archive holds the image without "
                  "its attestations (use type=oci or push to keep them)", file=sys.stderr)
        if outputs:
            v = progress.vertex("exporting outputs")
            pushed = []
            for out in outputs:
                if result.platforms and out.type in ("local", "tar"):
                    from builder.platforms_outputs import write_platform_outputs

                    write_platform_outputs(store, result.platforms, out)
                    continue
                image = _output_image(store, result.image, out, options.compression,
                                      result.tags)
                pushed += write_outputs(store, image, result.chain, result.tags, [out],
                                        push=access.push, top=result.index)
            for name in pushed:
                v.log(f"pushed {name}\n".encode())
            v.done()
    finally:
        if access is not None:
            access.close()
        progress.close()
    if not result.shortcut:  # an unchanged rebuild added nothing to the cache
        _limit_cache(store)
    if args.iidfile:
        args.iidfile.write_text(image_id)
    if args.metadata_file:
        from builder.outputs import write_metadata

        write_metadata(args.metadata_file, result.image, result.tags, result.index)
    if args.quiet:
        print(image_id)
    return 0
