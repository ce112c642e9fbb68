"""Running a replication rule: choose the repositories and tags, copy each with a
:class:`~registry.replication.copier.Copier`, delete what the source no longer has (when
the rule says so), and record the run with its counts in the store and the audit log.

This registry is reached over its own HTTP API (at the rule's ``local_url``, by default the
``addr`` it serves on), the other one at the rule's URL; both with the credentials of the
docker-style ``config.json`` the client uses (``pybuild login HOST``). A run renews a lease
on its rule while it works, so one rule runs once at a time; a run whose process died
(``kill -9``, a crash) is taken over by the next one, which finds by ``HEAD`` what already
arrived and does not send it again, and resumes blob downloads from the spool.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from layerstore.content.local import LocalStore
from registry.client.catalog import head_manifest, list_repositories, list_tags
from registry.client.credentials import default_config_path
from registry.client.errors import (
    ClientError,
    DigestMismatch,
    NotFound,
    ProtocolError,
    Unauthorized,
)
from registry.client.reference import Reference
from registry.client.settings import ClientSettings, load_settings
from registry.client.transport import Transport
from registry.config import Settings
from registry.replication.copier import FALLBACK_TAG, Copier, Tally
from registry.replication.lease import RunRecorder, runner_id, take_rule
from registry.replication.model import (
    FAILED,
    PUSH,
    RUNNING,
    SUCCEEDED,
    ReplicationError,
    Rule,
    Run,
)
from registry.replication.patterns import compile_pattern, literal_names
from registry.replication.store import ReplicationStore

__all__ = ["Endpoints", "Plan", "local_url", "open_endpoints", "run_rule"]

SPOOL = "replication/spool"


def local_url(rule: Rule, settings: Settings) -> str:
    """How the replicator reaches this registry: the rule's ``local_url``, else ``addr``
    (a wildcard address becomes loopback)."""
    if rule.local_url:
        return rule.local_url
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host,
                                                                       settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if settings.tls_enabled else 'http'}://{host}:{settings.port}"


@dataclass(frozen=True)
class Endpoints:
    """The two sides of a rule: transports and how to name each in messages."""

    source: Transport
    destination: Transport
    source_name: str
    destination_name: str
    source_url: str
    destination_url: str

    def sides(self) -> tuple[tuple[Transport, str, str], ...]:
        """Each side's transport, name and URL."""
        return ((self.source, self.source_name, self.source_url),
                (self.destination, self.destination_name, self.destination_url))

    def close(self) -> None:
        """Close both transports."""
        self.source.close()
        self.destination.close()


def _transport(url: str, client: ClientSettings) -> Transport:
    netloc = url.split("://", 1)[1]
    return Transport(netloc, client, url=url)


def open_endpoints(rule: Rule, settings: Settings,
                   client: ClientSettings | None = None) -> Endpoints:
    """Open the transports of ``rule``: this registry and the remote one."""
    client = client or load_settings()
    here = local_url(rule, settings)
    mine = f"this registry ({'local_url' if rule.local_url else 'addr'} {here})"
    remote = f"{rule.flag} {rule.url}"
    ours, theirs = _transport(here, client), _transport(rule.url, client)
    if rule.direction == PUSH:
        return Endpoints(ours, theirs, mine, remote, here, rule.url)
    return Endpoints(theirs, ours, remote, mine, rule.url, here)


def explain(exc: ClientError, endpoints: Endpoints) -> str:
    """A one-line message for a client error, naming the side (and setting) concerned."""
    side = ""
    for transport, name, _ in endpoints.sides():
        if exc.registry and exc.registry == transport.registry:
            side = name
    text = str(exc)
    if isinstance(exc, Unauthorized):
        text += f" (credentials come from {default_config_path()})"
    return f"{side}: {text}" if side else text


def check_reachable(endpoints: Endpoints) -> None:
    """Contact both sides once; ReplicationError naming the side that fails."""
    for transport, name, url in endpoints.sides():
        try:
            transport.probe()
        except httpx.TransportError as exc:
            failure = transport.unreachable(exc, f"{url}/v2/")
            raise ReplicationError(f"{name}: {failure}") from None
        except ClientError as exc:
            raise ReplicationError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class Plan:
    """What a dry run found: ``copy`` (repository, tag, digest) to copy, ``delete``
    (repository, tag) to delete."""

    copy: tuple[tuple[str, str, str], ...]
    delete: tuple[tuple[str, str], ...]


def _tags(transport: Transport, repository: str) -> list[str]:
    try:
        return list_tags(Reference(transport.registry, repository, tag="latest"),
                         transport=transport)
    except NotFound:
        return []


def _head(transport: Transport, repository: str, tag: str) -> str:
    found = head_manifest(Reference(transport.registry, repository, tag=tag),
                          transport=transport)
    return "" if found is None else str(found.digest)


