"""Load benchmark: the Universal Endpoint through the gateway versus the fake upstream directly.

Every scenario runs DIRECT (client -> fake upstream) and THROUGH the gateway (client -> gateway
-> fake upstream) in the same run, against the same fake, so the difference is the gateway's own
cost on this machine rather than a number that only means something on the author's laptop.
The gateway gets CPU 1 to itself; the fake upstream, wrk and the stream client share CPU 0.

    .venv/bin/python bench/run.py        (what `make bench` runs; about 65 s)

It is a report, not a test: missed targets still exit 0. It exits 1 only when something failed
to run (a process died, a request errored or answered non-2xx), and 130 on Ctrl-C.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "post.lua"
HOST = "127.0.0.1"
UPSTREAM_PATH = "/v1/chat/completions"
GATEWAY_PATH = "/v1/bench-account/bench-gateway"

WARMUP_S, DURATION_S = 2, 8
LOG_WARMUP_S, LOG_DURATION_S = 1, 4  # the shorter access-log-on comparison
STREAM_WARMUP, STREAM_N, STREAM_CHUNKS = 20, 200, 20
MIN_REQUESTS_FOR_RSS, MAX_TOP_UP_S = 20_000, 20

BUSY_SAMPLE_S, BUSY_WARNING = 0.5, 0.10  # other work on the CPUs makes the numbers noisy
MAX_ADDED_P50_MS = 1.0
MIN_GATEWAY_RPS_C64 = 1500.0
MAX_TTFC_OVERHEAD_MS = 1.0
MAX_RSS_MB = 80.0
# VmRSS moves by a few pages with allocator noise; more than this between runs counts as growth.
RSS_GROWTH_TOLERANCE_MB = 1.0

AUTH = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
QUERY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


class BenchError(Exception):
    """Something failed to run: the report is incomplete and the exit status non-zero."""


# --- set-up -------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """wrk drives the throughput scenarios; install it from apt when missing."""
    if found := shutil.which("wrk"):
        return found
    if not shutil.which("apt-get"):
        raise BenchError("wrk is not installed and there is no apt-get: install wrk, run again")
    print("wrk not found: installing it with apt-get", flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    done = subprocess.run(install, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # a fresh image has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        done = subprocess.run(install, capture_output=True, text=True, check=False)
    if found := shutil.which("wrk"):
        return found
    raise BenchError(
        "wrk is not installed and `apt-get install -y wrk` failed:\n"
        f"{done.stdout[-2000:]}{done.stderr[-2000:]}\n"
        "install wrk (https://github.com/wg/wrk) and run again"
    )


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Pinning:
    """taskset prefixes: gateway on CPU 1, everything else on CPU 0, so they don't compete."""

    def __init__(self) -> None:
        cpus = os.sched_getaffinity(0)
        self.enabled = bool(shutil.which("taskset")) and {0, 1} <= cpus
        if not self.enabled:
            self.why_not = "taskset missing" if not shutil.which("taskset") else f"CPUs {cpus}"
        else:
            self.why_not = ""
            os.sched_setaffinity(0, {0})  # this process runs the stream client

    def prefix(self, cpu: int) -> list[str]:
        return ["taskset", "-c", str(cpu)] if self.enabled else []

    def describe(self) -> str:
        if self.enabled:
            return "gateway on CPU 1; fake upstream, wrk and the stream client on CPU 0"
        return f"UNPINNED ({self.why_not}): all processes share all CPUs"


@dataclass
class Service:
    """A child process we started; its stdout+stderr go to `log` so nothing blocks on a pipe."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def check_alive(self) -> None:
        if (rc := self.proc.poll()) is not None:
            raise BenchError(f"{self.name} exited with status {rc}:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(no output)"

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it will not go."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start(name: str, cmd: list[str], log: Path, port: int, ready: Callable[[], bool]) -> Service:
    """Start `cmd` from the project root and wait until `ready()` (at most 20 s)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    service = Service(name, proc, log, port)
    deadline = time.monotonic() + 20
    try:
        while not ready():
            service.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{name} not ready after 20 s:\n{service.tail()}")
            time.sleep(0.05)
    except BaseException:  # not yet in the caller's list of services: stop it here (Ctrl-C too)
        service.stop()
        raise
    return service


