"""Realtime WebSockets: small-frame round trips and binary throughput, direct and through us.

The client is the `websockets` asyncio client in this process; the provider is
`realtime_upstream.py`, a `websockets` server in its own process. Every figure
is taken directly against that provider and through the gateway in the same
run, alternating, so the ratio is the gateway's own cost on this machine. A
bare trio TCP relay (`tcp_relay.py`) on the gateway's CPU is measured the same
way: what any relay written on trio can reach here.
"""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from constants import GATEWAY_PATH, HOST, BenchError
from processes import Pinning, Service, _read, free_port, rss_mb, start, start_gateway
from websockets.asyncio.client import ClientConnection, connect

RTT_WARMUP, RTT_N = 200, 3000  # round trips of one small text frame
SMALL = '{"type":"input_audio_buffer.append","audio":"AAAA"}'  # a typical small event
THROUGHPUT_BYTES = 128 << 20  # per run and direction, in 64 KiB binary messages
THROUGHPUT_RUNS = 3
CHUNK = bytes(64 * 1024)
PROVIDER = "custom-bench"
MIN_THROUGHPUT_RATIO = 0.8


@dataclass
class PathResult:
    """One path's figures: direct to the provider, or through the gateway."""

    rtt_ms: list[float] = field(default_factory=list)
    download: list[float] = field(default_factory=list)  # MB/s per run, provider -> client
    upload: list[float] = field(default_factory=list)  # MB/s per run, client -> provider


@dataclass
class RealtimeReport:
    direct: PathResult = field(default_factory=PathResult)
    gateway: PathResult = field(default_factory=PathResult)
    relay: PathResult = field(default_factory=PathResult)  # bare trio TCP relay, for reference
    rss: list[tuple[str, float]] = field(default_factory=list)  # (when, MB)

    def paths(self) -> list[tuple[str, PathResult]]:
        return [("direct", self.direct), ("gateway", self.gateway), ("trio relay", self.relay)]


def start_upstream(pin: Pinning, work: Path) -> Service:
    """The provider, on the CPU the client uses (as the HTTP benchmark's fake upstream)."""
    port, log = free_port(), work / "realtime_upstream.log"
    cmd = [*pin.prefix(0), sys.executable, "bench/realtime_upstream.py", str(port)]
    return start("realtime upstream", cmd, log, port, lambda: "listening on" in _read(log))


def start_relay(pin: Pinning, work: Path, upstream: int) -> Service:
    """The bare trio TCP relay to the provider, on the gateway's CPU."""
    port, log = free_port(), work / "tcp_relay.log"
    cmd = [*pin.prefix(1), sys.executable, "bench/tcp_relay.py", str(port), str(upstream)]
    return start("trio tcp relay", cmd, log, port, lambda: "listening on" in _read(log))


def run_realtime(pin: Pinning, work: Path, services: list[Service]) -> RealtimeReport:
    """Start the provider, a gateway and the bare relay before it, measure every path."""
    upstream = start_upstream(pin, work)
    services.append(upstream)
    relay = start_relay(pin, work, upstream.port)
    services.append(relay)
    ws_port = free_port()
    extra = f'[providers.{PROVIDER}]\nbase_url = "http://{HOST}:{upstream.port}"\n'
    gateway = start_gateway(
        pin, upstream.port, work, access_log=False, label="realtime", extra=extra, ws_port=ws_port
    )
    services.append(gateway)
    report = RealtimeReport()
    bases = {
        "direct": f"ws://{HOST}:{upstream.port}",
        "gateway": f"ws://{HOST}:{ws_port}{GATEWAY_PATH}/{PROVIDER}",
        "trio relay": f"ws://{HOST}:{relay.port}",
    }
    report.rss.append(("after startup", rss_mb(gateway.proc.pid)))
    try:
        asyncio.run(_measure(bases, report, gateway))
    except (OSError, AssertionError) as exc:
        raise BenchError(f"realtime client: {exc!r}") from None
    for service in (gateway, relay, upstream):
        service.check_alive()
    report.rss.append(("after the runs", rss_mb(gateway.proc.pid)))
    for service in (gateway, relay, upstream):
        service.stop()
    return report


async def _measure(bases: dict[str, str], report: RealtimeReport, gateway: Service) -> None:
    paths = [(bases[name], result) for name, result in report.paths()]
    print(f"  round trips: {RTT_WARMUP} warm-up + {RTT_N} each, alternating", flush=True)
    await _round_trips(paths)
    mb = THROUGHPUT_BYTES >> 20
    print(f"  throughput: {THROUGHPUT_RUNS} runs of {mb} MB each way, alternating", flush=True)
    for run in range(THROUGHPUT_RUNS):
        for base, result in paths:
            result.download.append(await _download(f"{base}/source"))
            result.upload.append(await _upload(f"{base}/sink"))
        if run == 0:
            report.rss.append(("after one run", rss_mb(gateway.proc.pid)))


def _connect(url: str) -> connect:
    return connect(url, compression=None, max_size=None, ping_interval=None, open_timeout=10)


async def _round_trips(paths: list[tuple[str, PathResult]]) -> None:
    async with AsyncExitStack() as stack:
        sockets = [
            (await stack.enter_async_context(_connect(f"{base}/echo")), r) for base, r in paths
        ]
        for i in range(RTT_WARMUP + RTT_N):
            for ws, result in sockets:
                ms = await _one_trip(ws)
                if i >= RTT_WARMUP:
                    result.rtt_ms.append(ms)


async def _one_trip(ws: ClientConnection) -> float:
    start = time.perf_counter()
    await ws.send(SMALL)
    assert await ws.recv() == SMALL
    return (time.perf_counter() - start) * 1000


async def _download(url: str) -> float:
    """MB/s from the provider to the client, until the last byte arrived."""
    async with _connect(url) as ws:
        start, got = time.perf_counter(), 0
        await ws.send(str(THROUGHPUT_BYTES))
        while isinstance(message := await ws.recv(), bytes):
            got += len(message)
        elapsed = time.perf_counter() - start
    assert got == THROUGHPUT_BYTES, f"downloaded {got} bytes"
    return got / elapsed / 1e6


async def _upload(url: str) -> float:
    """MB/s from the client to the provider, until the provider counted every byte."""
    async with _connect(url) as ws:
        start, sent = time.perf_counter(), 0
        while sent < THROUGHPUT_BYTES:
            await ws.send(CHUNK)
            sent += len(CHUNK)
        await ws.send("count")
        counted = int(await ws.recv())
        elapsed = time.perf_counter() - start
    assert counted == THROUGHPUT_BYTES, f"provider counted {counted} bytes"
    return counted / elapsed / 1e6
