"""The cf-aig-* request options: parsing, bounds and the hierarchy, without sockets."""

from __future__ import annotations

import pytest

from engine.options import NO_OPTIONS, CustomCost, Options, parse_options


def test_no_option_headers_cost_nothing() -> None:
    assert parse_options({}) == (NO_OPTIONS, [])


@pytest.mark.parametrize(
    ("headers", "expected", "warned"),
    [
        ({"cf-aig-cache-ttl": "3600"}, Options(cache_ttl=3600), False),
        ({"cf-cache-ttl": "60"}, Options(cache_ttl=60), False),  # the legacy name
        ({"cf-aig-cache-ttl": "0"}, Options(cache_ttl=0), False),  # caching off here
        ({"cf-aig-cache-ttl": "59"}, NO_OPTIONS, True),  # below the minimum: next level decides
        ({"cf-aig-cache-ttl": "2592001"}, NO_OPTIONS, True),
        ({"cf-aig-cache-ttl": "soon"}, NO_OPTIONS, True),
        ({"cf-aig-skip-cache": "true"}, Options(skip_cache=True), False),
        ({"cf-skip-cache": "FALSE"}, Options(skip_cache=False), False),
        ({"cf-aig-skip-cache": "yes please"}, NO_OPTIONS, True),
        ({"cf-aig-collect-log": "false"}, Options(collect_log=False), False),
        ({"cf-aig-collect-log-payload": "false"}, Options(collect_log_payload=False), False),
        ({"cf-aig-cache-key": " k1 "}, Options(cache_key="k1"), False),
        ({"cf-aig-event-id": "evt"}, Options(event_id="evt"), False),
        ({"cf-aig-byok-alias": "prod"}, Options(byok_alias="prod"), False),
        ({"cf-aig-byok-alias": "  "}, NO_OPTIONS, True),
        (
            {"cf-aig-custom-cost": '{"per_token_in": 0.000001, "per_token_out": 2e-6}'},
            Options(custom_cost=CustomCost(per_token_in=1e-6, per_token_out=2e-6)),
            False,
        ),
        ({"cf-aig-custom-cost": '{"per_token_in": "cheap"}'}, NO_OPTIONS, True),
        ({"cf-aig-custom-cost": '{"per_token_in": -1}'}, NO_OPTIONS, True),
        ({"cf-aig-custom-cost": "[1]"}, NO_OPTIONS, True),
        ({"cf-aig-custom-cost": "{}"}, NO_OPTIONS, True),
    ],
)
def test_each_option(headers: dict[str, str], expected: Options, warned: bool) -> None:
    options, warnings = parse_options(headers)
    assert options == expected
    assert bool(warnings) is warned


def test_metadata_rules() -> None:
    raw = (
        '{"user": "u1", "team": 7, "paid": true, "cf.user_id": "x", "nested": {"a": 1},'
        ' "n": null, "six": 6, "seven": 7}'
    )
    options, warnings = parse_options({"cf-aig-metadata": raw})
    # cf. keys are reserved, objects are not allowed, at most five entries are kept.
    assert options.metadata == {"user": "u1", "team": 7, "paid": True, "n": None, "six": 6}
    assert len(warnings) == 3
    bad, warnings = parse_options({"cf-aig-metadata": "{oops"})
    assert bad.metadata is None and warnings


def test_hierarchy_most_specific_wins() -> None:
    gateway_like = Options(cache_ttl=3600, collect_log=True)
    step = Options(cache_ttl=0)
    merged = step.over(gateway_like)
    assert merged.cache_ttl == 0 and merged.collect_log is True
    assert NO_OPTIONS.over(step) is step and step.over(NO_OPTIONS) is step