def start_fake(pin: Pinning, port: int, work: Path) -> Service:
    log = work / "fake_upstream.log"
    cmd = [*pin.prefix(0), sys.executable, "-m", "server.fake_upstream", "--port", str(port)]
    return start("fake upstream", cmd, log, port, lambda: "listening on" in _read(log))


def start_gateway(pin: Pinning, fake_port: int, work: Path, access_log: bool) -> Service:
    http_port, tag = free_port(), "on" if access_log else "off"
    config = work / f"gateway-log-{tag}.toml"
    config.write_text(
        "[server]\n"
        f"access_log = {'true' if access_log else 'false'}\n"
        f'data_dir = "{work / "data"}"\n'
        "grace_period = 2\n"
        "[providers.openai]\n"
        f'base_url = "http://{HOST}:{fake_port}/v1"\n'
    )
    cmd = [*pin.prefix(1), sys.executable, "gateway.py", "--config", str(config)]
    cmd += ["--host", HOST, "--port", str(http_port), "--ws-port", str(free_port())]
    return start(
        f"gateway (access_log={tag})",
        cmd,
        work / f"gateway-log-{tag}.log",
        http_port,
        lambda: _get_status(http_port, "/healthz") == 200,
    )


def start_static(pin: Pinning, work: Path) -> Service:
    """hypercorn alone with a static app, pinned where the gateway runs."""
    port = free_port()
    cmd = [*pin.prefix(1), sys.executable, "bench/static_app.py", str(port)]
    return start(
        "hypercorn alone",
        cmd,
        work / "static.log",
        port,
        lambda: _get_status(port, "/healthz") == 200,
    )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _get_status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=1)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


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
    fake: Service, gateway: Service, work: Path, stream: bool
) -> tuple[Target, Target]:
    """The same chat completion, direct and wrapped in a one-step Universal body."""
    query = {**QUERY, "stream": True} if stream else QUERY
    headers = {**AUTH, "x-fake-chunks": str(STREAM_CHUNKS)} if stream else AUTH
    step = {
        "provider": "openai",
        "endpoint": "chat/completions",
        "headers": headers,
        "query": query,
    }
    kind = "stream" if stream else "plain"
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


# --- memory -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpus() -> dict[int, float]:
    """Share of each CPU that was busy over a short sample, before we start anything."""

    def sample() -> dict[int, tuple[int, int]]:
        out = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *ticks = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [int(t) for t in ticks]
                out[int(name[3:])] = (values[3] + values[4], sum(values))  # idle+iowait, all
        return out

    before = sample()
    time.sleep(BUSY_SAMPLE_S)
    after = sample()
    shares = {}
    for cpu, (idle, total) in after.items():
        elapsed = total - before[cpu][1]
        shares[cpu] = 1 - (idle - before[cpu][0]) / elapsed if elapsed else 0.0
    return shares


def rss_mb(pid: int) -> float:
    """VmRSS of a live process, in MB (10^6 bytes, the unit the target is written in)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no VmRSS for pid {pid}")


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Report:
    """Whatever got measured; printed even when a later step failed."""

    pinning: str = ""
    idle_busy: dict[int, float] = field(default_factory=dict)  # CPU -> busy share before the run
    c1: tuple[WrkResult, WrkResult] | None = None
    c64: tuple[WrkResult, WrkResult] | None = None
    c64_again: WrkResult | None = None
    streams: tuple[StreamResult, StreamResult] | None = None
    rss: list[tuple[str, int, float]] = field(default_factory=list)  # (when, requests, MB)
    log_on: tuple[WrkResult, WrkResult] | None = None  # gateway c=1, c=64 with access log on
    ceiling: tuple[WrkResult, WrkResult] | None = None  # hypercorn alone, c=1 and c=64
    access_lines: int = 0
    problems: list[str] = field(default_factory=list)
    logs: dict[str, tuple[list[str], str]] = field(default_factory=dict)  # notable lines, tail


class Runner:
    """Runs wrk scenarios, collecting errors and the gateway's request count (for RSS)."""

    def __init__(self, pin: Pinning, report: Report) -> None:
        self.pin = pin
        self.report = report
        self.gateway_requests = 0

    def wrk(
        self,
        label: str,
        target: Target,
        connections: int,
        server: Service,
        warmup: int = WARMUP_S,
        seconds: int = DURATION_S,
    ) -> WrkResult:
        print(f"  {label:<22} {warmup} s warm-up + {seconds} s:", end="", flush=True)
        results = [run_wrk(self.pin, target, connections, s) for s in (warmup, seconds)]
        server.check_alive()
        for result in results:
            if result.error_count:
                self.report.problems.append(f"{label}: wrk errors {result.errors}")
        if target.name == "gateway":
            self.gateway_requests += sum(r.requests for r in results)
        result = results[1]
        print(f" {result.rps:9,.0f} req/s  p50 {result.p50_ms:.3f} ms", flush=True)
        return result


