"""``pybuild run`` (a throwaway container in the RUN sandbox) and ``pybuild prune``."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from builder.store import BuildStore, unpack_layers
from layerstore.digest import chain_ids
from layerstore.snapshots.mount import mounted, mounts_under
from layerstore.snapshots.snapshotter import Kind
from layerstore.walk import load_manifest
from tests.builder.test_commands import APP, BASE, GREETING, pybuild, stored_image


def mounts_of(root: Path) -> list[tuple[int, str]]:
    """The mounts at or below the store root (where runs mount their containers)."""
    return [(m.mount_id, m.mount_point) for m in mounts_under(root)]


def snapshots(root: Path) -> dict[str, Kind]:
    with BuildStore.open(root) as store:
        return {s.name: s.kind for s in store.snapshots.walk()}


def chains(root: Path, name: str) -> list[str]:
    """The chainIDs of every prefix of an image's layer stack."""
    return [str(c) for c in chain_ids(stored_image(root, name).image.rootfs.diff_ids)]


def blobs(root: Path) -> set[str]:
    return {p.name for p in (root / "content/blobs/sha256").iterdir()}


def image_blobs(root: Path, name: str) -> set[str]:
    """The manifest, config and layer digests (hex) of an image."""
    image = stored_image(root, name)
    with BuildStore.open(root) as store:
        manifest = load_manifest(store.content, image.manifest)
    return {image.manifest.digest.hex, image.config.digest.hex,
            *(layer.digest.hex for layer in manifest.layers)}  # type: ignore[union-attr]


def test_run_uses_the_image_command_and_leaves_nothing(root: Path,
                                                       capfd: pytest.CaptureFixture[str]
                                                       ) -> None:
    assert pybuild(root, "run", "--rm", BASE, "sh", "-c", "echo $$; grep -c . /proc/1/mountinfo"
                   ) == 0
    pid, mounts = capfd.readouterr().out.split()
    assert pid == "2" and int(mounts) > 3
    assert pybuild(root, "run", "--rm", BASE) == 0
    assert capfd.readouterr().out == GREETING + "\n"
    assert mounts_of(root) == []
    assert list((root / "tmp").iterdir()) == []
    assert snapshots(root) == {c: Kind.COMMITTED for c in chains(root, BASE)}


@pytest.mark.parametrize(("script", "code"), [("exit 3", 3), ("kill -9 $$", 137), ("true", 0)])
def test_run_exit_status_is_pybuilds(root: Path, script: str, code: int) -> None:
    assert pybuild(root, "run", "--rm", BASE, "sh", "-c", script) == code
    assert mounts_of(root) == []
    assert all(kind is Kind.COMMITTED for kind in snapshots(root).values())


def test_run_applies_entrypoint_env_workdir_and_user(root: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "run", APP) == 0
    assert capfd.readouterr().out == "from the image\nsecond layer\n"
    assert pybuild(root, "run", "-e", "GREETING=overridden", "-e", "EXTRA=1", APP,
                   'echo "$GREETING $EXTRA $HOME"; id -u; id -g; pwd') == 0
    assert capfd.readouterr().out == "overridden 1 /nonexistent\n65534\n65534\n/opt\n"
    assert pybuild(root, "run", "-u", "daemon:staff", "-w", "/tmp/new", "--entrypoint", "id",
                   APP) == 0
    assert capfd.readouterr().out.startswith("uid=1(daemon) gid=50(staff)")
    assert pybuild(root, "run", "-u", "1234", "--entrypoint", "", APP, "sh", "-c",
                   "id -u; id -g; pwd; echo $HOME") == 0
    assert capfd.readouterr().out == "1234\n0\n/opt\n/\n"


def test_run_network_none_and_writes_are_thrown_away(root: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "run", "--network", "none", BASE, "sh", "-c",
                   "ls /sys/class/net; echo x > /written") == 0
    assert capfd.readouterr().out == "lo\n"
    assert pybuild(root, "run", BASE, "cat", "/written") == 1
    assert "No such file" in capfd.readouterr().out


