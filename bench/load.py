"""The load: wrk runs and a raw-socket stream client, each aimed at one target."""

from __future__ import annotations

import http.client
import json
import os
import selectors
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from constants import (
    AUTH,
    GATEWAY_PATH,
    HOST,
    LUA,
    QUERY,
    STREAM_CHUNKS,
    STREAM_N,
    STREAM_WARMUP,
    UPSTREAM_PATH,
    BenchError,
)
from processes import Pinning, Service, cpu_seconds

# --- targets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One request to repeat: where to send it, with which body and headers."""

    name: str
    port: int
    pid: int  # the server process wrk talks to, for its CPU time
    path: str
    body: bytes
    headers: dict[str, str]
    body_file: Path


def make_targets(
    fake: Service, gateway: Service, work: Path, stream: bool, gap_ms: int = 0
) -> tuple[Target, Target]:
    """The same chat completion, direct and wrapped in a one-step Universal body.

    A stream has STREAM_CHUNKS events, `gap_ms` apart (the fake upstream's pace).
    """
    query = {**QUERY, "stream": True} if stream else QUERY
    headers = {**AUTH, "x-fake-chunks": str(STREAM_CHUNKS)} if stream else AUTH
    if gap_ms:
        headers = {**headers, "x-fake-chunk-delay-ms": str(gap_ms)}
    step = {
        "provider": "openai",
        "endpoint": "chat/completions",
        "headers": headers,
        "query": query,
    }
    kind = f"stream-{gap_ms}" if stream else "plain"
    direct_body, gateway_body = json.dumps(query).encode(), json.dumps([step]).encode()
    (direct_file := work / f"direct-{kind}.json").write_bytes(direct_body)
    (gateway_file := work / f"gateway-{kind}.json").write_bytes(gateway_body)
    direct = Target(
        "direct", fake.port, fake.proc.pid, UPSTREAM_PATH, direct_body, headers, direct_file
    )
    through = Target(
        "gateway",
        gateway.port,
        gateway.proc.pid,
        GATEWAY_PATH,
        gateway_body,
        {"Content-Type": "application/json"},
        gateway_file,
    )
    return direct, through


def sanity_check(target: Target) -> None:
    """One request before any load, so a broken route fails loudly instead of as 0 req/s."""
    conn = http.client.HTTPConnection(HOST, target.port, timeout=10)
    try:
        conn.request("POST", target.path, body=target.body, headers=target.headers)
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise BenchError(f"{target.name}: sanity request failed: {exc}") from None
    finally:
        conn.close()
    if response.status != 200 or b'"chat.completion"' not in body:
        raise BenchError(f"{target.name}: sanity request got {response.status}: {body[:500]!r}")


# --- wrk ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # CPU time the target server process used during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_share(self) -> float:
        """Of one core: ~1.0 means the server process is the bottleneck."""
        return self.cpu_seconds / self.seconds

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_seconds / max(self.requests, 1) * 1e6

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def run_wrk(pin: Pinning, target: Target, connections: int, seconds: int) -> WrkResult:
    """One bounded wrk run (-t1: wrk shares CPU 0 with the fake, one thread is all it gets)."""
    url = f"http://{HOST}:{target.port}{target.path}"
    cmd = [*pin.prefix(0), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    cmd += ["-s", str(LUA), url]
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(target.body_file),
        "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in target.headers.items()),
    }
    cpu_before = cpu_seconds(target.pid)
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=seconds + 30, check=False
    )
    cpu = cpu_seconds(target.pid) - cpu_before
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = {k: data[k] for k in ("connect", "read", "write", "status", "timeout") if data[k]}
    return WrkResult(
        data["requests"],
        data["duration_us"] / 1e6,
        errors,
        data["p50_us"] / 1e3,
        data["p99_us"] / 1e3,
        cpu,
    )


# --- streaming ----------------------------------------------------------------------------------


