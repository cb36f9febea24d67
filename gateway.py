"""Entry point and composition root: CLI, configuration and the root nursery.

    python gateway.py [--config FILE] [--host H] [--port HTTP_PORT] [--ws-port WS_PORT] [--demo]

The root nursery runs the HTTP listener (hypercorn) and the WebSocket listener
(trio-websocket), each started with `nursery.start` so a port already in use
is reported at once. SIGINT/SIGTERM stop accepting, let in-flight requests
finish within the grace period, and exit 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import signal
import sys
import tomllib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import WebSocketServer

from engine.config import Config, ConfigError, load_config
from engine.limits import HEAD_SLACK
from engine.urls import parse_base_url
from providers import Registry, is_built_in
from server.controls import Controls
from server.hooks import Hooks
from server.http import GatewayApp
from server.realtime import RECEIVE_BYTES
from server.universal import Universal
from server.upstream import ConnectionPool
from server.websocket import WebSocketHandler
from server.wsmask import install as install_fast_masking
from stores.redis import Redis, open_redis

log = logging.getLogger("gateway")
DEFAULT_CONFIG = Path("gateway.toml")
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")
# Providers the demo's fake upstream stands in for, with the path it serves them under.
DEMO_PROVIDERS = {
    "workers-ai": "/client/v4/accounts/{account_id}/ai",
    "openai": "/v1",
    "anthropic": "",
}


@dataclass(frozen=True, slots=True)
class Listening:
    http_port: int
    ws_port: int


def read_config(path: Path | None) -> Config:
    """Load and validate TOML config; no file means embedded defaults."""
    if path is None:
        return load_config({}, is_built_in)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return load_config(data, is_built_in)


def warn_unimplemented(config: Config) -> None:
    """Say at start-up which configured settings do nothing yet, rather than ignore them."""
    for name, settings in config.gateways.items():
        unused = {
            "cache_ttl": settings.cache_ttl > 0,
            "collect_logs": not settings.collect_logs,
        }
        for key, is_set in unused.items():
            if is_set:
                log.warning("gateways.%s.%s is accepted but not enforced yet", name, key)


async def serve(
    config: Config,
    *,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run both listeners until `shutdown` is set, then drain and return."""
    if shutdown is None:
        shutdown = trio.Event()
    install_fast_masking()  # WebSocket frame masking in C rather than Python
    server = config.server
    pool = ConnectionPool(
        max_connections=server.upstream_max_connections,
        connect_timeout=server.upstream_connect_timeout,
    )
    hypercorn = HypercornConfig()
    hypercorn.bind = [f"{server.host}:{server.http_port}"]
    hypercorn.graceful_timeout = server.grace_period
    hypercorn.accesslog = None
    hypercorn.errorlog = logging.getLogger("hypercorn.error")
    hypercorn.include_server_header = False
    # Above the gateway's own header limit, so a large head gets its 431 envelope.
    hypercorn.h11_max_incomplete_size = server.max_header_bytes + HEAD_SLACK
    backlog = effective_backlog(server.backlog)
    hypercorn.backlog = backlog
    try:
        async with open_redis(server.redis_url) as redis, trio.open_nursery() as services:
            hooks = features(config, redis)
            for hook in hooks:
                await services.start(hook.serve)
            universal = Universal(
                config, Registry(config.providers), pool, hooks, Controls.build(config, redis)
            )
            await _serve_listeners(universal, hypercorn, backlog, shutdown, task_status)
            # Every request has finished: the features' services flush and stop.
            services.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await pool.aclose()


