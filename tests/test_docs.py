"""The documentation (README.md and docs/) is checked against the code.

* Every ``pybuild`` and ``registry`` command shown in a fenced block parses with the real
  command-line parsers (flags, choices, values); a command in an inline code span uses only
  flags its subcommand has; a bare ``--flag`` span names a flag of one of the two commands.
* Every TOML block is a valid registry config, or a valid builder config when it has a
  ``[limits]`` table or ``insecure-entitlements``; every JSON block with registry keys is a valid
  ``--registry-config`` file.
* docs/registry.md's configuration reference lists exactly the settings of
  :class:`registry.config.Settings`, each with its variable and its default.
* docs/architecture.md names only paths that exist, and every subpackage.
* Every ``sh`` block runs, in order, document by document, unless marked. A marker is an HTML
  comment on the line before the block: ``<!-- docs-test: skip REASON -->`` (checked, not
  run) or ``<!-- docs-test: serve -->`` (a ``registry serve`` command: started on a free port
  with a fresh root, stopped once it answers).

The blocks run with ``bash -euo pipefail`` in a scratch directory that holds a Dockerfile
(``FROM busybox``) and links to the repository's ``deploy/`` and ``examples/``, against a
registry (TLS, token auth, ``deploy/registry.toml``, user ``admin``) whose CA is trusted in
``/etc/docker/certs.d``. Its address replaces ``127.0.0.1:5000`` and its root
``/var/lib/registry``; the environment has ``REGISTRY`` (the address), ``REGISTRY_USER``,
``PASSWORD`` and ``REGISTRY_PASSWORD``, ``REGISTRY_CA`` (the CA's PEM), ``TAG``, and a
``PYBUILD_ROOT`` (which also replaces ``/var/lib/pybuild``) holding ``busybox:latest``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from builder import cli as pybuild_cli
from builder import config as builder_config
from builder import limits as builder_limits
from builder.errors import BuildError
from layerstore.content.local import LocalStore
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from registry import cli as registry_cli
from registry import gc as registry_gc
from registry.client.settings import load_settings as load_client_settings
from registry.config import ENV_PREFIX, Settings, load_settings, read_file
from registry.testing.processes import RegistryProcess, free_port, ours
from tests.builder.bases import busybox_image
from tests.peers import DOCKER, Dockerd, require

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
EXPECTED_DOCS = {"README.md", "quickstart.md", "ci.md", "registry.md", "flags.md", "network.md",
                 "architecture.md"}
PROGRAMS = ("pybuild", "registry")
PASSWORD = "docs-test-password"
DOC_ADDRESS = "127.0.0.1:5000"
BLOCK_TIMEOUT = 600
_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(skip|serve)\b\s*(.*?)\s*-->$")
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_WRAPPERS = {"sudo", "-E", "time", "exec", "command", "env"}
#: Keys of an ``[[access]]`` table that are no top-level setting.
RULE_ONLY_KEYS = {"repository", "actions", "users", "anonymous"}
_COMPOSE_VALUE_OPTIONS = {"-u", "--user", "-e", "--env", "-w", "--workdir", "--index"}


@dataclass(frozen=True)
class Block:
    """A fenced block of a document: its language, text, first line and marker."""

    doc: Path
    line: int
    lang: str
    text: str
    marker: str = ""
    reason: str = ""

    @property
    def where(self) -> str:
        """``file:line`` for messages."""
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def parse_doc(doc: Path) -> tuple[list[Block], list[tuple[int, str]]]:
    """The fenced blocks of ``doc`` and its inline code spans (line number, text)."""
    blocks: list[Block] = []
    spans: list[tuple[int, str]] = []
    lines = doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            spans += [(i + 1, m.group(1)) for m in _SPAN.finditer(lines[i])]
            i += 1
            continue
        start = i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(fence.group(1)):])
            i += 1
        previous = next((lines[j].strip() for j in range(start - 1, -1, -1)
                         if lines[j].strip()), "")
        marker = _MARKER.match(previous)
        blocks.append(Block(doc, start + 1, fence.group(2), "\n".join(body) + "\n",
                            marker.group(1) if marker else "",
                            marker.group(2) if marker else ""))
        i += 1
    return blocks, spans


def _tokens(line: str) -> list[str]:
    """Shell words and operators of one line ([] when it is not shell, e.g. YAML prose)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        return list(lexer)
    except ValueError:
        return []


def _segments(tokens: list[str]) -> Iterator[list[str]]:
    """Simple commands of a token list: split at operators, redirections left out."""
    current: list[str] = []
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
            continue
        if token and all(c in "();<>|&" for c in token):
            if "<" in token or ">" in token:
                if current and current[-1].isdigit():
                    current.pop()
                skip_next = True
                continue
            if current:
                yield current
            current = []
            continue
        current.append(token)
    if current:
        yield current


