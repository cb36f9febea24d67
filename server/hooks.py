"""Where the gateway's features attach to a request: hooks, taps and transforms.

The executor runs attempts and the transports relay the committed response;
features (the cache, the request log, stored keys, `/compat` translation) do
their work through three seams instead of editing that code:

- `Hooks`: called by the executor around every attempt. `before_attempt` may
  answer a step without going upstream (a cache hit); `after_attempt` sees
  each attempt's outcome (a log row per attempt); `on_commit` may add taps and
  a transform to the response the client will get.
- `Tap`: sees every body byte of the committed upstream response as it is
  relayed, and how the body ended. It observes; it never delays or changes
  what the client gets (the cache stores a body, the log counts tokens).
- `Transform`: rewrites the committed response on its way to the client
  (`/compat` translates a provider's answer into OpenAI's shape).

A feature with work of its own (the log writer, the cache sweeper) runs it in
`Hooks.serve`, started in the root nursery before the listeners and stopped
after they have drained, so every request finished has been seen by it.

Realtime WebSocket sessions have no attempts; `Hooks.realtime_open` and
`realtime_closed` see each session begin (rate limits, stored keys) and end
(its log record).

With no feature configured the lists are empty and a request pays nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from engine.plan import StepPlan
    from engine.realtime import RealtimeSession
    from engine.retry import Attempt, Failure
    from server.executor import Committed
    from server.universal import Prepared

Headers = list[tuple[bytes, bytes]]


class Tap(Protocol):
    def feed(self, chunk: bytes) -> None:
        """Body bytes of the upstream response, in order, as they are relayed."""

    async def finish(self, complete: bool) -> None:
        """The body ended: `complete` is False when it was cut or the client left.

        Runs shielded from cancellation, under a short deadline.
        """


class Transform(Protocol):
    def head(self, status: int, headers: Headers) -> tuple[int, Headers]:
        """The response head the client gets (a transform drops content-length)."""

    def feed(self, chunk: bytes) -> bytes:
        """Upstream body bytes in, client body bytes out (possibly none yet)."""

    def finish(self) -> bytes:
        """What remains for the client once the upstream body is complete."""


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one attempt ended, for the hooks that record attempts."""

    attempt: Attempt
    started: float  # trio.current_time() when the attempt began
    first_byte: float | None  # when its response head arrived; None without one
    failure: Failure | None  # None: this attempt committed
    committed: Committed | None  # the response, when one arrived (failed or not)


class Hooks:
    """The no-op base: a feature overrides what it needs."""

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The feature's background service, if it has one.

        Started with `nursery.start` before the listeners; call
        `task_status.started()` once ready. It is cancelled after the listeners
        have drained: flush what is pending then, under a shielded scope.
        """
        task_status.started()

    async def before_attempt(
        self, prepared: Prepared, plan: StepPlan, attempt: Attempt
    ) -> Committed | None:
        """An answer for this step without an upstream call, or None to go upstream."""
        return None

    def after_attempt(self, prepared: Prepared, plan: StepPlan, result: AttemptResult) -> None:
        """Every attempt, failed or committed, once its outcome is known."""

    def on_commit(self, prepared: Prepared, committed: Committed) -> None:
        """The response the client gets: add taps or a transform here."""

    async def realtime_open(self, session: RealtimeSession) -> None:
        """A realtime session is about to open its upstream.

        Raise a GatewayError to refuse it (the client's handshake gets that
        status and envelope), or add a header to `session.headers` (a stored key).
        """

    def realtime_closed(self, session: RealtimeSession) -> None:
        """A realtime session ended; its record (traffic, close codes, duration) is complete."""


class HookChain(Hooks):
    """Several features' hooks, called in order; the first stored answer wins."""

    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self.hooks = tuple(hooks)

    async def before_attempt(
        self, prepared: Prepared, plan: StepPlan, attempt: Attempt
    ) -> Committed | None:
        for hook in self.hooks:
            if (answer := await hook.before_attempt(prepared, plan, attempt)) is not None:
                return answer
        return None

    def after_attempt(self, prepared: Prepared, plan: StepPlan, result: AttemptResult) -> None:
        for hook in self.hooks:
            hook.after_attempt(prepared, plan, result)

    def on_commit(self, prepared: Prepared, committed: Committed) -> None:
        for hook in self.hooks:
            hook.on_commit(prepared, committed)

    async def realtime_open(self, session: RealtimeSession) -> None:
        for hook in self.hooks:
            await hook.realtime_open(session)

    def realtime_closed(self, session: RealtimeSession) -> None:
        for hook in self.hooks:
            hook.realtime_closed(session)


class _Chained:
    """Two transforms, the first one's output fed to the second."""

    def __init__(self, first: Transform, second: Transform) -> None:
        self.first, self.second = first, second

    def head(self, status: int, headers: Headers) -> tuple[int, Headers]:
        return self.second.head(*self.first.head(status, headers))

    def feed(self, chunk: bytes) -> bytes:
        return self.second.feed(self.first.feed(chunk))

    def finish(self) -> bytes:
        return self.second.feed(self.first.finish()) + self.second.finish()


def chain(first: Transform | None, then: Transform) -> Transform:
    """Add `then` after an existing transform (features never overwrite each other's)."""
    return then if first is None else _Chained(first, then)
