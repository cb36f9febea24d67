"""Load benchmark: the Universal Endpoint through the gateway versus the fake upstream directly.

Every scenario runs DIRECT (client -> fake upstream) and THROUGH the gateway (client -> gateway
-> fake upstream) in the same run, against the same fake, so the difference is the gateway's own
cost on this machine rather than a number that only means something on the author's laptop.
The gateway gets CPU 1 to itself; the fake upstream, wrk and the stream client share CPU 0.

    .venv/bin/python bench/run.py                   (what `make bench` runs; every section)
    .venv/bin/python bench/run.py --only SECTION    (one of: http, ratelimit, realtime)

It is a report, not a test: missed targets still exit 0. It exits 1 only when something failed
to run (a process died, a request errored or answered non-2xx), and 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from constants import (
    BURST_CONNECTIONS,
    BURSTS,
    BUSY_SAMPLE_S,
    BUSY_WARNING,
    DURATION_S,
    GATEWAY_PATH,
    LOG_DURATION_S,
    LOG_WARMUP_S,
    MAX_ADDED_P50_MS,
    MAX_RSS_MB,
    MAX_TOP_UP_S,
    MAX_TTFC_OVERHEAD_MS,
    MIN_LOG_ON_RATIO,
    MIN_REQUESTS_FOR_RSS,
    MIN_STREAMS_VS_DIRECT,
    MIN_VS_HYPERCORN_C64,
    RSS_GROWTH_TOLERANCE_MB,
    STREAM_CHUNKS,
    STREAM_GAP_MS,
    STREAM_N,
    WARMUP_S,
    BenchError,
)
from load import (
    BurstResult,
    StreamResult,
    Target,
    WrkResult,
    burst,
    make_targets,
    measure_streams,
    pct,
    run_wrk,
    sanity_check,
)
from processes import (
    Pinning,
    Service,
    _read,
    busy_cpus,
    ensure_wrk,
    free_port,
    rss_mb,
    start_fake,
    start_gateway,
    start_static,
)
from ratelimit import RateLimitReport, print_ratelimit, run_ratelimit
from realtime_load import MIN_THROUGHPUT_RATIO, RealtimeReport, run_realtime

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
    # streams/s at c=64, events STREAM_GAP_MS apart: (direct, gateway) per round
    paced: list[tuple[WrkResult, WrkResult]] = field(default_factory=list)
    rss: list[tuple[str, int, float]] = field(default_factory=list)  # (when, requests, MB)
    # c=64 rounds taking turns: (access log off, access log on)
    log_rounds: list[tuple[WrkResult, WrkResult]] = field(default_factory=list)
    ceiling: tuple[WrkResult, WrkResult] | None = None  # hypercorn alone, c=1 and c=64
    bursts: list[tuple[str, BurstResult]] = field(default_factory=list)  # (backlog, result)
    realtime: RealtimeReport | None = None
    access_lines: int = 0
    ratelimit: RateLimitReport | None = None
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
        runs = (warmup, seconds) if warmup else (seconds,)
        results = [run_wrk(self.pin, target, connections, s) for s in runs]
        server.check_alive()
        for result in results:
            if result.error_count:
                self.report.problems.append(f"{label}: wrk errors {result.errors}")
        if target.name == "gateway":
            self.gateway_requests += sum(r.requests for r in results)
        result = results[-1]
        print(f" {result.rps:9,.0f} req/s  p50 {result.p50_ms:.3f} ms", flush=True)
        return result


SECTIONS = ("http", "ratelimit", "realtime")
# Comparisons that must not drift apart take turns, ROUNDS times, in short runs.
ROUNDS = 3
SHORT = {"warmup": LOG_WARMUP_S, "seconds": LOG_DURATION_S}


def run(work: Path, services: list[Service], report: Report, only: str | None) -> None:
    """The whole benchmark (or one section), in the order the report reads."""
    pin = Pinning()
    report.pinning = pin.describe()
    report.idle_busy = busy_cpus()
    if only in (None, "http", "ratelimit"):
        ensure_wrk()
        fake = start_fake(pin, free_port(), work)
        services.append(fake)
        if only in (None, "http"):
            run_core(pin, fake, work, services, report)
        if only in (None, "ratelimit"):
            print("g. gateway rate limit: none vs memory vs Redis, never refusing")
            report.ratelimit = run_ratelimit(pin, fake, work, services)
            report.problems += report.ratelimit.problems
    if only in (None, "realtime"):
        print("h. realtime WebSockets: small text frames and binary throughput")
        report.realtime = run_realtime(pin, work, services)


def run_core(
    pin: Pinning, fake: Service, work: Path, services: list[Service], report: Report
) -> None:
    """Sections a-f."""
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
    spent = 0
    while runner.gateway_requests < MIN_REQUESTS_FOR_RSS and spent < MAX_TOP_UP_S:
        missing = MIN_REQUESTS_FOR_RSS - runner.gateway_requests
        seconds = min(MAX_TOP_UP_S - spent, int(missing / max(report.c64[1].rps, 100)) + 2)
        print(f"  top-up: {seconds} s more at c=64 to pass {MIN_REQUESTS_FOR_RSS:,} requests")
        top_up = run_wrk(pin, plain[1], 64, seconds)
        gateway.check_alive()
        if top_up.error_count:
            report.problems.append(f"top-up at c=64: wrk errors {top_up.errors}")
        runner.gateway_requests += top_up.requests
        spent += seconds
        when = "after a + b + top-up"
    report.rss.append((when, runner.gateway_requests, rss_mb(gateway.proc.pid)))
    report.c64_again = runner.wrk("gateway, run 2", plain[1], 64, gateway)
    report.rss.append(("after c=64 run 2", runner.gateway_requests, rss_mb(gateway.proc.pid)))

    print(f"c. {STREAM_CHUNKS}-chunk stream, {STREAM_N} sequential requests each, alternating")
    report.streams = measure_streams(*make_targets(fake, gateway, work, stream=True))
    gateway.check_alive()

    print(f"c2. streams of {STREAM_CHUNKS} events {STREAM_GAP_MS} ms apart, c=64, taking turns")
    paced = make_targets(fake, gateway, work, stream=True, gap_ms=STREAM_GAP_MS)
    for _ in range(ROUNDS):
        report.paced.append(
            (
                runner.wrk("direct, streams", paced[0], 64, gateway, **SHORT),
                runner.wrk("gateway, streams", paced[1], 64, gateway, **SHORT),
            )
        )

    print("d. access log off vs on (the default), c=64, taking turns")
    logged = start_gateway(pin, fake.port, work, access_log=True)
    services.append(logged)
    logged_target = make_targets(fake, logged, work, stream=False)[1]
    sanity_check(logged_target)
    for _ in range(ROUNDS):
        report.log_rounds.append(
            (
                runner.wrk("gateway, log off", plain[1], 64, gateway, **SHORT),
                runner.wrk("gateway, log on", logged_target, 64, logged, **SHORT),
            )
        )
    report.access_lines = _read(logged.log).count(" gateway.access: ")
    logged.stop()
    gateway.stop()

    print("e. hypercorn alone: a static ASGI app on the gateway's CPU (the server's ceiling)")
    static = start_static(pin, work)
    services.append(static)
    ceiling = Target(
        "hypercorn",
        static.port,
        static.proc.pid,
        GATEWAY_PATH,
        logged_target.body,
        logged_target.headers,
        logged_target.body_file,
    )
    report.ceiling = (
        runner.wrk("hypercorn alone, c=1", ceiling, 1, static),
        runner.wrk("hypercorn alone, c=64", ceiling, 64, static),
    )
    static.stop()

    print(f"f. connection burst: {BURST_CONNECTIONS} clients connect at once, {BURSTS} times")
    for backlog in (None, 100):
        label = "default" if backlog is None else str(backlog)
        server = start_gateway(pin, fake.port, work, access_log=False, backlog=backlog)
        services.append(server)
        target = make_targets(fake, server, work, stream=False)[1]
        sanity_check(target)
        results = [burst(target, BURST_CONNECTIONS) for _ in range(BURSTS)]
        server.check_alive()
        merged = BurstResult(
            [ms for r in results for ms in r.latencies_ms],
            {k: sum(r.failures.get(k, 0) for r in results) for r in results for k in r.failures},
        )
        report.bursts.append((label, merged))
        p99 = pct(merged.latencies_ms, 99) if len(merged.latencies_ms) > 1 else 0.0
        print(f"  backlog {label:<8} failed {merged.failed}, p99 {p99:.0f} ms")
        server.stop()


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
    print("access log: off (access_log = false) but in section d, which compares off and on")
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
    if report.c1:
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
    for i, (direct, gateway) in enumerate(report.paced):
        label = f"c2. streams {STREAM_GAP_MS} ms" if i == 0 else ""
        row(label, "direct", direct)
        row("", "gateway", gateway)
    if report.paced:
        print(f"{'':<26}gateway/direct streams/s = {paced_ratio(report):.1%} (median of rounds)")
    for i, (off, on) in enumerate(report.log_rounds):
        row("d. access log, c=64" if i == 0 else "", "log off", off)
        row("", "log on", on)
    if report.log_rounds:
        print(
            f"{'':<26}log on/off req/s = {log_ratio(report):.1%} (median of rounds; "
            f"{report.access_lines:,} access-log lines written)"
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

    if report.bursts:
        print(
            f"\nf. {BURST_CONNECTIONS} clients connecting at once, one request each, "
            f"{BURSTS} bursts (ms from the burst's start to each full answer)"
        )
        sub = (
            f"{'backlog':<16}{'answered':>10}{'failed':>8}{'p50':>9}{'p99':>9}{'max':>9}  failures"
        )
        print(f"{sub}\n{'-' * len(sub)}")
        for label, b in report.bursts:
            lat = b.latencies_ms if len(b.latencies_ms) > 1 else [0.0, 0.0]
            print(
                f"{label:<16}{len(b.latencies_ms):>10}{b.failed:>8}{pct(lat, 50):>9.0f}"
                f"{pct(lat, 99):>9.0f}{max(lat):>9.0f}  {b.failures or ''}"
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

    if report.realtime:
        print_realtime(report.realtime)

    print(f"\n{'target':<44}{'measured':>16}  {'goal':<22}result")
    print("-" * 90)

    def target(name: str, value: str, goal: str, ok: bool | None) -> None:
        print(f"{name:<44}{value:>16}  {goal:<22}{verdict(ok)}")

    if report.paced:
        ratio = paced_ratio(report)
        goal = f">= {MIN_STREAMS_VS_DIRECT:.2f}x direct"
        name = f"streams/s c=64, {STREAM_GAP_MS} ms events, vs direct"
        target(name, f"{ratio:.3f}x", goal, ratio >= MIN_STREAMS_VS_DIRECT)
    if ttfc_overhead is not None:
        ok = ttfc_overhead <= MAX_TTFC_OVERHEAD_MS
        goal = f"<= +{MAX_TTFC_OVERHEAD_MS} ms"
        target("time to first chunk added, c=1 (p50)", f"{ttfc_overhead:+.3f} ms", goal, ok)
    if report.c64 and report.ceiling:
        ratio = report.c64[1].rps / report.ceiling[1].rps
        goal = f">= {MIN_VS_HYPERCORN_C64:.2f}x"
        target(
            "req/s c=64 vs hypercorn alone", f"{ratio:.2f}x", goal, ratio >= MIN_VS_HYPERCORN_C64
        )
    if report.c1:
        added = report.c1[1].p50_ms - report.c1[0].p50_ms
        ok = added <= MAX_ADDED_P50_MS
        target("added p50 latency, c=1", f"{added:+.3f} ms", f"<= +{MAX_ADDED_P50_MS} ms", ok)
    if report.log_rounds:
        ratio = log_ratio(report)
        goal = f">= {MIN_LOG_ON_RATIO:.2f}x"
        target("access log on vs off, req/s c=64", f"{ratio:.3f}x", goal, ratio >= MIN_LOG_ON_RATIO)
    if len(report.rss) >= 2:
        _, requests, mb = report.rss[1]
        ok = mb < MAX_RSS_MB if requests >= MIN_REQUESTS_FOR_RSS else None
        target(f"RSS after {requests:,} requests", f"{mb:.1f} MB", f"< {MAX_RSS_MB:.0f} MB", ok)
    if len(report.rss) >= 3:
        growth = report.rss[2][2] - report.rss[1][2]
        goal = f"no growth (<= {RSS_GROWTH_TOLERANCE_MB} MB)"
        ok = growth <= RSS_GROWTH_TOLERANCE_MB
        target("RSS growth, c=64 run 1 -> run 2", f"{growth:+.1f} MB", goal, ok)

    if report.ratelimit is not None:
        print_ratelimit(report.ratelimit)
    if report.realtime:
        realtime_targets(report.realtime, target)

    for name, (notable, tail) in report.logs.items():
        if notable:
            print(f"\n{name}: {len(notable)} non-INFO log lines, first ones:")
            print("\n".join(f"  {x}" for x in notable[:15]))
        if report.problems:
            print(f"\n{name}: last log lines:\n{tail}")
    if report.problems:
        print("\nFAILED TO RUN CLEANLY:")
        print("\n".join(f"  - {p}" for p in report.problems))


def paced_ratio(report: Report) -> float:
    return statistics.median(g.rps / d.rps for d, g in report.paced)


def log_ratio(report: Report) -> float:
    return statistics.median(on.rps / off.rps for off, on in report.log_rounds)


def print_realtime(rt: RealtimeReport) -> None:
    """Section g's table."""
    trips = len(rt.direct.rtt_ms)
    print(f"\nh. realtime WebSockets, {trips:,} round trips of a small text frame; binary")
    print("   throughput in 64 KiB messages, MB/s, median of the runs (each run: down/up)")
    sub = f"{'path':<12}{'RTT p50 ms':>12}{'RTT p99 ms':>12}{'download':>10}{'upload':>10}  runs"
    print(f"{sub}\n{'-' * (len(sub) + 24)}")
    for name, r in rt.paths():
        runs = ", ".join(f"{d:.0f}/{u:.0f}" for d, u in zip(r.download, r.upload, strict=True))
        print(
            f"{name:<12}{pct(r.rtt_ms, 50):>12.3f}{pct(r.rtt_ms, 99):>12.3f}"
            f"{statistics.median(r.download):>10.0f}{statistics.median(r.upload):>10.0f}  {runs}"
        )
    print(
        "trio relay: a bare trio TCP relay on the gateway's CPU, what any trio relay reaches here"
    )
    print("gateway memory (VmRSS): " + ", ".join(f"{w} {mb:.1f} MB" for w, mb in rt.rss))


def realtime_targets(
    rt: RealtimeReport, target: Callable[[str, str, str, bool | None], None]
) -> None:
    added = pct(rt.gateway.rtt_ms, 50) - pct(rt.direct.rtt_ms, 50)
    target("realtime added round-trip p50", f"{added:+.3f} ms", "(reported)", None)
    for way in ("download", "upload"):
        gateway = statistics.median(getattr(rt.gateway, way))
        ratio = gateway / statistics.median(getattr(rt.direct, way))
        goal = f">= {MIN_THROUGHPUT_RATIO:.0%} of direct"
        ok = ratio >= MIN_THROUGHPUT_RATIO
        target(f"realtime {way} throughput, gateway/direct", f"{ratio:.1%}", goal, ok)
        relay = gateway / statistics.median(getattr(rt.relay, way))
        target(f"realtime {way}, gateway/bare trio relay", f"{relay:.1%}", "(reported)", None)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Gateway load benchmark")
    parser.add_argument("--only", choices=SECTIONS, help="run one section")
    only = parser.parse_args(argv).only
    signal.signal(signal.SIGTERM, _interrupt)
    report, services = Report(), list[Service]()
    interrupted = False
    try:
        with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
            try:
                run(Path(tmp), services, report, only)
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
