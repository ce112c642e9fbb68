"""Image references parsed and normalized as docker does, and the errors for bad ones."""

from __future__ import annotations

import pytest

from registry.client import InvalidReference, Reference, parse_reference

pytestmark = pytest.mark.unit

HEX = "a" * 64
DIGEST = f"sha256:{HEX}"

#: text → (registry, repository, tag, digest, str(), familiar())
CASES = {
    "debian": ("docker.io", "library/debian", "latest", None,
               "docker.io/library/debian:latest", "debian:latest"),
    "debian:bookworm": ("docker.io", "library/debian", "bookworm", None,
                        "docker.io/library/debian:bookworm", "debian:bookworm"),
    "library/debian": ("docker.io", "library/debian", "latest", None,
                       "docker.io/library/debian:latest", "debian:latest"),
    "docker.io/library/debian:12": ("docker.io", "library/debian", "12", None,
                                    "docker.io/library/debian:12", "debian:12"),
    "docker.io/debian": ("docker.io", "library/debian", "latest", None,
                         "docker.io/library/debian:latest", "debian:latest"),
    "index.docker.io/library/debian": ("docker.io", "library/debian", "latest", None,
                                       "docker.io/library/debian:latest", "debian:latest"),
    "user/app:v1": ("docker.io", "user/app", "v1", None, "docker.io/user/app:v1",
                    "user/app:v1"),
    "library/team/app": ("docker.io", "library/team/app", "latest", None,
                         "docker.io/library/team/app:latest", "library/team/app:latest"),
    "registry.example:5000/ns/repo:tag": (
        "registry.example:5000", "ns/repo", "tag", None,
        "registry.example:5000/ns/repo:tag", "registry.example:5000/ns/repo:tag"),
    "127.0.0.1:5000/a/b/c": ("127.0.0.1:5000", "a/b/c", "latest", None,
                             "127.0.0.1:5000/a/b/c:latest", "127.0.0.1:5000/a/b/c:latest"),
    "localhost/x": ("localhost", "x", "latest", None, "localhost/x:latest",
                    "localhost/x:latest"),
    "localhost:5000/x_y.z-w__v": ("localhost:5000", "x_y.z-w__v", "latest", None,
                                  "localhost:5000/x_y.z-w__v:latest",
                                  "localhost:5000/x_y.z-w__v:latest"),
    "example.com/app": ("example.com", "app", "latest", None, "example.com/app:latest",
                        "example.com/app:latest"),
    "[::1]:5000/app:1": ("[::1]:5000", "app", "1", None, "[::1]:5000/app:1",
                         "[::1]:5000/app:1"),
    f"debian@{DIGEST}": ("docker.io", "library/debian", None, DIGEST,
                         f"docker.io/library/debian@{DIGEST}", f"debian@{DIGEST}"),
    f"debian:12@{DIGEST}": ("docker.io", "library/debian", "12", DIGEST,
                            f"docker.io/library/debian:12@{DIGEST}", f"debian:12@{DIGEST}"),
    f"host:1/r@sha512:{'b' * 128}": ("host:1", "r", None, f"sha512:{'b' * 128}",
                                     f"host:1/r@sha512:{'b' * 128}",
                                     f"host:1/r@sha512:{'b' * 128}"),
}

#: text → a fragment the error message must contain
ERRORS = {
    "": "empty",
    "Debian": "must be lowercase",
    "team/App:1": "repository name (team/App) must be lowercase",
    "debian:": "malformed tag ''",
    "debian:-x": "malformed tag '-x'",
    "debian:" + "t" * 129: "malformed tag",
    "a//b": "empty path component",
    "a/b/": "empty path component",
    "debian@sha256:abc": "malformed digest",
    f"debian@md5:{'a' * 32}": "unsupported digest algorithm 'md5'",
    HEX: "cannot specify 64-byte hexadecimal strings",
    "a/-b": "path component '-b'",
    "x" * 300: "longer than 255",
    "host:port:1/x": "invalid reference format",
}


@pytest.mark.parametrize("text", list(CASES))
def test_parse_and_normalize(text: str) -> None:
    registry, repository, tag, digest, full, familiar = CASES[text]
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert (str(ref.digest) if ref.digest else None) == digest
    assert str(ref) == full and ref.familiar() == familiar
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref


@pytest.mark.parametrize("text", list(ERRORS))
def test_errors_name_the_problem(text: str) -> None:
    with pytest.raises(InvalidReference) as err:
        parse_reference(text)
    assert ERRORS[text] in str(err.value)


def test_reference_helpers() -> None:
    ref = parse_reference("debian:bookworm")
    assert ref.api_host == "registry-1.docker.io" and ref.is_docker_hub
    assert ref.manifest_reference == "bookworm"
    pinned = ref.with_digest(parse_reference(f"x@{DIGEST}").digest)  # type: ignore[arg-type]
    assert pinned.manifest_reference == DIGEST and pinned.tag == "bookworm"
    assert ref.with_tag("trixie").familiar() == "debian:trixie"
    assert ref.in_repository("library/ubuntu").familiar() == "ubuntu:bookworm"
    assert parse_reference("debian", default_tag=None).tag is None
    own = parse_reference("127.0.0.1:5000/team/app")
    assert own.api_host == "127.0.0.1:5000" and own.name == "127.0.0.1:5000/team/app"
    with pytest.raises(InvalidReference):
        Reference("docker.io", "Bad")
    with pytest.raises(InvalidReference):
        Reference("docker.io", "ok", tag="bad tag")
