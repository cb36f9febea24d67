"""The gateway as a user starts it: `python gateway.py ...` in a subprocess."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent


async def start(*args: str) -> tuple[trio.Process, int, int, trio.abc.ReceiveStream, bytes]:
    """Start the gateway on OS-chosen ports; return it with its ports once it is ready."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "gateway.py", "--port", "0", "--ws-port", "0", *args],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    output = b""
    with trio.fail_after(20):
        while not re.search(rb"WebSocket listening on ws://[^:]+:(\d+)", output):
            chunk = await process.stderr.receive_some()
            assert chunk, output.decode()
            output += chunk
    http_port = int(re.search(rb"HTTP listening on http://[^:]+:(\d+)", output)[1])
    ws_port = int(re.search(rb"WebSocket listening on ws://[^:]+:(\d+)", output)[1])
    return process, http_port, ws_port, process.stderr, output


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "gateway.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_bad_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[gateways.demo]\ncache_tll = 60\n")
    result = await trio.to_thread.run_sync(run, "--config", str(config))
    assert result.returncode == 2
    assert "gateways.demo.cache_tll: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
    config.write_text("[server\n")
    result = await trio.to_thread.run_sync(run, "--config", str(config))
    assert result.returncode == 2 and "invalid TOML" in result.stderr
    result = await trio.to_thread.run_sync(run, "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2 and "config file not found" in result.stderr


async def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await trio.to_thread.run_sync(run, "--port", str(port), "--ws-port", "0")
    assert result.returncode == 1
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr


async def test_demo_serves_and_sigterm_drains_in_flight_requests() -> None:
    process, http_port, _, stderr, _ = await start("--demo")
    url = f"http://127.0.0.1:{http_port}/v1/acct/gw"
    body = [
        {
            "provider": "workers-ai",
            "endpoint": "@cf/meta/llama-3.1-8b-instruct",
            "headers": {"x-fake-delay-ms": "1500"},
            "query": {"prompt": "tell me a joke"},
        }
    ]
    results: list[httpx.Response] = []
    try:
        async with httpx.AsyncClient(timeout=20) as client:
            assert (await client.get(f"http://127.0.0.1:{http_port}/healthz")).status_code == 200

            async def slow() -> None:
                results.append(await client.post(url, json=body))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow)
                await trio.sleep(0.5)  # the request is now in flight upstream
                process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
    assert code == 0
    (response,) = results
    assert response.status_code == 200
    assert response.json()["result"]["response"] == "Hello from the fake upstream."
    rest = await stderr.receive_some()
    assert b"Traceback" not in rest


async def test_settings_not_enforced_yet_are_announced(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[gateways.g]\ncache_ttl = 600\nrate_limit = { limit = 5, interval = 60 }\n")
    process, _, _, _, output = await start("--config", str(config))
    process.send_signal(signal.SIGTERM)
    with trio.fail_after(15):
        assert await process.wait() == 0
    assert b"gateways.g.cache_ttl is accepted but not enforced yet" in output
    assert b"gateways.g.rate_limit" not in output  # enforced