def test_run_errors(root: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "run", "--rm", BASE, "no-such-command") == 127
    assert "no-such-command" in capfd.readouterr().out
    assert pybuild(root, "run", "--rm", "-u", "nobody-here", BASE, "true") == 1
    assert capfd.readouterr().err == (
        "error: unable to find user nobody-here: no matching entries in passwd file\n")
    assert pybuild(root, "run", "--entrypoint", "", BASE) == 1
    assert capfd.readouterr().err.startswith("error: no command specified")
    assert all(kind is Kind.COMMITTED for kind in snapshots(root).values())


def test_prune_keeps_what_images_need_and_removes_the_rest(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with BuildStore.open(root) as store:
        for name in (BASE, APP):
            image = stored_image(root, name)
            manifest = load_manifest(store.content, image.manifest)
            unpack_layers(store, manifest.layers, image.image.rootfs.diff_ids)  # type: ignore[union-attr]
    base_chain, app_chain = chains(root, BASE)[0], chains(root, APP)[-1]
    assert snapshots(root) == {base_chain: Kind.COMMITTED, app_chain: Kind.COMMITTED}
    assert pybuild(root, "prune", "-f") == 0
    assert capsys.readouterr().out == "Total reclaimed space: 0B\n"

    app_only = image_blobs(root, APP) - image_blobs(root, BASE)
    assert pybuild(root, "rmi", APP) == 0
    assert pybuild(root, "prune", "-f") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [f"Deleted snapshot: {app_chain}", "Total reclaimed space: 4.1kB"]
    assert snapshots(root) == {base_chain: Kind.COMMITTED}
    assert app_only <= blobs(root)

    assert pybuild(root, "prune", "-a", "-f") == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out[:-1]) == sorted(f"Deleted blob: sha256:{h}" for h in app_only)
    assert out[-1].startswith("Total reclaimed space: ")
    assert blobs(root) == image_blobs(root, BASE)
    assert pybuild(root, "run", BASE, "true") == 0


def test_prune_removes_leftovers_of_interrupted_builds(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with BuildStore.open(root) as store:
        image = stored_image(root, BASE)
        manifest = load_manifest(store.content, image.manifest)
        chain = unpack_layers(store, manifest.layers, image.image.rootfs.diff_ids)  # type: ignore[union-attr]
        store.snapshots.prepare("unpack-crashed", chain)
        store.snapshots.commit("sha256:" + "1" * 64, "unpack-crashed")
        store.snapshots.prepare("active-crashed", "sha256:" + "1" * 64)
        (store.snapshots.upperdir("active-crashed") / "big").write_bytes(b"x" * 100_000)
        store.snapshots.view("view-crashed", chain)
        store.snapshots.prepare("unpack-empty")
        store.snapshots.prepare("someone-elses", chain)
        writer = store.content.writer("download-1")
        writer.write(b"y" * 5000)
        writer.close()
        in_use = store.snapshots.prepare("active-in-use", chain)
        bare = store.snapshots.prepare("active-bare")
        with mounted(in_use), mounted(bare):
            assert pybuild(root, "prune", "-f") == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out[:-1]) == sorted([
        "Deleted snapshot: active-crashed", "Deleted snapshot: sha256:" + "1" * 64,
        "Deleted snapshot: view-crashed", "Deleted snapshot: unpack-empty",
        "Deleted ingest: download-1"])
    assert out.index("Deleted snapshot: active-crashed") < out.index(
        "Deleted snapshot: sha256:" + "1" * 64)
    assert out[-1] == "Total reclaimed space: 107kB"
    assert snapshots(root) == {chain: Kind.COMMITTED, "someone-elses": Kind.ACTIVE,
                               "active-in-use": Kind.ACTIVE, "active-bare": Kind.ACTIVE}
    assert pybuild(root, "prune", "-f") == 0
    out = capsys.readouterr().out
    assert "Deleted snapshot: active-in-use" in out and "Deleted snapshot: active-bare" in out


def test_prune_grace_and_confirmation(root: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "rmi", APP) == 0
    assert pybuild(root, "prune", "-a", "-f", "--grace", "3600") == 0
    assert capsys.readouterr().out.endswith("Total reclaimed space: 0B\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    assert pybuild(root, "prune", "-a") == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "Are you sure you want to continue? [y/N]" in captured.err
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert pybuild(root, "prune", "-a") == 0
    assert "Deleted blob: " in capsys.readouterr().out
    assert pybuild(root, "prune", "--grace", "-1") == 1
    assert capsys.readouterr().err == "error: --grace must be 0 or more seconds, got -1\n"