def run(work: Path, services: list[Service], report: Report) -> None:
    """The whole benchmark, in the order the report reads."""
    pin = Pinning()
    report.pinning = pin.describe()
    report.idle_busy = busy_cpus()
    ensure_wrk()
    fake = start_fake(pin, free_port(), work)
    services.append(fake)
    gateway = start_gateway(pin, fake.port, work, access_log=False)
    services.append(gateway)
    report.rss.append(("after startup", 0, rss_mb(gateway.proc.pid)))
    runner = Runner(pin, report)
    plain = make_targets(fake, gateway, work, stream=False)
    for target in plain:
        sanity_check(target)
    runner.gateway_requests += 1

    print("a. non-streaming chat completion, c=1 (wrk -t1 -c1)")
    report.c1 = (
        runner.wrk("direct", plain[0], 1, gateway),
        runner.wrk("gateway", plain[1], 1, gateway),
    )
    print("b. non-streaming chat completion, c=64 (wrk -t1 -c64)")
    report.c64 = (
        runner.wrk("direct", plain[0], 64, gateway),
        runner.wrk("gateway", plain[1], 64, gateway),
    )
    when = "after a + b"
    if runner.gateway_requests < MIN_REQUESTS_FOR_RSS:  # a slow gateway: top up at c=64
        missing = MIN_REQUESTS_FOR_RSS - runner.gateway_requests
        seconds = min(MAX_TOP_UP_S, int(missing / max(report.c64[1].rps, 100)) + 1)
        print(f"  top-up: {seconds} s more at c=64 to pass {MIN_REQUESTS_FOR_RSS:,} requests")
        top_up = run_wrk(pin, plain[1], 64, seconds)
        gateway.check_alive()
        if top_up.error_count:
            report.problems.append(f"top-up at c=64: wrk errors {top_up.errors}")
        runner.gateway_requests += top_up.requests
        when += " + top-up"
    report.rss.append((when, runner.gateway_requests, rss_mb(gateway.proc.pid)))
    report.c64_again = runner.wrk("gateway, run 2", plain[1], 64, gateway)
    report.rss.append(("after c=64 run 2", runner.gateway_requests, rss_mb(gateway.proc.pid)))

    print(f"c. {STREAM_CHUNKS}-chunk stream, {STREAM_N} sequential requests each, alternating")
    report.streams = measure_streams(*make_targets(fake, gateway, work, stream=True))
    gateway.check_alive()
    gateway.stop()

    print("d. the same through a gateway with the default access log on (shorter runs)")
    logged = start_gateway(pin, fake.port, work, access_log=True)
    services.append(logged)
    target = make_targets(fake, logged, work, stream=False)[1]
    sanity_check(target)
    short = {"warmup": LOG_WARMUP_S, "seconds": LOG_DURATION_S}
    report.log_on = (
        runner.wrk("gateway c=1, log on", target, 1, logged, **short),
        runner.wrk("gateway c=64, log on", target, 64, logged, **short),
    )
    report.access_lines = _read(logged.log).count(" gateway.access: ")
    logged.stop()

    print("e. hypercorn alone: a static ASGI app on the gateway's CPU (the server's ceiling)")
    static = start_static(pin, work)
    services.append(static)
    ceiling = Target(
        "hypercorn",
        static.port,
        static.proc.pid,
        GATEWAY_PATH,
        target.body,
        target.headers,
        target.body_file,
    )
    report.ceiling = (
        runner.wrk("hypercorn alone, c=1", ceiling, 1, static),
        runner.wrk("hypercorn alone, c=64", ceiling, 64, static),
    )


