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
from dataclasses import dataclass, field
from pathlib import Path

from constants import HOST, BenchError
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
    rps: dict[tuple[str, int], list[float]] = field(default_factory=dict)  # (variant, c) -> runs
    problems: list[str] = field(default_factory=list)

    def median(self, variant: str, connections: int) -> float:
        return statistics.median(self.rps[(variant, connections)])


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
        line = ", ".join(f"{v} {report.median(v, connections):,.0f}" for v in VARIANTS)
        print(f"    median req/s: {line}", flush=True)
    return report


def print_ratelimit(report: RateLimitReport) -> None:
    if not report.rps:
        return
    print(f"\ng. gateway rate limit (never refusing): req/s, median of {ROUNDS} rounds")
    head = f"{'variant':<24}{'c':>4}{'req/s':>10}{'vs none':>10}  rounds"
    print(f"{head}\n{'-' * 70}")
    for connections in (1, 64):
        for variant in VARIANTS:
            if (variant, connections) not in report.rps:
                continue
            baseline = "none (Redis process)" if variant.startswith("redis") else "none"
            ratio = report.median(variant, connections) / report.median(baseline, connections)
            runs = ", ".join(f"{r:,.0f}" for r in report.rps[(variant, connections)])
            print(
                f"{variant:<24}{connections:>4}{report.median(variant, connections):>10,.0f}"
                f"{ratio:>10.1%}  {runs}"
            )
    if ("memory", 64) in report.rps:
        cost = 1 - report.median("memory", 64) / report.median("none", 64)
        ok = "met" if cost < MAX_MEMORY_COST else "NOT MET"
        print(f"memory check cost at c=64: {cost:+.1%} (goal < {MAX_MEMORY_COST:.0%}): {ok}")
    for problem in report.problems:
        print(f"  problem: {problem}", file=sys.stderr)
