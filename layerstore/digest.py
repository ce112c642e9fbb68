"""Content digests (``algorithm:hex``) as the OCI image spec defines them.

sha256 is the default; sha512 is accepted everywhere a digest is.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, BinaryIO, Protocol

from layerstore.errors import InvalidArgument

_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_ALGORITHM_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*$")
_HEX_RE = re.compile(r"^[a-f0-9]+$")
CHUNK = 1 << 20


class Hasher(Protocol):
    """What :mod:`hashlib` objects offer."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, order=True)
class Digest:
    """A validated content digest such as ``sha256:e3b0c4...``."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        expected = _HEX_LENGTHS.get(self.algorithm)
        if expected is None:
            raise InvalidArgument(
                f"unsupported digest algorithm {self.algorithm!r} (use sha256 or sha512)"
            )
        if len(self.hex) != expected or not _HEX_RE.match(self.hex):
            raise InvalidArgument(
                f"invalid {self.algorithm} digest hex {self.hex!r}: "
                f"want {expected} lowercase hex characters"
            )

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex`` strictly; raise InvalidArgument naming the problem."""
        if not isinstance(text, str):
            raise InvalidArgument(f"digest must be a string, not {type(text).__name__}")
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise InvalidArgument(f"invalid digest {text!r}: missing 'algorithm:' prefix")
        if not _ALGORITHM_RE.match(algorithm):
            raise InvalidArgument(f"invalid digest {text!r}: malformed algorithm {algorithm!r}")
        return cls(algorithm, hexpart)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Digest of an in-memory byte string."""
        h = new_hasher(algorithm)
        h.update(data)
        return cls(algorithm, h.hexdigest())

    @classmethod
    def from_stream(cls, stream: IO[bytes], algorithm: str = "sha256") -> Digest:
        """Digest of everything readable from ``stream``, read in 1 MiB chunks."""
        h = new_hasher(algorithm)
        while chunk := stream.read(CHUNK):
            h.update(chunk)
        return cls(algorithm, h.hexdigest())

    def hasher(self) -> Hasher:
        """A fresh hash object of this digest's algorithm."""
        return new_hasher(self.algorithm)

    @property
    def encoded(self) -> str:
        """The hex part, as the OCI spec calls it."""
        return self.hex

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def short(self) -> str:
        """The first 12 hex characters, for progress output."""
        return self.hex[:12]


def new_hasher(algorithm: str = "sha256") -> Hasher:
    """A hashlib object for a supported digest algorithm."""
    if algorithm not in _HEX_LENGTHS:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm!r} (use sha256 or sha512)")
    return hashlib.new(algorithm)


class DigestingWriter:
    """Hash bytes as they pass through ``write`` and count them; optionally forward them."""

    def __init__(self, sink: BinaryIO | None = None, algorithm: str = "sha256") -> None:
        self._sink = sink
        self._hasher = new_hasher(algorithm)
        self._algorithm = algorithm
        self.size = 0

    def write(self, data: bytes) -> int:
        """Hash and forward ``data``; return its length."""
        self._hasher.update(data)
        self.size += len(data)
        if self._sink is not None:
            self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        """Flush the sink, if any."""
        if self._sink is not None:
            self._sink.flush()

    def digest(self) -> Digest:
        """The digest of everything written so far."""
        return Digest(self._algorithm, self._hasher.hexdigest())


def chain_id(diff_ids: Iterable[Digest]) -> Digest:
    """The chainID of a layer stack: chainID(L1) = diff_id(L1);
    chainID(L1..Ln) = sha256(chainID(L1..Ln-1) + " " + diff_id(Ln))."""
    ids = chain_ids(diff_ids)
    if not ids:
        raise InvalidArgument("chain_id of an empty layer list")
    return ids[-1]


def chain_ids(diff_ids: Iterable[Digest]) -> list[Digest]:
    """The chainID of every prefix of ``diff_ids``, in order."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            text = f"{out[-1]} {diff_id}".encode()
            out.append(Digest.from_bytes(text, "sha256"))
    return out
