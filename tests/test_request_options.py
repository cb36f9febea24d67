"""The cf-aig-* request options as they travel with a real request to the features.

A feature (the request log) reads them from the planned step through the
hooks; this test stands in for it with a hook that records what it sees.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

import gateway
from engine.options import CustomCost, Options
from engine.plan import StepPlan
from server.executor import Committed
from server.hooks import Hooks
from server.universal import Prepared
from tests.conftest import Stack, step

SEEN: list[Options] = []


class Recorder(Hooks):
    def on_commit(self, prepared: Prepared, committed: Committed) -> None:
        plan: StepPlan = committed.plan
        SEEN.append(plan.options)


@pytest.fixture
def gateway_settings(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    SEEN.clear()
    monkeypatch.setattr(gateway, "features", lambda config, redis: [Recorder()])
    return {}


async def test_options_reach_the_features(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    metadata = {"user": "u1", "team": 7, "cf.user_id": "x", "a": 1, "b": 2, "c": 3, "d": 4}
    headers = {
        "cf-aig-metadata": json.dumps(metadata),
        "cf-aig-custom-cost": '{"per_token_in": 0.000001, "per_token_out": 0.000002}',
        "cf-aig-event-id": "evt-1",
        "cf-aig-collect-log": "false",
        "cf-aig-collect-log-payload": "maybe",  # invalid: the next level decides
    }
    in_step = step(headers={"cf-aig-collect-log": "true"})
    with caplog.at_level(logging.WARNING, logger="gateway"):
        response = await stack.client.post(stack.universal_url, json=[in_step], headers=headers)
    assert response.status_code == 200 and response.headers["cf-aig-event-id"] == "evt-1"
    (options,) = SEEN
    # At most five entries, cf. keys reserved; the step's own header wins over the request's.
    assert options.metadata == {"user": "u1", "team": 7, "a": 1, "b": 2, "c": 3}
    assert options.custom_cost == CustomCost(per_token_in=1e-6, per_token_out=2e-6)
    assert options.event_id == "evt-1"
    assert options.collect_log is True
    assert options.collect_log_payload is None
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "cf-aig-collect-log-payload: expected true or false" in warnings
    assert "'cf.user_id' is reserved" in warnings
