"""What a gateway rate limit costs: none vs in-memory vs Redis, in the same run.

The limit is set far above what the load can reach (10^9 per minute), so no
request is refused and the difference is the check itself. Memory and "none"
are two gateways of one gateway process; Redis needs `[server] redis_url`, so
it runs in a second gateway process that also serves a "none" gateway, its own
baseline. The variants take turns, several rounds each, each round starting
with a different one, so drift on a shared 2-core machine hits them alike; the
median round is reported.

    .venv/bin/python bench/run.py --only ratelimit     (about 3.5 minutes)
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from constants import HOST, ROOT, BenchError
from load import Target, make_targets, run_wrk, sanity_check
from processes import Pinning, Service, free_port, start, start_gateway

ROUNDS, WARMUP_S, SECONDS = 4, 1, 3
RULE = "rate_limit = { limit = 1000000000, interval = 60 }"
GATEWAYS = (
    f'[gateways.rl-fixed]\n{RULE}\n[gateways.rl-sliding]\n{RULE[:-2]}, technique = "sliding" }}\n'
)
# What "memory" means below: the fixed-window check, the default technique.
VARIANTS = ("none", "memory", "memory sliding", "none (Redis process)", "redis", "redis sliding")
MAX_MEMORY_COST = 0.03


@dataclass
class RateLimitReport:
    """Per (variant, c): each round's req/s and the gateway's CPU microseconds per request.

    CPU per request is the steadier figure on a machine others are using too:
    contention stretches wall time (req/s) far more than the CPU a request costs.
    """

    rps: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    cpu_us: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    check_us: dict[str, float] = field(default_factory=dict)  # in-process, CPU per check
    problems: list[str] = field(default_factory=list)

    def median(self, variant: str, connections: int) -> float:
        return statistics.median(self.rps[(variant, connections)])

    def median_cpu(self, variant: str, connections: int) -> float:
        return statistics.median(self.cpu_us[(variant, connections)])

    def cost(self, variant: str, connections: int) -> tuple[float, float]:
        """(req/s lost, CPU per request added) against the same process's "none"."""
        base = "none (Redis process)" if variant.startswith("redis") else "none"
        rps = 1 - self.median(variant, connections) / self.median(base, connections)
        cpu = self.median_cpu(variant, connections) / self.median_cpu(base, connections) - 1
        return rps, cpu


def start_redis(pin: Pinning, work: Path) -> Service:
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    cmd = [*pin.prefix(0), binary, "--port", str(port), "--bind", HOST, "--save", ""]
    cmd += ["--appendonly", "no", "--dir", str(work)]
    log = work / "redis.log"
    return start("redis-server", cmd, log, port, lambda: "Ready to accept" in _text(log))


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _target(base: Target, gateway: Service, gateway_id: str) -> Target:
    path = f"/v1/bench-account/{gateway_id}"
    return Target(
        base.name, gateway.port, gateway.proc.pid, path, base.body, base.headers, base.body_file
    )


CHECKS = 20_000  # in-process checks per variant


def measure_checks(redis_port: int) -> dict[str, float]:
    """CPU microseconds one admission costs, in this process: `Controls.admit` and release.

    Independent of the HTTP load and far steadier than it; set against the
    gateway's CPU per request, it is the check's share of a request.
    """
    sys.path.insert(0, str(ROOT))
    import trio

    from engine.config import load_config
    from providers import is_built_in
    from server.controls import Controls
    from stores.redis import open_redis

    limited = {"limit": 10**9, "interval": 60}
    config = load_config(
        {
            "gateways": {
                "fixed": {"rate_limit": limited},
                "sliding": {"rate_limit": {**limited, "technique": "sliding"}},
            }
        },
        is_built_in,
    )
    out: dict[str, float] = {}

    async def time_checks(controls: Controls, name: str, gateway_id: str) -> None:
        gateway = config.gateway(gateway_id)
        for _ in range(100):  # warm-up (Redis: loads the script)
            with await controls.admit(gateway_id, gateway):
                pass
        start = time.process_time()
        for _ in range(CHECKS):
            with await controls.admit(gateway_id, gateway):
                pass
        out[name] = (time.process_time() - start) / CHECKS * 1e6

    async def main() -> None:
        local = Controls.build(config, None)
        for name, gateway_id in (
            ("none", "none"),
            ("memory", "fixed"),
            ("memory sliding", "sliding"),
        ):
            await time_checks(local, name, gateway_id)
        async with open_redis(f"redis://{HOST}:{redis_port}/0") as redis:
            shared = Controls.build(config, redis)
            await time_checks(shared, "redis", "fixed")
            await time_checks(shared, "redis sliding", "sliding")

    trio.run(main)
    return out


