"""Configuration changes in the audit log: the seam through which the services that change a
registry's configuration (projects and their members, tag immutability and retention rules,
retention runs) log what they did, without knowing where the log is.

A service is given a :class:`ChangeRecorder` when it is built
(:func:`registry.audit.change_recorder` gives the one of a registry's settings) and hands it
the events of each change it made, built with :func:`change_event`. The CLI and the API call
the same service, so each change is recorded once, whoever asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from registry.audit.events import AuditEvent, local_actor

__all__ = ["ActorAddress", "ChangeRecorder", "change_event"]

ActorAddress = tuple[str, str] | None
"""Who made a change: (subject, client address); ``None`` for the ``registry`` command on
this host (the operating-system user at address ``local``)."""


class ChangeRecorder(Protocol):
    """Logs the events of configuration changes (in a server process queued, elsewhere
    written at once; see :func:`registry.audit.record`)."""

    def __call__(self, events: Sequence[AuditEvent]) -> None:
        """Log ``events``."""


def change_event(action: str, actor: ActorAddress = None, *, project: str = "",
                 repository: str = "", reference: str = "", digest: str = "",
                 detail: str = "") -> AuditEvent:
    """The event of configuration change ``action`` (``project.create``, ``member.add``,
    …) by ``actor`` to ``project`` (or ``repository``); ``detail`` says what changed in a
    line."""
    subject, address = actor if actor is not None else local_actor()
    return AuditEvent(action, subject, address, repository, reference, digest, detail,
                      project=project)
