"""A small, low-overhead HTTP load generator for the serving tests and benchmark: `concurrency` keep-alive clients
send a fixed number of POST requests to a server on this machine and record each latency and status.

Bounded by design: it sends exactly `requests` requests (or stops at `max_seconds`), and refuses any host that is
not a loopback address, so a load test can only ever hit a server running on this machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    requests: int
    concurrency: int
    wall_s: float
    latencies_ms: np.ndarray = field(repr=False)
    errors: int
    statuses: dict[int, int]

    def summary(self) -> dict[str, float | int]:
        lat = self.latencies_ms
        ok = len(lat)
        return {"requests": self.requests, "concurrency": self.concurrency, "completed": ok, "errors": self.errors,
                "wall_s": round(self.wall_s, 3), "requests_per_s": round(ok / self.wall_s, 1) if self.wall_s else 0.0,
                "p50_ms": round(float(np.percentile(lat, 50)), 2) if ok else None,
                "p90_ms": round(float(np.percentile(lat, 90)), 2) if ok else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 2) if ok else None,
                "max_ms": round(float(lat.max()), 2) if ok else None,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}}


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"load tests only target this machine (loopback), not {host!r}")


async def _client(host: str, port: int, path: str, bodies: list[bytes], next_job, lat: list, statuses: dict,
                  errors: list, deadline: float) -> None:
    reader = writer = None
    while True:
        j = next_job()
        if j is None or time.perf_counter() > deadline:
            break
        body = bodies[j % len(bodies)]
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        t0 = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
            lat.append((time.perf_counter() - t0) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 400:
                errors.append(status)
            if close:
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors.append(-1)
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run_load(host: str, port: int, path: str, payloads: list[dict], requests: int, concurrency: int,
             max_seconds: float = 300.0) -> LoadResult:
    """Send `requests` POSTs of the given JSON payloads (cycled) from `concurrency` connections; every response
    with status >= 400 or a broken connection counts as an error."""
    _check_loopback(host)
    bodies = [json.dumps(p).encode() for p in payloads]
    counter = iter(range(requests))

    def next_job():
        return next(counter, None)

    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[int] = []

    async def main() -> float:
        t0 = time.perf_counter()
        deadline = t0 + max_seconds
        await asyncio.gather(*[_client(host, port, path, bodies, next_job, lat, statuses, errors, deadline)
                               for _ in range(concurrency)])
        return time.perf_counter() - t0

    wall = asyncio.run(main())
    return LoadResult(requests, concurrency, wall, np.asarray(lat), len(errors), statuses)
