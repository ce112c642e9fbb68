"""What a webhook receives: Harbor's default payload shape, and the signature header.

A delivery is ``POST <url>`` with ``Content-Type: application/json`` and the body::

    {"type": "PUSH_ARTIFACT", "occur_at": 1767225600, "operator": "ci",
     "event_data": {
        "resources": [{"digest": "sha256:…", "tag": "1",
                       "resource_url": "registry.example:5000/team/app:1"}],
        "repository": {"date_created": 1767225600, "name": "app", "namespace": "team",
                       "repo_full_name": "team/app", "repo_type": "private"}}}

``QUOTA_EXCEED`` adds ``event_data.custom_attributes.details``. The headers
``X-Pybuild-Event`` (the type) and ``X-Pybuild-Delivery`` (the delivery's id, the same on
every retry) come with it, and, when the webhook has a secret, ``X-Pybuild-Signature:
sha256=<hex>``: the lower-case hex HMAC-SHA256 of the exact body bytes keyed with the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from registry.audit.events import AuditEvent

__all__ = ["DELIVERY_HEADER", "EVENT_HEADER", "SIGNATURE_HEADER", "payload_of", "sign",
           "verify"]

SIGNATURE_HEADER = "X-Pybuild-Signature"
EVENT_HEADER = "X-Pybuild-Event"
DELIVERY_HEADER = "X-Pybuild-Delivery"


def sign(secret: str, body: bytes) -> str:
    """The ``X-Pybuild-Signature`` value of ``body``: ``sha256=`` and the hex HMAC."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` is the right signature of ``body`` (a receiver's check)."""
    return hmac.compare_digest(sign(secret, body), header.strip())


def payload_of(event_type: str, event: AuditEvent, public: bool = False) -> str:
    """The JSON body of an ``event_type`` delivery for ``event``."""
    namespace, _, name = event.repository.partition("/")
    if not name:
        namespace, name = "", event.repository
    tag = "" if event.reference.startswith(("sha256:", "sha512:")) else event.reference
    where = f"{event.host}/{event.repository}" if event.host else event.repository
    url = f"{where}:{tag}" if tag else (f"{where}@{event.digest}" if event.digest else where)
    resource: dict[str, Any] = {"digest": event.digest, "tag": tag, "resource_url": url}
    data: dict[str, Any] = {
        "resources": [resource],
        "repository": {"date_created": int(event.at), "name": name, "namespace": namespace,
                       "repo_full_name": event.repository,
                       "repo_type": "public" if public else "private"},
    }
    if event_type == "QUOTA_EXCEED":
        data["custom_attributes"] = {"details": event.detail}
    doc = {"type": event_type, "occur_at": int(event.at), "operator": event.subject,
           "event_data": data}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