class StreamClient:
    """A keep-alive raw-socket client timing the first SSE chunk and the end of each response.

    wrk cannot see inside a response; a socket and a minimal chunked parser add the same tiny,
    constant cost to the direct and the gateway measurements.
    """

    def __init__(self, target: Target) -> None:
        self.target = target
        head = f"POST {target.path} HTTP/1.1\r\nHost: {HOST}:{target.port}\r\n"
        head += f"Content-Length: {len(target.body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
        self.raw = head.encode() + b"\r\n" + target.body
        self.sock: socket.socket | None = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _recv(self, sock: socket.socket) -> bytes:
        if not (data := sock.recv(65536)):
            raise BenchError(f"{self.target.name} stream: connection closed mid-response")
        return data

    def once(self) -> tuple[float, float]:
        """(time to first body chunk, time to the end of the body), in milliseconds."""
        if self.sock is None:
            self.sock = socket.create_connection((HOST, self.target.port), timeout=10)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock, buf = self.sock, bytearray()
        start = time.perf_counter()
        sock.sendall(self.raw)
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv(sock)
        head = bytes(buf[:end]).decode("latin-1").lower()
        if head.split(" ", 2)[1] != "200" or "transfer-encoding: chunked" not in head:
            raise BenchError(f"{self.target.name} stream: unexpected response:\n{bytes(buf)!r}")
        pos, body, first = end + 4, bytearray(), 0.0
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                buf += self._recv(sock)
                continue
            size = int(bytes(buf[pos:eol]).partition(b";")[0], 16)
            if len(buf) < eol + 2 + size + 2:
                buf += self._recv(sock)
                continue
            if size == 0:  # the last chunk; no trailers expected
                break
            body += buf[eol + 2 : eol + 2 + size]
            first = first or time.perf_counter()
            pos = eol + 2 + size + 2
        finish = time.perf_counter()
        if body.count(b'"content":"tok') != STREAM_CHUNKS or b"data: [DONE]" not in body:
            raise BenchError(f"{self.target.name} stream: incomplete body:\n{bytes(body)!r}")
        if "connection: close" in head:
            self.close()
        return (first - start) * 1e3, (finish - start) * 1e3


@dataclass(frozen=True)
class StreamResult:
    ttfc_ms: list[float]
    total_ms: list[float]


def measure_streams(direct: Target, gateway: Target) -> tuple[StreamResult, StreamResult]:
    """Alternate direct and gateway requests so drift (CPU frequency, noise) hits both alike."""
    clients = [StreamClient(direct), StreamClient(gateway)]
    results: list[tuple[list[float], list[float]]] = [([], []), ([], [])]
    try:
        for i in range(STREAM_WARMUP + STREAM_N):
            for client, (ttfc, total) in zip(clients, results, strict=True):
                first, end = client.once()
                if i >= STREAM_WARMUP:
                    ttfc.append(first)
                    total.append(end)
    except OSError as exc:
        raise BenchError(f"stream client: {exc}") from None
    finally:
        for client in clients:
            client.close()
    return StreamResult(*results[0]), StreamResult(*results[1])


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


# --- connection burst ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BurstResult:
    latencies_ms: list[float]  # from the burst's start to each client's complete response
    failures: dict[str, int]  # what went wrong, by kind: reset, refused, timeout, status

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def burst(target: Target, clients: int, timeout: float = 15.0) -> BurstResult:
    """`clients` sockets connect in the same moment, each sends one request and reads the answer.

    This is what a fleet of clients reconnecting after a restart does to the listen queue:
    wrk cannot show it, since it times requests only once a connection is up.
    """
    head = f"POST {target.path} HTTP/1.1\r\nHost: {HOST}:{target.port}\r\n"
    head += f"Content-Length: {len(target.body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
    raw = head.encode() + b"\r\n" + target.body
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytearray] = {}
    start = time.perf_counter()
    for _ in range(clients):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((HOST, target.port))
        buffers[sock] = bytearray()
        selector.register(sock, selectors.EVENT_WRITE)
    latencies: list[float] = []
    failures: dict[str, int] = {}

    def fail(sock: socket.socket, kind: str) -> None:
        failures[kind] = failures.get(kind, 0) + 1
        selector.unregister(sock)
        sock.close()

    while selector.get_map() and time.perf_counter() - start < timeout:
        for key, events in selector.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if events & selectors.EVENT_WRITE:
                    if error := sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        fail(sock, os.strerror(error))
                        continue
                    sock.sendall(raw)  # small: fits the socket buffer of a fresh connection
                    selector.modify(sock, selectors.EVENT_READ)
                    continue
                data = sock.recv(65536)
            except OSError as exc:
                fail(sock, exc.strerror or type(exc).__name__)
                continue
            if not data:
                fail(sock, "closed")
                continue
            buf = buffers[sock]
            buf += data
            if (end := buf.find(b"\r\n\r\n")) < 0:
                continue
            head_text = bytes(buf[:end]).decode("latin-1").lower()
            length = int(head_text.partition("content-length:")[2].split("\r\n")[0] or 0)
            if len(buf) < end + 4 + length:
                continue
            if head_text.split(" ", 2)[1] != "200":
                fail(sock, f"HTTP {head_text.split(' ', 2)[1]}")
                continue
            latencies.append((time.perf_counter() - start) * 1e3)
            selector.unregister(sock)
            sock.close()
    for key in list(selector.get_map().values()):
        fail(key.fileobj, "timeout")  # type: ignore[arg-type]
    selector.close()
    return BurstResult(latencies, failures)
