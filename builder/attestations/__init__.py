"""Build attestations: an SBOM and SLSA provenance attached to a built image.

- :mod:`~builder.attestations.request`: ``--sbom``, ``--provenance`` and ``--attest`` parsed
  into an :class:`AttestRequest`.
- :mod:`~builder.attestations.packages`: the packages a root filesystem holds (dpkg, apk,
  Python dist-info, npm); :mod:`~builder.attestations.spdx` writes them as SPDX 2.3 JSON.
- :mod:`~builder.attestations.provenance`: the SLSA provenance v1 predicate of a build.
- :mod:`~builder.attestations.intoto`: in-toto statements around both.
- :mod:`~builder.attestations.index`: the attestation manifest of an image and the index
  that holds images and attestation manifests, laid out as BuildKit lays them out.
"""

from builder.attestations.request import AttestationError, AttestRequest, parse_attest_flags

__all__ = ["AttestRequest", "AttestationError", "parse_attest_flags"]