class _Job:
    """One run in progress: selection, copying, deletions, progress reports."""

    def __init__(self, rule: Rule, endpoints: Endpoints, spool: Path,
                 tally: Tally, only: tuple[str, str] | None) -> None:
        self.rule = rule
        self.endpoints = endpoints
        self.repos = compile_pattern(rule.repos, "--repos")
        self.tags = compile_pattern(rule.tags, "--tags")
        self.tally = tally
        self.only = only
        self.spool = spool

    def selection(self) -> dict[str, list[str]]:
        """The source's repositories and all their tags that the rule selects (an
        on-push run: the one repository)."""
        source = self.endpoints.source
        if self.only is not None:
            repository, tag = self.only
            if not self.repos.matches(repository) or (tag and not self.tags.matches(tag)):
                return {}
            names = [repository]
        else:
            names = literal_names(self.rule.repos) or [
                n for n in list_repositories(source) if self.repos.matches(n)]
        return {name: sorted(t for t in _tags(source, name)
                             if self.tags.matches(t) and not FALLBACK_TAG.match(t))
                for name in sorted(names)}

    def to_copy(self, tags: list[str]) -> list[str]:
        """Of a repository's selected ``tags``, those this run copies (an on-push run for
        a tag: that one)."""
        if self.only is not None and self.only[1]:
            return [t for t in tags if t == self.only[1]]
        return tags

    def stale(self, repository: str, tags: list[str]) -> list[str]:
        """The destination's selected tags of ``repository`` the source does not have
        (``tags``: all the source's selected ones); an on-push run for a tag deletes at
        most that one."""
        have = set(tags)
        gone = sorted(t for t in _tags(self.endpoints.destination, repository)
                      if self.tags.matches(t) and not FALLBACK_TAG.match(t) and t not in have)
        if self.only is not None and self.only[1]:
            return [t for t in gone if t == self.only[1]]
        return gone

    def plan(self) -> Plan:
        """What a run would do (nothing is changed)."""
        copy: list[tuple[str, str, str]] = []
        delete: list[tuple[str, str]] = []
        for repository, tags in self.selection().items():
            for tag in self.to_copy(tags):
                digest = _head(self.endpoints.source, repository, tag)
                if digest and digest != _head(self.endpoints.destination, repository, tag):
                    copy.append((repository, tag, digest))
            if self.rule.deletes:
                delete += [(repository, t) for t in self.stale(repository, tags)]
        return Plan(tuple(copy), tuple(delete))

    def run(self) -> None:
        """Copy the selection, then delete what the rule says."""
        self.spool.mkdir(parents=True, exist_ok=True)
        copier = Copier(self.endpoints.source, self.endpoints.destination,
                        LocalStore(self.spool), self.tally,
                        concurrency=self.endpoints.destination.settings.max_concurrency)
        failed: list[str] = []
        total = 0
        for repository, tags in self.selection().items():
            for tag in self.to_copy(tags):
                total += 1
                try:
                    copier.copy(repository, tag)
                except (NotFound, ProtocolError, DigestMismatch) as exc:
                    # One broken image does not hold back the others; the run fails.
                    failed.append(f"{repository}:{tag}: {explain(exc, self.endpoints)}")
            if self.rule.deletes:
                for tag in self.stale(repository, tags):
                    self._delete(repository, tag)
        if failed:
            raise ReplicationError(f"{len(failed)} of {total} tags not copied; the first: "
                                   f"{failed[0]}")

    def _delete(self, repository: str, tag: str) -> None:
        """Delete ``tag`` on the destination: by tag where the registry allows it, else
        its manifest by digest when no other tag of the source's names it."""
        destination = self.endpoints.destination
        scopes = (f"repository:{repository}:delete",)
        response = destination.request("DELETE", f"/v2/{repository}/manifests/{tag}",
                                       what=f"{repository}:{tag}", scopes=scopes,
                                       ok=(202, 404, 400, 405))
        if response.status_code == 202:
            self.tally.add(deleted=1)
            return
        digest = _head(destination, repository, tag)
        if not digest:
            return
        for other in _tags(destination, repository):
            if other != tag and _head(destination, repository, other) == digest:
                return
        destination.request("DELETE", f"/v2/{repository}/manifests/{digest}",
                            what=f"{repository}@{digest}", scopes=scopes,
                            ok=(202, 404))
        self.tally.add(deleted=1)


def run_rule(rule: Rule, settings: Settings, store: ReplicationStore, *, trigger: str,
             dry_run: bool = False, only: tuple[str, str] | None = None,
             client: ClientSettings | None = None) -> tuple[Run, Plan | None]:
    """Run ``rule`` once (``only``: just one repository and tag, for on-push); the run as
    recorded and, for a dry run, the plan. Failures end the run as ``failed`` with the
    error recorded (ReplicationError for a rule that cannot be run at all)."""
    endpoints = open_endpoints(rule, settings, client)
    try:
        if dry_run:
            check_reachable(endpoints)
            job = _Job(rule, endpoints, Path(), Tally(), only)
            try:
                return Run(0, rule.name, trigger, SUCCEEDED, time.time(), dry_run=True), \
                    job.plan()
            except ClientError as exc:
                raise ReplicationError(explain(exc, endpoints)) from None
        return _run(rule, settings, store, endpoints, trigger, only), None
    finally:
        endpoints.close()


def _run(rule: Rule, settings: Settings, store: ReplicationStore, endpoints: Endpoints,
         trigger: str, only: tuple[str, str] | None) -> Run:
    from registry.replication import events

    now = time.time()
    resumed = take_rule(store, rule, now)
    run = store.start_run(Run(0, rule.name, trigger, RUNNING, now, heartbeat=now,
                              resumed=resumed, runner=runner_id()))
    events.started(settings, rule, run)
    recorder = RunRecorder(store, run)
    job = _Job(rule, endpoints, settings.root / SPOOL / rule.name, recorder.tally, only)
    try:
        with recorder:
            check_reachable(endpoints)
            job.run()
    except ClientError as exc:
        recorder.finish(FAILED, explain(exc, endpoints))
    except ReplicationError as exc:
        recorder.finish(FAILED, str(exc))
    except BaseException as exc:
        recorder.finish(FAILED, f"{type(exc).__name__}: {exc}")
        raise
    else:
        recorder.finish(SUCCEEDED, "")
        # What a finished run leaves in the spool (downloads cut off in an earlier run of
        # blobs the destination has since got) is of no more use.
        shutil.rmtree(settings.root / SPOOL / rule.name, ignore_errors=True)
    finally:
        store.release(rule.name)
    events.finished(settings, rule, recorder.run)
    return recorder.run