def _ours(segment: list[str]) -> list[str] | None:
    """``[program, args...]`` when the simple command runs pybuild or registry (also through
    sudo, env assignments, or ``docker-compose exec SERVICE``), else None."""
    i = 0
    while i < len(segment) and (_ASSIGNMENT.match(segment[i]) or segment[i] in _WRAPPERS):
        i += 1
    if i >= len(segment):
        return None
    name = segment[i].rsplit("/", 1)[-1]
    rest = segment[i + 1:]
    if name == "docker" and rest[:1] == ["compose"]:
        name, rest = "docker-compose", rest[1:]
    if name == "docker-compose":
        while rest and rest[0] not in ("exec", "run"):
            rest = rest[1:]
        rest = rest[1:]
        while rest and rest[0].startswith("-"):
            rest = rest[2:] if rest[0] in _COMPOSE_VALUE_OPTIONS else rest[1:]
        return _ours(rest[1:]) if rest else None
    if name in PROGRAMS:
        return [name, *rest]
    return None


def commands(script: str) -> list[list[str]]:
    """Every pybuild/registry command of a shell script (heredoc bodies left out)."""
    found = []
    heredoc = None
    for line in script.replace("\\\n", " ").splitlines():
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        tokens = _tokens(line)
        for index, token in enumerate(tokens[:-1]):
            if token == "<<":
                heredoc = tokens[index + 1].removeprefix("-")
        for segment in _segments(tokens):
            command = _ours(segment)
            if command:
                found.append(command)
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parse_error(argv: list[str]) -> str | None:
    """Why the real parser rejects ``argv`` (``[program, args...]``), or None."""
    program, args = argv[0], argv[1:]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if program == "pybuild":
                pybuild_cli._parser().parse_args(pybuild_cli._with_default_command(args))
            elif args[:1] == ["gc"]:
                _, rest = registry_cli._parser().parse_known_args(args)
                registry_gc._parser().parse_args(rest)
            else:
                registry_cli._parser().parse_args(args)
    except SystemExit as exc:
        if exc.code:
            return err.getvalue().strip().splitlines()[-1]
    return None


def option_strings(argv: list[str]) -> set[str]:
    """The flags the (sub)command ``argv`` names accepts, with the program's global ones."""
    program, args = argv[0], argv[1:]
    if program == "pybuild" and args[:1] == ["--root"]:
        args = args[2:]
    args = [a for a in args if not a.startswith("-")]
    top = pybuild_cli._parser() if program == "pybuild" else registry_cli._parser()
    parsers = [top]
    subs = _subparsers(top)
    if program == "pybuild" and (not args or args[0] not in subs):
        args = ["build", *args]
    while args and args[0] in subs:
        parsers.append(subs[args[0]])
        subs, args = _subparsers(subs[args[0]]), args[1:]
    if program == "registry" and len(parsers) > 1 and parsers[1].prog.endswith(" gc"):
        parsers.append(registry_gc._parser())
    return {o for p in parsers for a in p._actions for o in a.option_strings}


def every_flag() -> set[str]:
    """Every flag of every pybuild and registry (sub)command."""
    out: set[str] = set()
    stack = [pybuild_cli._parser(), registry_cli._parser(), registry_gc._parser()]
    while stack:
        parser = stack.pop()
        out |= {o for a in parser._actions for o in a.option_strings}
        stack += _subparsers(parser).values()
    return out


def all_blocks() -> list[Block]:
    """The fenced blocks of every document."""
    return [b for doc in DOCS for b in parse_doc(doc)[0]]


def test_the_documents_exist() -> None:
    assert {d.name for d in DOCS} >= EXPECTED_DOCS
    readme = (REPO / "README.md").read_text().splitlines()
    assert readme[2:6] == ["```sh", readme[3], readme[4], "```"]
    assert readme[3].startswith("bash scripts/demo.sh ") and "#" in readme[3]
    assert readme[4].startswith("bash scripts/test.sh ") and "#" in readme[4]


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_commands_parse(doc: Path) -> None:
    blocks, spans = parse_doc(doc)
    problems = []
    for block in blocks:
        if block.lang in ("toml", "json", "text", "ini"):
            continue
        for command in commands(block.text):
            error = parse_error(command)
            if error:
                problems.append(f"{block.where}: {shlex.join(command)}: {error}")
    known = every_flag()
    for line, span in spans:
        try:
            tokens = shlex.split(span)
        except ValueError:
            continue
        if not tokens:
            continue
        command = _ours(tokens)
        flags = {t.split("=", 1)[0] for t in command or tokens if re.match(r"^--?[a-zA-Z]", t)}
        if command is not None:
            if parse_error(command) is None:
                continue  # a whole command: its flags are fine
            missing = flags - option_strings(command)  # a fragment: its flags must exist
        elif re.match(r"^--?[a-zA-Z]", tokens[0]):
            missing = flags - known
        else:
            continue
        if missing:
            problems.append(f"{doc.name}:{line}: `{span}`: no such flag {sorted(missing)}")
    assert not problems, "\n".join(problems)