async def _serve_listeners(
    universal: Universal,
    hypercorn: HypercornConfig,
    backlog: int,
    shutdown: trio.Event,
    task_status: trio.TaskStatus[Listening],
) -> None:
    server = universal.config.server
    async with trio.open_nursery() as root:
        binds = await root.start(
            partial(
                hypercorn_serve,
                GatewayApp(universal),
                hypercorn,
                shutdown_trigger=shutdown.wait,
            )
        )
        http_port = int(binds[0].rsplit(":", 1)[1])
        ws_scope = trio.CancelScope()
        ws_server = await root.start(
            _serve_ws, universal, server.host, server.ws_port, backlog, ws_scope
        )
        ws_port = ws_server.port
        log.info("HTTP listening on http://%s:%d", server.host, http_port)
        log.info("WebSocket listening on ws://%s:%d", server.host, ws_port)
        task_status.started(Listening(http_port, ws_port))
        await shutdown.wait()
        log.info("shutting down: draining in-flight requests (up to %gs)", server.grace_period)
        # hypercorn drains on its own; the WebSocket listener stops accepting
        # and its live sockets get the same grace period (see _serve_ws).
        ws_scope.cancel()
        root.cancel_scope.deadline = trio.current_time() + server.grace_period + 1


def features(config: Config, redis: Redis | None) -> list[Hooks]:
    """The hooks of the features in use, in the order they see each attempt."""
    return []


def effective_backlog(configured: int) -> int:
    """The listen backlog the kernel will grant: `configured`, capped at somaxconn."""
    try:
        limit = int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return configured  # not Linux, or not readable: the kernel caps it silently
    if configured > limit:
        log.info("server.backlog %d is capped at the kernel's somaxconn, %d", configured, limit)
        return limit
    return configured


async def _serve_ws(
    universal: Universal,
    host: str,
    port: int,
    backlog: int,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    handler = WebSocketHandler(universal)
    async with trio.open_nursery() as handlers:
        with scope:
            listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
            ws_server = WebSocketServer(
                handler,
                listeners,
                handler_nursery=handlers,
                max_message_size=universal.config.server.ws_max_frame_bytes,
                receive_buffer_size=RECEIVE_BYTES,
            )
            await ws_server.run(task_status=task_status)
        end = trio.current_time() + universal.config.server.grace_period
        handler.drain(end)  # realtime sessions close both their sides (1001) then
        handlers.cancel_scope.deadline = end + 1  # the rest a second later, with the root nursery


async def _watch_signals(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s", signal.Signals(signum).name)
            shutdown.set()
            return


async def main_async(config: Config, demo: bool) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, shutdown)
        if demo:
            from server.fake_upstream import FakeUpstream

            fake = FakeUpstream()
            port = await nursery.start(fake.serve)
            providers = dict(config.providers)
            for slug, path in DEMO_PROVIDERS.items():
                providers[slug] = parse_base_url(f"http://127.0.0.1:{port}{path}")
            config = dataclasses.replace(config, providers=providers)
            log.info(
                "demo: fake upstream on 127.0.0.1:%d answers %s", port, ", ".join(DEMO_PROVIDERS)
            )
        await serve(config, shutdown=shutdown)
        nursery.cancel_scope.cancel()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Self-hosted Cloudflare-compatible AI gateway")
    parser.add_argument(
        "--config", type=Path, help="TOML config (default: ./gateway.toml if present)"
    )
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default 8787)")
    parser.add_argument("--ws-port", type=int, help="WebSocket port (default 8788)")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="serve workers-ai, openai and anthropic from a built-in fake upstream",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    try:
        config = read_config(path)
        overrides = {"host": args.host, "http_port": args.port, "ws_port": args.ws_port}
        for name, value in overrides.items():
            if value is not None:
                if name != "host" and not 0 <= value <= 65535:
                    raise ConfigError(f"--{name.replace('_', '-')}: must be 0..65535")
                config = dataclasses.replace(
                    config, server=dataclasses.replace(config.server, **{name: value})
                )
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    warn_unimplemented(config)
    try:
        trio.run(main_async, config, args.demo)
    except (OSError, BaseExceptionGroup) as exc:
        errors = _leaves(exc)
        if not all(isinstance(e, OSError | KeyboardInterrupt) for e in errors):
            raise
        for error in errors:
            if isinstance(error, OSError):
                print(f"gateway: cannot start: {_describe(error)}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _describe(error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return "address already in use; choose another port with --port / --ws-port"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
