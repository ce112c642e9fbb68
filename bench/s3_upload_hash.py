"""What verifying a spread upload's digest costs on S3: the running hash a process keeps
when it received every chunk, reading the completed upload back from the bucket and
hashing it (what the registry does when the chunks landed on several replicas), and a
hash state that could travel between processes (sha256 written in Python, the only way to
export and resume a state with the standard library), side by side in one run on a real
Ceph RGW (started here with registry.testing.engines).

    python bench/s3_upload_hash.py [--mib 256]
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry.storage.s3 import S3Driver, S3Options  # noqa: E402
from registry.testing.engines import REGION, start_rgw, stop_rgw  # noqa: E402

MIB = 1 << 20
_PRIMES = [n for n in range(2, 312) if all(n % d for d in range(2, int(n ** 0.5) + 1))][:64]
_K = [int((p ** (1 / 3) % 1) * (1 << 32)) for p in _PRIMES]


def _py_sha256_blocks(state: list[int], data: bytes) -> list[int]:
    """Compress whole 64-byte blocks into a sha256 state (a resumable state in Python)."""
    m = 0xFFFFFFFF
    for off in range(0, len(data) - len(data) % 64, 64):
        w = list(struct.unpack(">16I", data[off:off + 64]))
        for i in range(16, 64):
            s0 = ((w[i - 15] >> 7 | w[i - 15] << 25) ^ (w[i - 15] >> 18 | w[i - 15] << 14)
                  ^ (w[i - 15] >> 3)) & m
            s1 = ((w[i - 2] >> 17 | w[i - 2] << 15) ^ (w[i - 2] >> 19 | w[i - 2] << 13)
                  ^ (w[i - 2] >> 10)) & m
            w.append((w[i - 16] + s0 + w[i - 7] + s1) & m)
        a, b, c, d, e, f, g, h = state
        for i in range(64):
            s1 = ((e >> 6 | e << 26) ^ (e >> 11 | e << 21) ^ (e >> 25 | e << 7)) & m
            t1 = (h + s1 + ((e & f) ^ (~e & g)) + _K[i] + w[i]) & m
            s0 = ((a >> 2 | a << 30) ^ (a >> 13 | a << 19) ^ (a >> 22 | a << 10)) & m
            t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) & m
            h, g, f, e, d, c, b, a = g, f, e, (d + t1) & m, c, b, a, (t1 + t2) & m
        state = [(x + y) & m for x, y in zip(state, (a, b, c, d, e, f, g, h), strict=True)]
    return state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="blob size in MiB")
    args = parser.parse_args()
    data = bytes(range(256)) * (4096 * args.mib)
    with tempfile.TemporaryDirectory(prefix="s3-hash-bench-") as tmp:
        engine = start_rgw(Path(tmp))
        try:
            import boto3

            client = boto3.session.Session(
                aws_access_key_id=engine.access_key, aws_secret_access_key=engine.secret_key,
            ).client("s3", endpoint_url=engine.endpoint, region_name=REGION)
            driver = S3Driver(S3Options(bucket=engine.bucket, endpoint=engine.endpoint,
                                        path_style=True), client)
            writer = driver.writer("bench/data")
            for i in range(0, len(data), 8 * MIB):
                writer.write(data[i:i + 8 * MIB])
            writer.commit()

            started = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            running = time.perf_counter() - started

            started = time.perf_counter()
            hasher = hashlib.sha256()
            reader = driver.reader("bench/data")
            while chunk := reader.read(MIB):
                hasher.update(chunk)
            reader.close()
            reread = time.perf_counter() - started

            started = time.perf_counter()
            _py_sha256_blocks([0x6A09E667] * 8, data[:MIB])
            python_per_mib = time.perf_counter() - started
        finally:
            stop_rgw(engine)
    print(f"blob: {args.mib} MiB on Ceph RGW (loopback)")
    print(f"running hash (hashlib, in the process):   {running:7.2f} s "
          f"({args.mib / running:7.0f} MiB/s)")
    print(f"read back from the bucket and hash:       {reread:7.2f} s "
          f"({args.mib / reread:7.0f} MiB/s)")
    print(f"resumable state (sha256 in Python), est.: {python_per_mib * args.mib:7.2f} s "
          f"({1 / python_per_mib:7.2f} MiB/s)")
    print(f"ratio read-back / running: {reread / running:.1f}x; "
          f"python-state / read-back: {python_per_mib * args.mib / reread:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