def test_every_marker_gives_a_reason() -> None:
    for block in all_blocks():
        if block.marker == "skip":
            assert block.reason, f"{block.where}: say why the block is not run"
        if block.marker == "serve":
            assert [c[:2] for c in commands(block.text)] == [["registry", "serve"]], block.where


def test_config_snippets_are_valid(tmp_path: Path) -> None:
    checked = 0
    for block in all_blocks():
        path = tmp_path / f"snippet-{checked}"
        if block.lang == "toml" and re.search(r"^(\[limits\]|insecure-entitlements)",
                                              block.text, re.M):
            path.write_text(block.text)
            try:
                builder_settings = builder_config.load(path)
                builder_limits.from_config(builder_settings.limits, path)
            except BuildError as exc:
                pytest.fail(f"{block.where}: {exc}")
            checked += 1
        elif block.lang == "toml":
            path.write_text(block.text)
            try:
                load_settings(path, {}, {})
            except ValueError as exc:
                pytest.fail(f"{block.where}: {exc}")
            checked += 1
        elif block.lang == "json" and "registry-mirrors" in block.text:
            path.write_text(block.text)
            load_client_settings(path, environ={})
            checked += 1
    for doc in DOCS:
        for line, span in parse_doc(doc)[1]:
            if re.match(r"^[a-z_]+ = \S", span) and span.split()[0] not in RULE_ONLY_KEYS:
                path = tmp_path / f"span-{checked}.toml"
                path.write_text(span + "\n")
                try:
                    read_file(path)
                except ValueError as exc:
                    pytest.fail(f"{doc.name}:{line}: `{span}`: {exc}")
                checked += 1
    assert checked >= 10


