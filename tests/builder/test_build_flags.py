"""``pybuild build`` flags checked before anything is built: ``--platform`` and the
``--output`` attributes."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.store import BuildStore
from layerstore.assembly import host_architecture, load_image
from tests.builder.test_build import build

NO_RUN = "FROM busybox\nENV A=1\n"


@pytest.mark.parametrize(("platform", "message"), [
    ("linux/arm64", "--platform linux/arm64: cannot build for linux/arm64 on this linux/"),
    ("windows/amd64", "--platform windows/amd64: cannot build for windows/amd64"),
    ("linux/amd64,linux/arm64", "--platform linux/amd64,linux/arm64: building for several "
     "platforms at once is not supported"),
    ("linux", "--platform linux: invalid platform 'linux'"),
])
def test_a_platform_we_cannot_build_is_refused(store_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               platform: str, message: str) -> None:
    if host_architecture() == "arm64":
        platform = platform.replace("arm64", "s390x")
        message = message.replace("arm64", "s390x")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, NO_RUN, "--platform", platform, "-t", "plat:1") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}")
    with BuildStore.open(store_root) as store:
        assert "plat:1" not in [record.name for record in store.images.list()]


@pytest.mark.parametrize("spelling", ["linux/{arch}", "Linux/{arch}", "linux/x86_64"])
def test_the_host_platform_is_accepted(store_root: Path, tmp_path: Path, spelling: str) -> None:
    arch = host_architecture()
    if "x86_64" in spelling and arch != "amd64":
        spelling = "linux/{arch}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, NO_RUN, "--platform", spelling.format(arch=arch),
                 "-t", "plat:2") == 0
    with BuildStore.open(store_root) as store:
        image = load_image(store.content, store.images.get("plat:2").target).image
    assert (image.os, image.architecture) == ("linux", arch)
