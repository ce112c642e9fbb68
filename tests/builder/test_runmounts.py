"""RUN --mount: parsing as BuildKit reads it, and real runs on a busybox rootfs."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from builder.errors import BuildError, DockerfileError
from builder.executor import BindMount, NamespaceExecutor, RunResult, RunSpec
from builder.executor.protocol import TmpfsMount
from builder.runmounts import (
    BindSpec,
    CacheMount,
    MountPlan,
    RunMount,
    SecretSource,
    SecretSpec,
    SshSpec,
    TmpfsSpec,
    parse_mount,
    parse_secret_flag,
    run_mounts,
)
from layerstore.snapshots.mount import mountinfo

PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("target=/src", BindSpec("/src")),
    ("type=bind,source=app,target=/app,from=builder,rw",
     BindSpec("/app", "app", "builder", readwrite=True)),
    ("type=bind,src=a,dst=/a,readwrite=false", BindSpec("/a", "a")),
    ("type=bind,destination=/a,ro=false", BindSpec("/a", readwrite=True)),
    ("Type=Bind,Target=/a,rw,ro", BindSpec("/a")),
    ("type=cache,target=/root/.cache", CacheMount("/root/.cache", "/root/.cache")),
    ("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1000,gid=100",
     CacheMount("/root/.cache", "pip", "locked", mode=0o700, uid=1000, gid=100)),
    ("type=cache,target=/c,from=deps,source=/cache,ro,sharing=PRIVATE",
     CacheMount("/c", "/c", "private", "deps", "/cache", readonly=True)),
    ("type=tmpfs,target=/tmp", TmpfsSpec("/tmp")),
    ("type=tmpfs,target=/tmp,size=64m", TmpfsSpec("/tmp", 64 << 20)),
    ("type=tmpfs,target=/tmp,size=1.5GiB", TmpfsSpec("/tmp", 3 << 29)),
    ("type=tmpfs,target=/tmp,size=4096", TmpfsSpec("/tmp", 4096)),
    ("type=secret,id=tok", SecretSpec("tok", "/run/secrets/tok")),
    ("type=ssh", SshSpec()),
    ("type=ssh,id=deploy,target=a.sock,required,mode=0660,uid=7,gid=8",
     SshSpec("deploy", "/a.sock", True, 0o660, 7, 8)),
    ("type=ssh,required=false", SshSpec(required=False)),
    ("type=secret,id=tok,env=TOKEN", SecretSpec("tok", None, "TOKEN")),
    ("type=secret,id=tok,env=TOKEN,target=/t", SecretSpec("tok", "/t", "TOKEN")),
    ("type=secret,target=/etc/npm/token", SecretSpec("token", "/etc/npm/token")),
    ("type=secret,source=npmrc,required,mode=0444,uid=1000",
     SecretSpec("npmrc", "/run/secrets/npmrc", required=True, mode=0o444, uid=1000)),
    ('"type=secret","id=a,b"', SecretSpec("a,b", "/run/secrets/a,b")),
])
def test_parse_mount(text: str, expected: RunMount) -> None:
    assert parse_mount(text, line=3) == expected


def test_defaults_follow_buildkit() -> None:
    assert CacheMount("/x").id == "/x"
    assert SecretSpec("s").target == "/run/secrets/s"
    assert SecretSpec("s", env="S").target is None
    assert SecretSpec("s").mode == 0o400
    assert CacheMount("/x").mode == 0o755


def test_relative_target_is_under_the_workdir() -> None:
    assert parse_mount("type=cache,target=.cache", line=1, workdir="/app") == \
        CacheMount("/app/.cache")
    assert parse_mount("target=../x/", line=1, workdir="/app/src") == BindSpec("/app/x")


@pytest.mark.parametrize(("text", "message"), [
    ("type=ssh,source=x", "option 'source' is not valid for ssh mounts"),
    ("type=ssh,mode=999", "invalid value '999' for mode"),
    ("type=volume,target=/x", "unknown mount type 'volume'"),
    ("type=cache", "a target is required"),
    ("source=x", "a target is required"),
    ("type=bind,target=/x,bogus=1", "unknown mount option 'bogus'"),
    ("type=bind,target=/x,Colour=red", "unknown mount option 'Colour'"),
    ("type=bind,target=/x,mode=0755", "option 'mode' is not valid for bind mounts"),
    ("type=bind,target=/x,id=a", "option 'id' is not valid for bind mounts"),
    ("type=bind,target=/x,required", "option 'required' is not valid for bind mounts"),
    ("type=tmpfs,target=/x,uid=0", "option 'uid' is not valid for tmpfs mounts"),
    ("type=cache,target=/x,size=1m", "option 'size' is not valid for cache mounts"),
    ("type=cache,target=/x,env=A", "option 'env' is not valid for cache mounts"),
    ("type=secret,id=a,from=x", "option 'from' is not valid for secret mounts"),
    ("type=secret,id=a,sharing=locked", "option 'sharing' is not valid for secret mounts"),
    ("type=cache,target=/x,sharing=sometimes", "invalid sharing 'sometimes'"),
    ("type=cache,target=/x,mode=999", "invalid value '999' for mode"),
    ("type=cache,target=/x,mode=017777", "invalid value '017777' for mode"),
    ("type=cache,target=/x,uid=-1", "invalid value '-1' for uid"),
    ("type=cache,target=/x,gid=4294967296", "invalid value '4294967296' for gid"),
    ("type=tmpfs,target=/x,size=lots", "invalid value 'lots' for size"),
    ("type=bind,target=/x,ro=maybe", "invalid value 'maybe' for ro"),
    ("type=secret,id=a,required=perhaps", "invalid value 'perhaps' for required"),
    ("type=secret", "a secret mount needs an id or a target"),
    ("type=secret,id=a,source=b", "either source or id"),
    ("type=secret,id=a,env=1BAD", "invalid environment variable name '1BAD'"),
    ("type=cache,target=/", "invalid mount target '/'"),
    ("target=/x,id", "option 'id' must be a key=value pair"),
])
def test_parse_mount_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message) as caught:
        parse_mount(text, line=7, file="Dockerfile.dev")
    assert (caught.value.line, caught.value.file) == (7, "Dockerfile.dev")
    assert str(caught.value).startswith("Dockerfile.dev:7: --mount=")


def test_parse_secret_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "token.txt"
    secret.write_text("t0k3n")
    assert parse_secret_flag(f"id=tok,src={secret}") == SecretSource("tok", path=secret)
    assert parse_secret_flag(f"id=tok,source={secret},type=file") == \
        SecretSource("tok", path=secret)
    assert parse_secret_flag("id=tok,env=MY_TOKEN") == SecretSource("tok", env="MY_TOKEN")
    assert parse_secret_flag("type=env,id=tok,src=MY_TOKEN") == \
        SecretSource("tok", env="MY_TOKEN")
    assert parse_secret_flag("type=env,id=tok") == SecretSource("tok", env="tok")
    monkeypatch.chdir(tmp_path)
    assert parse_secret_flag("id=token.txt") == SecretSource("token.txt", path=secret)
    assert parse_secret_flag("id=tok,src=token.txt") == SecretSource("tok", path=secret)
    monkeypatch.setenv("API_TOKEN", "x")
    assert parse_secret_flag("id=API_TOKEN") == SecretSource("API_TOKEN", env="API_TOKEN")


@pytest.mark.parametrize(("text", "message"), [
    ("src=token.txt", "needs an id"),
    ("id=tok,src=missing.txt", "cannot read .*missing.txt"),
    ("id=tok,src=.", "is not a regular file"),
    ("id=tok,bogus=1", "unknown key 'bogus'"),
    ("type=ssh,id=tok", "unsupported secret type 'ssh'"),
    ("id=tok,src=token.txt,env=TOKEN", "either src or env"),
    ("type=file,id=tok,env=TOKEN", "type=file takes src"),
    ("id", "must be a key=value pair"),
    ("id=big,src=big.bin", "larger than 500 KiB"),
])
def test_parse_secret_flag_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  text: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "token.txt").write_text("t")
    (tmp_path / "big.bin").write_bytes(b"x" * (500 * 1024 + 1))
    with pytest.raises(BuildError, match=message) as caught:
        parse_secret_flag(text)
    assert str(caught.value).startswith(f"invalid --secret {text!r}: ")


# --- real runs -------------------------------------------------------------------------


@dataclass
class Sources:
    """A ``sources`` callable over named directories that records what is open."""

    roots: dict[str, Path] = field(default_factory=dict)
    open: list[str] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)

    @contextmanager
    def __call__(self, name: str) -> Iterator[Path]:
        if name not in self.roots:
            raise BuildError(f"no stage or image named {name!r}")
        self.open.append(name)
        self.opened.append(name)
        try:
            yield self.roots[name]
        finally:
            self.open.remove(name)


@dataclass
class Build:
    """Everything :func:`run_mounts` needs, in one test's temporary directory."""

    rootfs: Path
    cache_root: Path
    scratch: Path
    context: Path
    sources: Sources
    secrets: dict[str, SecretSource]

    @contextmanager
    def mounts(self, specs: Sequence[RunMount]) -> Iterator[MountPlan]:
        with run_mounts(specs, cache_root=self.cache_root, scratch=self.scratch,
                        context=self.context, sources=self.sources, secrets=self.secrets,
                        line=4) as plan:
            yield plan

    def run(self, script: str, *specs: RunMount, user: str = "0:0",
            alone: bool = True) -> tuple[int, str]:
        """Run ``sh -c script`` with ``specs`` mounted; checks that every mount is gone
        afterwards, and (when it runs ``alone``) every source view and scratch file."""
        before = mount_table(self.rootfs.parent)
        chunks: list[bytes] = []
        with self.mounts(specs) as plan:
            spec = RunSpec(("sh", "-c", script), (PATH, *plan.env), user=user,
                           extra_mounts=plan.mounts)
            result: RunResult = NamespaceExecutor(output=chunks.append, timeout=30).run(
                spec, self.rootfs)
        assert mount_table(self.rootfs.parent) == before
        if alone:
            self.check_clean()
        return result.exit_code, b"".join(chunks).decode()


    def twin(self, name: str) -> Build:
        """Another build with its own rootfs and scratch that shares this one's caches."""
        rootfs = self.rootfs.with_name(f"rootfs-{name}")
        subprocess.run(["cp", "-a", str(self.rootfs), str(rootfs)], check=True)
        return Build(rootfs, self.cache_root, self.scratch.with_name(f"scratch-{name}"),
                     self.context, self.sources, self.secrets)

    def check_clean(self) -> None:
        """No source view open, nothing left in the scratch directory."""
        assert self.sources.open == []
        assert list(self.scratch.iterdir()) == []


