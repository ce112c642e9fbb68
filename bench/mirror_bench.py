"""A pull through our registry in mirror mode against a pull straight from the upstream,
side by side in one run.

The upstream is CNCF distribution (``docker-registry``) holding a ``--mb`` MB image of
``--layers`` layers of random bytes. It sits behind a simulated wide-area link (a TCP relay
in this process that adds ``--rtt-ms`` per request and caps the bandwidth from the upstream
at ``--link-mbit``), as a real upstream across the internet would be, while the mirror
runs next to the client (loopback). Each round, skopeo pulls the image into a ``dir:``:

- direct: from the upstream through the link;
- cold: through a fresh mirror (empty root), which fetches everything through the link;
- warm: through the same mirror again, which serves everything from its cache.

It prints the best and the median of each and the ratios cold/direct and warm/direct
(targets: at most 1.2 and 0.5). ``--link-mbit 0`` removes the link's limits (everything on
loopback: the ratios then compare the two servers' local speed)::

    python bench/mirror_bench.py --mb 200 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from registry_bench import make_layout  # noqa: E402

from registry.testing.processes import distribution, free_port, ours  # noqa: E402

PIECE = 64 * 1024


class Link:
    """A TCP relay on loopback to ``target_port`` that delays each request by ``rtt``
    seconds and lets at most ``rate`` bytes a second through from the target (0: no
    limits), shared by every connection."""

    def __init__(self, target_port: int, rate: float, rtt: float) -> None:
        self.target_port = target_port
        self.rate = rate
        self.rtt = rtt
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._next_free = 0.0
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    @property
    def address(self) -> str:
        """``host:port`` of the relay."""
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
            self._ready.set()
            async with server:
                await server.serve_forever()

        self._loop.run_until_complete(serve())

    async def _throttle(self, size: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        start = max(now, self._next_free)
        self._next_free = start + size / self.rate
        if self._next_free > now:
            await asyncio.sleep(self._next_free - now)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        if self.rate > 0:
            await asyncio.sleep(self.rtt)

        async def requests() -> None:
            while data := await reader.read(PIECE):
                if self.rate > 0:
                    await asyncio.sleep(self.rtt)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def answers() -> None:
            while data := await up_reader.read(PIECE):
                await self._throttle(len(data))
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(requests(), answers(), return_exceptions=True)


def pull(address: str, image: str, dest: Path) -> float:
    """Seconds skopeo takes to copy ``address/image`` into ``dest`` (a fresh ``dir:``)."""
    shutil.rmtree(dest, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                    f"docker://{address}/{image}", f"dir:{dest}"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="image size in MB (default 200)")
    parser.add_argument("--layers", type=int, default=4, help="layers (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--link-mbit", type=float, default=400,
                        help="upstream link bandwidth in Mbit/s (default 400; 0: unlimited)")
    parser.add_argument("--rtt-ms", type=float, default=20,
                        help="upstream round trip added per request, ms (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="mirror workers (default 2)")
    args = parser.parse_args()
    image = "library/bench:latest"
    with tempfile.TemporaryDirectory(prefix="mirror-bench-") as scratch:
        tmp = Path(scratch)
        (tmp / "image").mkdir()
        layout, _, _ = make_layout(tmp / "image", args.mb, args.layers)
        upstream = distribution(tmp / "upstream").start()
        try:
            subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:bench",
                            f"docker://{upstream.address}/{image}"], check=True,
                           stdout=subprocess.DEVNULL)
            link = Link(upstream.port, args.link_mbit * 1e6 / 8, args.rtt_ms / 1000)
            direct, cold, warm = [], [], []
            for i in range(args.rounds):
                direct.append(pull(link.address, image, tmp / "out"))
                mirror = ours(tmp / f"mirror{i}", workers=args.workers,
                              env={"REGISTRY_PROXY_REMOTE": f"http://{link.address}",
                                   "REGISTRY_ACCESS_LOG": "false",
                                   "PYTHONPATH": str(ROOT)}).start()
                try:
                    cold.append(pull(mirror.address, image, tmp / "out"))
                    warm.append(pull(mirror.address, image, tmp / "out"))
                finally:
                    mirror.stop()
                    shutil.rmtree(tmp / f"mirror{i}", ignore_errors=True)
                print(f"round {i + 1}: direct {direct[-1]:.2f} s, cold through the mirror "
                      f"{cold[-1]:.2f} s, warm {warm[-1]:.2f} s", flush=True)
        finally:
            upstream.stop()
    link_text = (f"{args.link_mbit:g} Mbit/s, {args.rtt_ms:g} ms a request"
                 if args.link_mbit > 0 else "unlimited (loopback)")
    print(f"\n{args.mb} MB in {args.layers} layers, {args.rounds} rounds, upstream link "
          f"{link_text}; skopeo copy to dir:")
    print(f"{'':28}{'best':>9}{'median':>9}{'best/direct':>13}{'median/direct':>15}")
    best_direct, median_direct = min(direct), statistics.median(direct)
    for name, times in (("direct from the upstream", direct), ("cold through the mirror", cold),
                        ("warm through the mirror", warm)):
        best, median = min(times), statistics.median(times)
        print(f"{name:28}{best:8.2f}s{median:8.2f}s{best / best_direct:13.2f}"
              f"{median / median_direct:15.2f}")
    print(f"\nratios (median): cold/direct {statistics.median(cold) / median_direct:.2f} "
          f"(target <= 1.2), warm/direct {statistics.median(warm) / median_direct:.2f} "
          "(target <= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
