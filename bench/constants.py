"""Settings and targets shared by the benchmark's modules."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "post.lua"
HOST = "127.0.0.1"
UPSTREAM_PATH = "/v1/chat/completions"
GATEWAY_PATH = "/v1/bench-account/bench-gateway"

WARMUP_S, DURATION_S = 2, 8
LOG_WARMUP_S, LOG_DURATION_S = 1, 4  # the shorter access-log-on comparison
STREAM_WARMUP, STREAM_N, STREAM_CHUNKS = 20, 200, 20
MIN_REQUESTS_FOR_RSS, MAX_TOP_UP_S = 100_000, 120
BURST_CONNECTIONS, BURSTS = 500, 3  # clients that all connect in the same moment; repeats

BUSY_SAMPLE_S, BUSY_WARNING = 0.5, 0.10  # other work on the CPUs makes the numbers noisy
# The hot path's targets: each a figure of the gateway against a reference in the same run.
MAX_ADDED_P50_MS = 0.6  # c=1, 0 ms upstream
MAX_TTFC_OVERHEAD_MS = 0.5  # c=1, first chunk of a stream
MIN_VS_HYPERCORN_C64 = 0.70  # req/s at c=64 vs hypercorn answering a fixed body
MIN_STREAMS_VS_DIRECT = 0.95  # streams/s at c=64, events STREAM_GAP_MS apart
MIN_LOG_ON_RATIO = 0.97  # access log on vs off, req/s at c=64
MAX_RSS_MB = 60.0  # after MIN_REQUESTS_FOR_RSS requests
STREAM_GAP_MS = 5  # between the events of the c=64 stream scenario
# VmRSS moves by a few pages with allocator noise; more than this between runs counts as growth.
RSS_GROWTH_TOLERANCE_MB = 1.0

AUTH = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
QUERY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


class BenchError(Exception):
    """Something failed to run: the report is incomplete and the exit status non-zero."""
