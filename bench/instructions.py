"""Instructions per request, counted by callgrind: the gateway's cost without the noise.

Wall-clock figures on a shared 2-core machine move by ±25% between runs;
instruction counts do not. This runs the gateway (or hypercorn alone) under
`valgrind --tool=callgrind` with counting switched off, warms it up, switches
counting on for a fixed number of requests sent one at a time on a keep-alive
connection, and divides.

    .venv/bin/python bench/instructions.py [--requests N] [--stream] [--static]

It is slow (Python under valgrind runs ~50x slower) and needs valgrind
(installed with apt-get when missing).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from constants import AUTH, GATEWAY_PATH, HOST, QUERY, ROOT, BenchError
from processes import Pinning, free_port, start_fake

WARMUP = 300


def _valgrind() -> str:
    if found := shutil.which("valgrind"):
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "valgrind"], capture_output=True, check=False)
    if found := shutil.which("valgrind"):
        return found
    raise BenchError("valgrind is not installed: apt-get install valgrind")


def _wait_http(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise BenchError(f"nothing answered on port {port}")


def _requests(port: int, n: int, body: bytes, stream: bool) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    for _ in range(n):
        conn.request("POST", GATEWAY_PATH, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200 or (stream and b"[DONE]" not in data):
            raise BenchError(f"unexpected answer {response.status}: {data[:300]!r}")
    conn.close()


def _toggle(pid: int, on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(pid)],
        capture_output=True,
        check=True,
    )


def _total(out_prefix: Path) -> int:
    """Sum the `totals:` lines of every dump callgrind wrote."""
    total = 0
    for path in out_prefix.parent.glob(out_prefix.name + "*"):
        text = path.read_text(errors="replace")
        total += sum(int(m) for m in re.findall(r"^totals: (\d+)", text, re.M))
    return total


def measure(requests: int, stream: bool, static: bool, chunks: int) -> int:
    """Instructions for `requests` requests, counted in the server process only."""
    work = Path(tempfile.mkdtemp(prefix="gateway-callgrind-"))
    pin = Pinning()
    fake = start_fake(pin, free_port(), work)
    port = free_port()
    out = work / "callgrind.out"
    if static:
        cmd = [sys.executable, "bench/static_app.py", str(port)]
    else:
        config = work / "gateway.toml"
        config.write_text(
            "[server]\naccess_log = false\n"
            f'data_dir = "{work / "data"}"\n'
            f'[providers.openai]\nbase_url = "http://{HOST}:{fake.port}/v1"\n'
        )
        cmd = [sys.executable, "gateway.py", "--config", str(config), "--port", str(port)]
        cmd += ["--ws-port", str(free_port())]
    valgrind = [_valgrind(), "--tool=callgrind", "--instr-atstart=no"]
    valgrind.append(f"--callgrind-out-file={out}")
    proc = subprocess.Popen(
        [*pin.prefix(1), *valgrind, *cmd],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(work / "server.log").open("wb"),
    )
    try:
        _wait_http(port)
        query = {**QUERY, "stream": True} if stream else QUERY
        headers = {**AUTH, "x-fake-chunks": str(chunks)} if stream else AUTH
        step = {"provider": "openai", "endpoint": "chat/completions", "headers": headers}
        body = json.dumps([{**step, "query": query}]).encode()
        _requests(port, WARMUP, body, stream)
        _toggle(proc.pid, True)
        _requests(port, requests, body, stream)
        _toggle(proc.pid, False)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        fake.stop()
    return _total(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--stream", action="store_true", help="20-event SSE streams")
    parser.add_argument("--static", action="store_true", help="hypercorn alone, static body")
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    total = measure(args.requests, args.stream, args.static, args.chunks)
    what = "hypercorn alone" if args.static else "gateway"
    kind = f"{args.chunks}-event stream" if args.stream else "plain request"
    print(f"{what}, {kind}: {total / args.requests:,.0f} instructions per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
