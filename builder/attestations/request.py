"""What attestations a build asks for: ``--sbom``, ``--provenance`` and ``--attest``.

The flags follow buildx: ``--sbom=true`` is ``--attest type=sbom``, ``--provenance=mode=max``
is ``--attest type=provenance,mode=max``; ``false`` (or ``disabled=true``) turns one off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from builder.errors import BuildError

__all__ = ["AttestRequest", "AttestationError", "parse_attest_flags"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
MODES = ("min", "max")


class AttestationError(BuildError):
    """A bad attestation flag, or an attestation that cannot be made."""


@dataclass(frozen=True)
class AttestRequest:
    """The attestations of one build.

    ``provenance`` is ``"min"``, ``"max"`` or None (none asked for); ``builder_id`` the
    ``builder-id=`` given to ``--provenance`` (None: the default, see
    :mod:`builder.attestations.provenance`).
    """

    sbom: bool = False
    provenance: str | None = None
    builder_id: str | None = None

    @property
    def any(self) -> bool:
        """Whether any attestation is asked for."""
        return self.sbom or self.provenance is not None


def _attributes(text: str, flag: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise AttestationError(f"{flag} {text!r}: {part!r} is not key=value")
        attrs[key] = value.strip()
    return attrs


def _switch(value: str, flag: str, text: str) -> bool:
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise AttestationError(f"{flag} {text!r}: {value!r} is not true or false")


def _apply(request: AttestRequest, kind: str, attrs: dict[str, str], flag: str,
           text: str) -> AttestRequest:
    disabled = _switch(attrs.pop("disabled", "false"), flag, text)
    if kind == "sbom":
        if attrs:
            raise AttestationError(f"{flag} {text!r}: unknown sbom attribute "
                                   f"{sorted(attrs)[0]!r} (this builder writes its own SPDX "
                                   "document of the final image: no generator image is run "
                                   "and no other stage is scanned)")
        return AttestRequest(not disabled, request.provenance, request.builder_id)
    mode = attrs.pop("mode", "min").lower()
    if mode not in MODES:
        raise AttestationError(f"{flag} {text!r}: mode must be min or max, not {mode!r}")
    builder_id = attrs.pop("builder-id", None) or request.builder_id
    version = attrs.pop("version", "v1")
    if version != "v1":
        raise AttestationError(f"{flag} {text!r}: only SLSA provenance version v1 is written, "
                               f"not {version!r}")
    if attrs:
        raise AttestationError(f"{flag} {text!r}: unknown provenance attribute "
                               f"{sorted(attrs)[0]!r} (mode, builder-id, version, disabled)")
    return AttestRequest(request.sbom, None if disabled else mode, builder_id)


def _shorthand(text: str, kind: str, flag: str) -> dict[str, str]:
    """The attributes of ``--sbom=VALUE`` / ``--provenance=VALUE``."""
    low = text.strip().lower()
    if low in _TRUE:
        return {}
    if low in _FALSE:
        return {"disabled": "true"}
    if kind == "provenance" and low in MODES:
        return {"mode": low}
    if "=" not in text:
        raise AttestationError(f"{flag}={text}: expected true, false or key=value attributes")
    return _attributes(text, flag)


def parse_attest_flags(sbom: str | None = None, provenance: str | None = None,
                       attest: Sequence[str] = ()) -> AttestRequest:
    """The :class:`AttestRequest` of ``--attest`` values (applied in order), then ``--sbom``
    and ``--provenance`` (which win, as buildx's shorthands do)."""
    request = AttestRequest()
    for text in attest:
        attrs = _attributes(text, "--attest")
        kind = attrs.pop("type", None)
        if kind not in ("sbom", "provenance"):
            raise AttestationError(f"--attest {text!r}: type must be sbom or provenance"
                                   + (f", not {kind!r}" if kind else ""))
        request = _apply(request, kind, attrs, "--attest", text)
    if sbom is not None:
        request = _apply(request, "sbom", _shorthand(sbom, "sbom", "--sbom"), "--sbom", sbom)
    if provenance is not None:
        request = _apply(request, "provenance",
                         _shorthand(provenance, "provenance", "--provenance"),
                         "--provenance", provenance)
    return request