def run_ratelimit(
    pin: Pinning, fake: Service, work: Path, services: list[Service]
) -> RateLimitReport:
    report = RateLimitReport()
    redis = start_redis(pin, work)
    services.append(redis)
    local = start_gateway(pin, fake.port, work, access_log=False, extra=GATEWAYS)
    services.append(local)
    redis_config = f'redis_url = "redis://{HOST}:{redis.port}/0"\n'
    shared = start_gateway(
        pin, fake.port, work, access_log=False, extra=GATEWAYS, server_extra=redis_config
    )
    services.append(shared)
    targets = {}
    for variant, gateway, gateway_id in (
        ("none", local, "bench-gateway"),
        ("memory", local, "rl-fixed"),
        ("memory sliding", local, "rl-sliding"),
        ("none (Redis process)", shared, "bench-gateway"),
        ("redis", shared, "rl-fixed"),
        ("redis sliding", shared, "rl-sliding"),
    ):
        plain = make_targets(fake, gateway, work, stream=False)[1]
        targets[variant] = (_target(plain, gateway, gateway_id), gateway)
        sanity_check(targets[variant][0])
    report.check_us = measure_checks(redis.port)
    print(
        "  in-process CPU per admission: "
        + ", ".join(f"{k} {v:.1f} us" for k, v in report.check_us.items())
    )
    for connections in (1, 64):
        print(f"  c={connections}: {ROUNDS} rounds of {SECONDS} s per variant, in turn")
        for round_ in range(ROUNDS):
            shift = round_ % len(VARIANTS)  # each round starts elsewhere: drift hits all alike
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                target, gateway = targets[variant]
                run_wrk(pin, target, connections, WARMUP_S)
                result = run_wrk(pin, target, connections, SECONDS)
                gateway.check_alive()
                if result.error_count:
                    report.problems.append(f"{variant} c={connections}: wrk {result.errors}")
                report.rps.setdefault((variant, connections), []).append(result.rps)
                report.cpu_us.setdefault((variant, connections), []).append(
                    result.cpu_us_per_request
                )
        line = ", ".join(f"{v} {report.median(v, connections):,.0f}" for v in VARIANTS)
        print(f"    median req/s: {line}", flush=True)
    return report


def print_ratelimit(report: RateLimitReport) -> None:
    if not report.rps:
        return
    print(f"\ng. gateway rate limit (never refusing), median of {ROUNDS} rounds")
    print("   cost = req/s lost and CPU per request added, against the same process's 'none'")
    head = (
        f"{'variant':<22}{'c':>4}{'req/s':>8}{'CPU us/req':>12}{'req/s cost':>12}"
        f"{'CPU cost':>10}  req/s of each round"
    )
    print(f"{head}\n{'-' * 100}")
    for connections in (1, 64):
        for variant in VARIANTS:
            if (variant, connections) not in report.rps:
                continue
            rps_cost, cpu_cost = report.cost(variant, connections)
            runs = ", ".join(f"{r:,.0f}" for r in report.rps[(variant, connections)])
            print(
                f"{variant:<22}{connections:>4}{report.median(variant, connections):>8,.0f}"
                f"{report.median_cpu(variant, connections):>12,.0f}"
                f"{rps_cost:>+12.1%}{cpu_cost:>+10.1%}  {runs}"
            )
    if report.check_us and ("none", 64) in report.cpu_us:
        request = report.median_cpu("none", 64)
        print(
            f"in-process CPU per admission (Controls.admit and release, {CHECKS:,} each), "
            f"as a share of a 'none' request's {request:,.0f} us at c=64:"
        )
        for name, us in report.check_us.items():
            extra = us - report.check_us["none"]
            print(f"  {name:<20}{us:>8.1f} us   added {extra:>7.1f} us = {extra / request:+.2%}")
    if report.check_us and ("none", 64) in report.cpu_us:
        share = (report.check_us["memory"] - report.check_us["none"]) / request
        rps_cost, cpu_cost = report.cost("memory", 64)
        ok = "met" if share < MAX_MEMORY_COST else "NOT MET"
        print(
            f"memory check cost: {share:+.2%} of a request's CPU (goal < {MAX_MEMORY_COST:.0%}): "
            f"{ok}; over HTTP at c=64 this run: {rps_cost:+.1%} req/s, {cpu_cost:+.1%} CPU per "
            "request (within the run-to-run noise when the rounds above disagree)"
        )
    for problem in report.problems:
        print(f"  problem: {problem}", file=sys.stderr)