def collect_logs(services: list[Service], report: Report) -> None:
    """Keep the gateways' warnings/errors (and a tail for failures) before the temp dir goes."""
    for service in services:
        if service.name.startswith("gateway"):
            lines = _read(service.log).splitlines()
            notable = [x for x in lines if " INFO " not in x]
            report.logs[service.name] = (notable, service.tail(20))


# --- the report ---------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT MET")


def print_report(report: Report) -> None:
    line = "-" * 100
    print(f"\n{line}\nGateway load benchmark (loopback; fake upstream as provider)\n{line}")
    print(f"pinning:    {report.pinning or 'n/a'}")
    print("access log: off (access_log = false) for a-c; section d repeats a/b with it on")
    print(f"wrk:        -t1, {WARMUP_S} s warm-up then {DURATION_S} s measured, --timeout 5s")
    print("srv CPU:    CPU time of the process wrk talks to, as a share of one core (100% = that")
    print("            process is the bottleneck); direct = fake upstream, gateway = gateway only")
    busy = ", ".join(f"CPU {cpu} {share:.0%}" for cpu, share in report.idle_busy.items())
    noisy = any(share > BUSY_WARNING for share in report.idle_busy.values())
    warning = "  WARNING: other work is running, numbers are noisy" if noisy else ""
    print(f"idle check: {busy or 'n/a'} busy in the {BUSY_SAMPLE_S} s before the run{warning}\n")

    head = (
        f"{'scenario':<24}{'path':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'srv CPU':>9}{'CPU us/req':>11}  errors"
    )
    print(f"{head}\n{'-' * len(head)}")

    def row(scenario: str, path: str, r: WrkResult) -> None:
        print(
            f"{scenario:<24}{path:<16}{r.rps:>9,.0f}{r.p50_ms:>9.3f}{r.p99_ms:>9.3f}"
            f"{r.cpu_share:>9.0%}{r.cpu_us_per_request:>11.0f}  {r.errors or 0}"
        )

    def compare(direct: WrkResult, gateway: WrkResult) -> None:
        added = gateway.p50_ms - direct.p50_ms
        print(
            f"{'':<26}gateway/direct req/s = {gateway.rps / direct.rps:.1%}, "
            f"added p50 = {added:+.3f} ms, added p99 = {gateway.p99_ms - direct.p99_ms:+.3f} ms"
        )

    if report.c1:
        row("a. plain, c=1", "direct", report.c1[0])
        row("", "gateway", report.c1[1])
        compare(*report.c1)
    if report.c64:
        row("b. plain, c=64", "direct", report.c64[0])
        row("", "gateway", report.c64[1])
        if report.c64_again:
            row("", "gateway, run 2", report.c64_again)
        compare(*report.c64)
    if report.log_on and report.c1 and report.c64:
        row("d. access log ON, c=1", "gateway", report.log_on[0])
        row("d. access log ON, c=64", "gateway", report.log_on[1])
        print(
            f"{'':<26}vs log off: c=1 {report.log_on[0].rps / report.c1[1].rps:.1%} req/s, "
            f"c=64 {report.log_on[1].rps / report.c64[1].rps:.1%} req/s "
            f"({report.access_lines:,} access-log lines written)"
        )

    if report.ceiling and report.c1 and report.c64:
        row("e. hypercorn alone, c=1", "static app", report.ceiling[0])
        row("e. hypercorn alone,c=64", "static app", report.ceiling[1])
        proxy = [
            g.cpu_us_per_request - h.cpu_us_per_request
            for g, h in ((report.c1[1], report.ceiling[0]), (report.c64[1], report.ceiling[1]))
        ]
        print(
            f"{'':<26}the proxy path's own CPU per request (gateway - hypercorn alone): "
            f"c=1 {proxy[0]:.0f} us, c=64 {proxy[1]:.0f} us"
        )

    ttfc_overhead: float | None = None
    if report.streams:
        direct, gateway = report.streams
        print(f"\nc. {STREAM_CHUNKS}-chunk SSE stream, {STREAM_N} requests each (ms)")
        sub = f"{'path':<16}{'TTFC p50':>10}{'TTFC p99':>10}{'total p50':>11}{'total p99':>11}"
        print(f"{sub}\n{'-' * len(sub)}")
        for name, s in (("direct", direct), ("gateway", gateway)):
            print(
                f"{name:<16}{pct(s.ttfc_ms, 50):>10.3f}{pct(s.ttfc_ms, 99):>10.3f}"
                f"{pct(s.total_ms, 50):>11.3f}{pct(s.total_ms, 99):>11.3f}"
            )
        ttfc_overhead = pct(gateway.ttfc_ms, 50) - pct(direct.ttfc_ms, 50)
        total_overhead = pct(gateway.total_ms, 50) - pct(direct.total_ms, 50)
        print(f"{'overhead':<16}{ttfc_overhead:>+10.3f}{'':>10}{total_overhead:>+11.3f}")

    if report.rss:
        print("\ngateway memory (VmRSS)")
        for when, requests, mb in report.rss:
            print(f"  {when:<20}{requests:>8,} requests through the gateway  {mb:7.1f} MB")

    print(f"\n{'target':<44}{'measured':>16}  {'goal':<22}result")
    print("-" * 90)

    def target(name: str, value: str, goal: str, ok: bool | None) -> None:
        print(f"{name:<44}{value:>16}  {goal:<22}{verdict(ok)}")

    if report.c1:
        added = report.c1[1].p50_ms - report.c1[0].p50_ms
        target(
            "added p50 latency, c=1", f"{added:+.3f} ms", f"<= {MAX_ADDED_P50_MS} ms", added <= 1
        )
    if report.c64:
        rps = report.c64[1].rps
        ok = rps >= MIN_GATEWAY_RPS_C64
        target("gateway req/s, c=64", f"{rps:,.0f}", f">= {MIN_GATEWAY_RPS_C64:,.0f}", ok)
    if ttfc_overhead is not None:
        ok = ttfc_overhead <= MAX_TTFC_OVERHEAD_MS
        goal = f"<= {MAX_TTFC_OVERHEAD_MS} ms"
        target("time-to-first-chunk overhead (p50)", f"{ttfc_overhead:+.3f} ms", goal, ok)
    if len(report.rss) >= 2:
        _, requests, mb = report.rss[1]
        ok = mb < MAX_RSS_MB if requests >= MIN_REQUESTS_FOR_RSS else None
        target(f"RSS after {requests:,} requests", f"{mb:.1f} MB", f"< {MAX_RSS_MB:.0f} MB", ok)
    if len(report.rss) >= 3:
        growth = report.rss[2][2] - report.rss[1][2]
        goal = f"no growth (<= {RSS_GROWTH_TOLERANCE_MB} MB)"
        ok = growth <= RSS_GROWTH_TOLERANCE_MB
        target("RSS growth, c=64 run 1 -> run 2", f"{growth:+.1f} MB", goal, ok)

    for name, (notable, tail) in report.logs.items():
        if notable:
            print(f"\n{name}: {len(notable)} non-INFO log lines, first ones:")
            print("\n".join(f"  {x}" for x in notable[:15]))
        if report.problems:
            print(f"\n{name}: last log lines:\n{tail}")
    if report.problems:
        print("\nFAILED TO RUN CLEANLY:")
        print("\n".join(f"  - {p}" for p in report.problems))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    report, services = Report(), list[Service]()
    interrupted = False
    try:
        with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
            try:
                run(Path(tmp), services, report)
            finally:
                for service in reversed(services):
                    service.stop()
                collect_logs(services, report)
    except BenchError as exc:
        report.problems.append(str(exc))
    except KeyboardInterrupt:
        interrupted = True
    print_report(report)
    if interrupted:
        print("\ninterrupted: all started processes were stopped", file=sys.stderr)
        return 130
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
