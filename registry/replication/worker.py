"""The replication worker of a server process: a thread that runs the rules triggered in
this process.

* ``--on-push`` rules: the audit writer hands each written batch of events to
  :meth:`ReplicationWorker.notify`; each push to a repository a rule selects becomes a run
  of that rule limited to the repository and the tag pushed (a push by digest — a
  referrer, a platform image — runs it for the repository's selected tags, which brings
  the new referrers along); with ``--deletes``, a tag deleted here is deleted there. A
  rule another process is running is tried again a second
  later; pushes that a server stopped before replicating are copied by the rule's next
  manual or scheduled run.
* ``--every`` rules: when a rule is due, the process that moves its ``next_at`` on first
  (a compare-and-set in the store) runs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from layerstore.errors import LayerstoreError
from registry.audit.events import DELETE, PUSH, AuditEvent
from registry.audit.store import is_unavailable
from registry.config import Settings
from registry.replication.model import ON_PUSH, SCHEDULE, ReplicationError, Rule, RuleBusy
from registry.replication.model import PUSH as PUSH_RULE
from registry.replication.patterns import compile_pattern
from registry.replication.runner import run_rule
from registry.replication.store import ReplicationStore, existing_replication_store
from registry.webhooks.service import BLOB_DETAIL

__all__ = ["POLL_SECONDS", "ReplicationWorker"]

POLL_SECONDS = 1.0
RULES_SECONDS = 5.0
log = logging.getLogger("registry.replication")


def _selects(rule: Rule, repository: str, tag: str) -> bool:
    try:
        if not compile_pattern(rule.repos, "--repos").matches(repository):
            return False
        return not tag or compile_pattern(rule.tags, "--tags").matches(tag)
    except ReplicationError:
        return False


class ReplicationWorker:
    """Runs the on-push and scheduled rules of ``settings`` in a thread until
    :meth:`close` (module docstring)."""

    def __init__(self, settings: Settings, store: ReplicationStore | None = None) -> None:
        self.settings = settings
        self._store = store
        self._pending: dict[tuple[str, str], None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._rules: list[Rule] = []
        self._rules_at = 0.0
        self._thread = threading.Thread(target=self._run, name="registry-replication",
                                        daemon=True)

    def start(self) -> ReplicationWorker:
        """Start the thread."""
        self._thread.start()
        return self

    def notify(self, events: Sequence[AuditEvent]) -> None:
        """Take note of the pushes and the manifest and tag deletes among ``events``
        (called by the audit writer)."""
        pushes = [(e.repository, "" if ":" in e.reference else e.reference)
                  for e in events if e.repository and (
                      e.action == PUSH or (e.action == DELETE and e.detail != BLOB_DETAIL))]
        if not pushes:
            return
        with self._lock:
            for key in pushes:
                self._pending[key] = None
        self._wake.set()

    def close(self) -> None:
        """Stop (waiting a few seconds for a run in progress to end)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            # A run in progress does not hold up the shutdown: the next run takes it over.
            self._thread.join(5)
        if self._store is not None and not self._thread.is_alive():
            self._store.close()

    @property
    def store(self) -> ReplicationStore:
        """The rules' store (opened once there is one: a root without rules gets no
        ``replication.db`` from a server)."""
        assert self._store is not None
        return self._store

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            try:
                self.run_once()
            except Exception as exc:
                if isinstance(exc, LayerstoreError) or is_unavailable(exc):
                    log.error("replication worker: the rules cannot be read: %s", exc)
                else:
                    log.exception("replication worker failed")

    def rules(self, now: float) -> list[Rule]:
        """The triggered rules (re-read every few seconds, or at once when pushes wait)."""
        if now - self._rules_at >= RULES_SECONDS:
            self._rules_at = now
            if self._store is None:
                self._store = existing_replication_store(self.settings)
            if self._store is None:
                self._rules = []
                return []
            self._rules = [r for r in self._store.rules() if r.trigger in (ON_PUSH, SCHEDULE)]
        return self._rules

    def run_once(self, now: float | None = None) -> int:
        """Run what is due now; how many runs were made."""
        now = time.time() if now is None else now
        with self._lock:
            pending, self._pending = list(self._pending), {}
        if pending:
            self._rules_at = 0.0
        rules = self.rules(now)
        done = 0
        retry: list[tuple[str, str]] = []
        for repository, tag in pending:
            for rule in rules:
                if self._stop.is_set():
                    return done
                if rule.trigger != ON_PUSH or rule.direction != PUSH_RULE or not _selects(
                        rule, repository, tag):
                    continue
                if self._start(rule, ON_PUSH, (repository, tag)):
                    done += 1
                else:
                    retry.append((repository, tag))
        for rule in rules:
            if self._stop.is_set():
                break
            if rule.trigger == SCHEDULE and rule.next_at <= now and self.store.advance(
                    rule.name, rule.next_at, now + rule.interval):
                self._rules_at = 0.0
                done += self._start(rule, SCHEDULE, None)
        if retry:
            with self._lock:
                for key in retry:
                    self._pending[key] = None
        return done

    def _start(self, rule: Rule, trigger: str, only: tuple[str, str] | None) -> bool:
        """Run ``rule``; False when another process is running it (try again later)."""
        try:
            run, _ = run_rule(rule, self.settings, self.store, trigger=trigger, only=only)
        except RuleBusy:
            return False
        except ReplicationError as exc:
            log.error("replication rule %s (%s): %s", rule.name, trigger, exc)
            return True
        if run.error:
            log.error("replication rule %s (%s): run %d failed: %s", rule.name, trigger,
                      run.id, run.error)
        return True
