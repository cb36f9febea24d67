"""Processes the benchmark starts, pins, watches and stops; CPU and memory readings."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from constants import BUSY_SAMPLE_S, HOST, ROOT, BenchError

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


def start_gateway(
    pin: Pinning,
    fake_port: int,
    work: Path,
    access_log: bool,
    backlog: int | None = None,
    label: str = "",
    extra: str = "",
    server_extra: str = "",
    ws_port: int | None = None,
) -> Service:
    """A gateway on CPU 1 with openai at the fake upstream.

    `extra` is more TOML (gateways, providers), `server_extra` more [server] lines.
    """
    http_port, tag = free_port(), "on" if access_log else "off"
    if backlog is not None:
        tag += f"-backlog-{backlog}"
    if label:
        tag += f"-{label}"
    tag += "-gateways" if extra and not label else ""
    tag += "-redis" if "redis_url" in server_extra else ""
    config = work / f"gateway-log-{tag}.toml"
    backlog_line = f"backlog = {backlog}\n" if backlog is not None else ""
    config.write_text(
        "[server]\n"
        f"access_log = {'true' if access_log else 'false'}\n"
        f"{backlog_line}{server_extra}"
        f'data_dir = "{work / "data"}"\n'
        "grace_period = 2\n"
        "[providers.openai]\n"
        f'base_url = "http://{HOST}:{fake_port}/v1"\n'
        f"{extra}"
    )
    cmd = [*pin.prefix(1), sys.executable, "gateway.py", "--config", str(config)]
    cmd += ["--host", HOST, "--port", str(http_port), "--ws-port", str(ws_port or free_port())]
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