def _reference_rows() -> dict[str, str]:
    """The rows of docs/registry.md's configuration reference, by key."""
    text = (REPO / "docs/registry.md").read_text()
    section = text.split("### Configuration reference", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\|\s*`([a-z0-9_]+)`\s*\|", line)
        if match:
            rows[match.group(1)] = line
    return rows


def _toml_literal(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Path):
        return f'"{value}"'
    if isinstance(value, str) and value:
        return f'"{value}"'
    return None


def test_the_config_reference_lists_every_setting() -> None:
    rows = _reference_rows()
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert set(rows) == set(fields), (f"missing: {sorted(set(fields) - set(rows))}, "
                                      f"unknown: {sorted(set(rows) - set(fields))}")
    defaults = Settings()
    for name, row in rows.items():
        assert f"`{ENV_PREFIX}{name.upper()}`" in row, f"{name}: no environment variable"
        literal = _toml_literal(getattr(defaults, name))
        if literal is not None and name != "workers":
            assert f"`{literal}`" in row, f"{name}: the default is {literal}"


def test_the_architecture_page_matches_the_code() -> None:
    text = (REPO / "docs/architecture.md").read_text()
    named = {m.group(1).rstrip(".,") for m in re.finditer(
        r"(?<![\w/.-])((?:layerstore|registry|builder|tests|scripts|deploy)/[\w/.-]*)", text)}
    missing = [p for p in sorted(named) if not (REPO / p).exists()]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"
    packages = sorted({f"{p.parent.relative_to(REPO)}/"
                       for top in ("layerstore", "registry", "builder")
                       for p in (REPO / top).glob("*/*.py")})
    unnamed = [p for p in packages if p not in named]
    assert not unnamed, f"docs/architecture.md does not name {unnamed}"


# -- running the sh blocks ------------------------------------------------------------------


@dataclass
class Sandbox:
    """What the runnable blocks run against."""

    registry: RegistryProcess
    root: Path
    ca: Path

    @property
    def address(self) -> str:
        """``host:port`` of the registry."""
        return self.registry.address


@pytest.fixture(scope="module")
def sandbox(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A registry with TLS, token auth, deploy/registry.toml and the user admin, trusted."""
    require("curl")
    root = tmp_path_factory.mktemp("docs-registry") / "root"
    server = ours(root, tls=True, extra=["--config", str(REPO / "deploy/registry.toml")])
    subprocess.run([str(REPO / ".venv/bin/registry"), "user", "add", "admin",
                    "--password-stdin", "--root", str(root)], input=f"{PASSWORD}\n",
                   text=True, check=True, capture_output=True, timeout=60)
    server.start()
    certs = Path("/etc/docker/certs.d") / server.address
    try:
        certs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "tls/ca.crt", certs / "ca.crt")
        yield Sandbox(server, root, root / "tls/ca.crt")
    finally:
        server.stop()
        shutil.rmtree(certs, ignore_errors=True)
        listed = subprocess.run([DOCKER, "images", "--format", "{{.Repository}}:{{.Tag}}"],
                                capture_output=True, text=True, timeout=60).stdout.split()
        pulled = [name for name in listed if name.startswith(f"{server.address}/")]
        if pulled:
            subprocess.run([DOCKER, "rmi", "-f", *pulled], capture_output=True, timeout=120)


def _scratch(tmp_path: Path) -> tuple[Path, Path]:
    """The working directory of a document's blocks and its pybuild store (with busybox)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "Dockerfile").write_text("FROM busybox\nCOPY hello.txt /hello.txt\n"
                                     "RUN wc -c /hello.txt >/size\nCMD [\"cat\", \"/hello.txt\"]\n")
    (work / "hello.txt").write_text("hello from the docs\n")
    for name in ("deploy", "examples"):
        (work / name).symlink_to(REPO / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(DOCKER)
    content = LocalStore(tmp_path / "busybox/content")
    stored = busybox_image(content, tmp_path / "busybox")
    archive = tmp_path / "busybox.tar"
    write_docker_archive(archive, content, [ArchiveImage(stored, ("busybox:latest",))])
    store = tmp_path / "pybuild"
    subprocess.run([str(REPO / ".venv/bin/pybuild"), "--root", str(store), "load", "-i",
                    str(archive)], check=True, capture_output=True, timeout=300)
    return work, store


def _serve(block: Block, script: str, env: dict[str, str], log: Path) -> None:
    """Start the block's ``registry serve``, wait until it answers, stop it."""
    port = free_port()
    script = script.replace(":5000", f":{port}")
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "-c", "exec " + script.strip()], env=env,
                                cwd=env["PWD"], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{block.where}: exited:\n{log.read_text()[-3000:]}"
            for scheme in ("https", "http"):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{scheme}://127.0.0.1:{port}/v2/", verify=False,
                                 timeout=1).status_code < 500:
                        return
            time.sleep(0.2)
        pytest.fail(f"{block.where}: did not answer on port {port}:\n{log.read_text()[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def is_the_two_commands(block: Block) -> bool:
    """The README's first block: ``scripts/demo.sh`` (run by tests/test_compose.py) and
    ``scripts/test.sh`` (this test suite)."""
    return block.doc.name == "README.md" and block.line == 3


RUNNABLE = [d for d in DOCS
            if any(b.lang == "sh" and not b.marker and not is_the_two_commands(b)
                   for b in parse_doc(d)[0])]


@pytest.mark.parametrize("doc", RUNNABLE, ids=lambda d: d.name)
def test_the_sh_blocks_run(doc: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    work, store = _scratch(tmp_path)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith((ENV_PREFIX, "PYBUILD_", "DOCKER_"))}
    env.update(
        PATH=f"{tmp_path / 'bin'}:{REPO / '.venv/bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        PWD=str(work), PYBUILD_ROOT=str(store), DOCKER_CONFIG=str(tmp_path / "docker-config"),
        REGISTRY_ROOT=str(sandbox.root), REGISTRY=sandbox.address, REGISTRY_USER="admin",
        PASSWORD=PASSWORD, REGISTRY_PASSWORD=PASSWORD, REGISTRY_CA=sandbox.ca.read_text(),
        TAG="docs-1")
    ran = 0
    for block in parse_doc(doc)[0]:
        if block.lang != "sh" or block.marker == "skip" or is_the_two_commands(block):
            continue
        if block.marker == "serve":
            script = block.text.replace("/var/lib/registry", str(tmp_path / f"r{block.line}"))
            _serve(block, script, env, tmp_path / f"serve-{block.line}.log")
            continue
        script = (block.text.replace(DOC_ADDRESS, sandbox.address)
                  .replace("/var/lib/registry", str(sandbox.root))
                  .replace("/var/lib/pybuild", str(store)))
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
        assert proc.returncode == 0, (f"{block.where} failed ({proc.returncode}):\n{script}\n"
                                      f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        ran += 1
    assert ran