#: Where a Docker engine and other test runs on this machine mount and unmount at any time.
ELSEWHERE = ("/var/lib/docker/", "/run/docker/", "/run/netns/", "/run/containerd/",
             tempfile.gettempdir().rstrip("/") + "/")


def mount_table(root: Path) -> list[tuple[int, str]]:
    """The host's mounts a leak from a run under ``root`` would show in: those under
    ``root`` and those outside the places other programs change meanwhile."""
    inside = f"{str(root).rstrip('/')}/"
    return [(m.mount_id, m.mount_point) for m in mountinfo()
            if m.mount_point.startswith(inside) or not m.mount_point.startswith(ELSEWHERE)]


def tree(root: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """Every path under ``root`` with its mode, owner and (for files) content."""
    found: dict[str, tuple[int, int, int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
            found[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, data)
    return found


@pytest.fixture
def build(busybox_rootfs: Path, tmp_path: Path) -> Build:
    rootfs = tmp_path / "rootfs"
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(rootfs)], check=True)
    context = tmp_path / "context"
    context.mkdir()
    (context / "app.txt").write_text("from the context\n")
    (context / "dir").mkdir()
    (context / "dir/inner.txt").write_text("inner\n")
    return Build(rootfs, tmp_path / "cache", tmp_path / "scratch", context, Sources(), {})


def test_cache_persists_between_runs_and_never_reaches_the_rootfs(build: Build) -> None:
    before = tree(build.rootfs)
    cache = CacheMount("/root/.cache/pip", mode=0o770, uid=1000, gid=100)
    code, out = build.run("echo one >> /root/.cache/pip/log; stat -c '%a %u %g' "
                          "/root/.cache/pip", cache)
    assert (code, out) == (0, "770 1000 100\n")
    code, out = build.run("cat /root/.cache/pip/log; echo two >> /root/.cache/pip/log", cache)
    assert (code, out) == (0, "one\n")
    assert tree(build.rootfs) == before
    [directory] = [p for p in build.cache_root.iterdir() if p.is_dir()]
    assert (directory / "log").read_text() == "one\ntwo\n"
    assert "/" not in directory.name and len(directory.name) == 64


def test_cache_id_is_shared_across_targets_and_separate_from_other_ids(build: Build) -> None:
    assert build.run("echo hi > /a/f", CacheMount("/a", id="shared"))[0] == 0
    assert build.run("cat /b/f", CacheMount("/b", id="shared")) == (0, "hi\n")
    assert build.run("ls -A /a", CacheMount("/a")) == (0, "")


def test_readonly_cache_cannot_be_written(build: Build) -> None:
    code, out = build.run("touch /c/f", CacheMount("/c", readonly=True))
    assert code != 0
    assert "Read-only file system" in out


def test_cache_from_a_stage_seeds_a_new_cache_only(build: Build, tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    (stage / "seed").mkdir(parents=True)
    (stage / "seed/f").write_text("seeded\n")
    build.sources.roots["deps"] = stage
    cache = CacheMount("/c", from_="deps", source="/seed")
    assert build.run("cat /c/f; echo more >> /c/f", cache) == (0, "seeded\n")
    (stage / "seed/f").write_text("changed\n")
    assert build.run("cat /c/f", cache) == (0, "seeded\nmore\n")
    assert build.sources.opened == ["deps"]


def test_cache_source_without_from_is_a_subdirectory(build: Build) -> None:
    assert build.run("echo x > /c/f", CacheMount("/c", id="go", source="build")) == (0, "")
    assert build.run("cat /all/build/f", CacheMount("/all", id="go")) == (0, "x\n")


def run_concurrently(builds: Sequence[Build], scripts: Sequence[str],
                     spec: RunMount) -> list[tuple[int, str]]:
    """Run ``scripts[i]`` in ``builds[i]``, all at once in threads; their results."""
    results: list[tuple[int, str]] = [(-1, "")] * len(builds)

    def one(i: int) -> None:
        results[i] = builds[i].run(scripts[i], spec)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(builds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_locked_cache_serializes_concurrent_runs(build: Build) -> None:
    cache = CacheMount("/c", id="apt", sharing="locked")
    script = "mkdir /c/busy || exit 9; sleep 0.5; rmdir /c/busy"
    started = time.monotonic()
    results = run_concurrently([build, build.twin("b")], [script, script], cache)
    assert results == [(0, ""), (0, "")]
    assert time.monotonic() - started >= 1.0


def test_shared_cache_is_used_concurrently(build: Build) -> None:
    cache = CacheMount("/c", id="npm")
    scripts = [f"touch /c/{me}; i=0; until [ -e /c/{other} ]; do sleep 0.05;"
               f" i=$((i+1)); [ $i -gt 200 ] && exit 9; done; echo met"
               for me, other in (("a", "b"), ("b", "a"))]
    results = run_concurrently([build, build.twin("b")], scripts, cache)
    assert results == [(0, "met\n"), (0, "met\n")]


def test_private_cache_in_use_gives_a_throwaway_directory(build: Build) -> None:
    assert build.run("echo kept > /c/f", CacheMount("/c", id="p")) == (0, "")
    private = CacheMount("/c", id="p", sharing="private")
    with build.mounts([CacheMount("/c", id="p", sharing="locked")]):
        assert build.run("ls -A /c; echo lost > /c/g", private, alone=False) == (0, "")
    assert build.run("ls /c", private) == (0, "f\n")


def test_bind_from_the_context_is_read_only(build: Build) -> None:
    before = tree(build.rootfs)
    code, out = build.run("cat /src/app.txt /src/dir/inner.txt; touch /src/new",
                          BindSpec("/src"))
    assert code != 0
    assert out.startswith("from the context\ninner\n")
    assert "Read-only file system" in out
    assert sorted(p.name for p in build.context.iterdir()) == ["app.txt", "dir"]
    assert tree(build.rootfs) == before


def test_bind_of_one_file(build: Build) -> None:
    code, out = build.run("cat /etc/app.txt", BindSpec("/etc/app.txt", source="app.txt"))
    assert (code, out) == (0, "from the context\n")
    assert not (build.rootfs / "etc/app.txt").exists()


def test_readwrite_bind_writes_are_discarded(build: Build) -> None:
    spec = BindSpec("/src", source="dir", readwrite=True)
    code, out = build.run("echo changed > /src/inner.txt; touch /src/new; cat /src/inner.txt",
                          spec)
    assert (code, out) == (0, "changed\n")
    assert (build.context / "dir/inner.txt").read_text() == "inner\n"
    assert not (build.context / "dir/new").exists()
    assert build.run("cat /src/inner.txt", spec) == (0, "inner\n")


def test_bind_from_a_stage_resolves_symlinks_inside_it(build: Build, tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    (stage / "real").mkdir(parents=True)
    (stage / "real/data").write_text("stage data\n")
    (stage / "link").symlink_to("/real")
    (stage / "up").symlink_to("../../../../..")
    (tmp_path / "outside.txt").write_text("host file\n")
    build.sources.roots["builder"] = stage
    assert build.run("cat /m/data", BindSpec("/m", "link", "builder")) == (0, "stage data\n")
    assert build.run("cat /m/data", BindSpec("/m", "up/real", "builder")) == (0, "stage data\n")
    with pytest.raises(DockerfileError, match=r"'up/outside\.txt' not found in 'builder'") as err:
        build.run("true", BindSpec("/m", "up/outside.txt", "builder"))
    assert err.value.line == 4
    assert build.sources.open == []


def test_bind_source_missing_or_unknown_stage(build: Build) -> None:
    with pytest.raises(DockerfileError, match="'nope' not found in the build context"):
        build.run("true", BindSpec("/m", "nope"))
    with pytest.raises(BuildError, match="no stage or image named 'ghost'"):
        build.run("true", BindSpec("/m", from_="ghost"))
    assert list(build.scratch.iterdir()) == []


def test_tmpfs_is_a_tmpfs(build: Build) -> None:
    before = tree(build.rootfs)
    code, out = build.run("grep ' /var/tmp/t ' /proc/mounts; echo x > /var/tmp/t/f",
                          TmpfsSpec("/var/tmp/t", 2 << 20))
    assert code == 0
    fields = out.split()
    assert fields[1:3] == ["/var/tmp/t", "tmpfs"]
    assert "size=2048k" in fields[3].split(",")
    assert tree(build.rootfs) == before


def test_secret_file_is_readable_with_its_mode_and_leaves_no_trace(build: Build,
                                                                   tmp_path: Path) -> None:
    value = b"hunter2-" + os.urandom(8).hex().encode()
    (tmp_path / "secret.txt").write_bytes(value)
    build.secrets["tok"] = SecretSource("tok", path=tmp_path / "secret.txt")
    before = tree(build.rootfs)
    code, out = build.run("stat -c '%a %u %g' /run/secrets/tok; cat /run/secrets/tok",
                          SecretSpec("tok"))
    assert (code, out) == (0, "400 0 0\n" + value.decode())
    code, out = build.run("stat -c '%a %u %g' /etc/tok; cat /etc/tok",
                          SecretSpec("tok", "/etc/tok", mode=0o440, uid=1000, gid=100),
                          user="1000:1000")
    assert (code, out) == (0, "440 1000 100\n" + value.decode())
    code, out = build.run("cat /run/secrets/tok", SecretSpec("tok"), user="1000:1000")
    assert code != 0
    assert "Permission denied" in out
    assert tree(build.rootfs) == before
    assert not any(value in (data or b"") for *_, data in tree(build.rootfs).values())
    assert (tmp_path / "secret.txt").read_bytes() == value


def test_secret_as_environment_variable(build: Build, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_TOKEN", "from-env")
    build.secrets["tok"] = SecretSource("tok", env="CI_TOKEN")
    assert build.run('echo "$TOKEN"; ls /run', SecretSpec("tok", env="TOKEN"))[1].startswith(
        "from-env\nls: /run: No such file or directory")
    code, out = build.run('echo "$TOKEN"; cat /s', SecretSpec("tok", "/s", env="TOKEN"))
    assert (code, out) == (0, "from-env\nfrom-env")


def test_missing_secret_is_skipped_unless_required(build: Build) -> None:
    code, out = build.run("test -e /run/secrets/gone || echo absent; echo \"[$GONE]\"",
                          SecretSpec("gone"), SecretSpec("gone2", env="GONE"))
    assert (code, out) == (0, "absent\n[]\n")
    with pytest.raises(DockerfileError, match="secret 'gone' is required") as caught:
        build.run("true", SecretSpec("gone", required=True))
    assert caught.value.line == 4
    build.secrets["unset"] = SecretSource("unset", env="PYBUILD_TEST_UNSET_VARIABLE")
    with pytest.raises(DockerfileError, match="secret 'unset' is required"):
        build.run("true", SecretSpec("unset", required=True))
    assert list(build.scratch.iterdir()) == []


def test_everything_is_cleaned_up_on_an_exception(build: Build, tmp_path: Path) -> None:
    (tmp_path / "s").write_text("v")
    build.secrets["s"] = SecretSource("s", path=tmp_path / "s")
    build.sources.roots["st"] = build.context
    specs = [CacheMount("/c", id="x", sharing="locked"), BindSpec("/b", from_="st",
                                                                  readwrite=True),
             SecretSpec("s"), TmpfsSpec("/t")]
    with pytest.raises(RuntimeError), build.mounts(specs) as plan:
        kinds = sorted(type(m).__name__ for m in plan.mounts)
        assert kinds == ["BindMount", "BindMount", "BindMount", "TmpfsMount"]
        raise RuntimeError("interrupted")
    assert list(build.scratch.iterdir()) == []
    assert build.sources.open == []
    private = CacheMount("/c", id="x", sharing="private")
    with build.mounts([private]) as plan:
        [mount] = plan.mounts
        assert isinstance(mount, BindMount)
        assert Path(mount.source).parent == build.cache_root


def test_plan_keeps_the_order_and_targets(build: Build) -> None:
    build.secrets["s"] = SecretSource("s", env="HOME")
    with build.mounts([TmpfsSpec("/t", 4096), SecretSpec("s", env="S"),
                       BindSpec("/b", "app.txt")]) as plan:
        assert plan.mounts == (TmpfsMount("/t", 4096),
                               BindMount(str(build.context / "app.txt"), "/b", True))
        assert plan.env == (f"S={os.environ['HOME']}",)
