"""Harness tests of the Python bot filter (pytest, no Wasm): patterns, missing user agents,
the rate rule and config errors. The cross-language test checks it against the Rust plugin."""

import pytest

from bot_filter import BotFilter
from weir_sdk.testing import TestHarness

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")
CUBOT = ("Mozilla/5.0 (Linux; Android 10; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/119.0.6045.163 Mobile Safari/537.36")
T0 = 1_795_000_000_000


def event(ua=None):
    value = {"event_id": "e-1", "user_id": "u-42", "type": "page_view"}
    if ua is not None:
        value["user_agent"] = ua
    return value


@pytest.mark.parametrize("ua,pattern", [
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "googlebot"),
    ("MOZILLA/5.0 (COMPATIBLE; GOOGLEBOT/2.1)", "googlebot"),
    ("curl/8.4.0", "curl/"),
    ("python-requests/2.31.0", "python-requests"),
    ("Mozilla/5.0 (compatible; SomeNewBot/1.0)", "bot"),
    ("Mozilla/5.0 (Linux; Android 10; CUBOT_X30) curl/8.0", "curl/"),
])
def test_crawlers_are_routed_with_the_pattern_found(ua, pattern):
    h = TestHarness(BotFilter)
    [out] = h.process_one("u-1", T0, event(ua))
    assert out.route == "bots"
    assert out.value["bot_reason"] == f"user_agent:{pattern}"
    assert out.value["user_agent"] == ua
    assert h.host.counters == {"bots_user_agent": 1}
    assert h.state("u-1", "rate") is None, "UA bots skip the rate rule"


def test_humans_pass_unchanged_and_an_exemption_hides_the_generic_pattern():
    h = TestHarness(BotFilter)
    outs = h.process([("u-1", T0, event(CHROME)), ("u-2", T0, event(CUBOT))])
    assert [o.kind for o in outs] == ["emit", "emit"]
    assert outs[1].value == event(CUBOT)
    assert h.host.counters == {"humans": 2}


def test_missing_user_agent_follows_the_policy():
    assert TestHarness(BotFilter).process_one("u", T0, event())[0].value["bot_reason"] == \
        "missing_user_agent"
    [out] = TestHarness(BotFilter, {"missing_user_agent": "dead-letter"}).process_one(
        "u", T0, event("  "))
    assert out.dead_letter_reason == "missing user agent"
    [out] = TestHarness(BotFilter, {"missing_user_agent": "allow"}).process_one(
        "u", T0, event(17))
    assert out.is_emit


def test_the_rate_rule_trips_past_the_burst_and_marks_for_the_ttl():
    h = TestHarness(BotFilter, {"rate_limit": "3", "rate_window": "1s", "burst": "3",
                                "bot_ttl": "10s"})
    kinds = [h.process_one("u", T0 + t, event(CHROME))[0].kind for t in (0, 1, 2, 3)]
    assert kinds == ["emit", "emit", "emit", "route"]
    assert h.process_one("u", T0 + 9_000, event(CHROME))[0].value["bot_reason"] == "rate"
    assert h.process_one("u", T0 + 20_000, event(CHROME))[0].is_emit


def test_rate_state_expires_once_the_user_is_quiet():
    h = TestHarness(BotFilter, {"rate_window": "1m", "bot_ttl": "2m"})
    h.process_one("u", T0, event(CHROME))
    assert h.state("u", "rate") is not None
    h.advance_watermark(T0 + 120_000)
    assert h.state("u", "rate") is None


def test_drop_action_drops_bots():
    assert TestHarness(BotFilter, {"action": "drop"}).process_one("u", T0, event("curl/8")) == []


@pytest.mark.parametrize("config,message", [
    ({"rate_limt": "3"}, "unknown config key(s): rate_limt"),
    ({"rate_limit": "0"}, "config `rate_limit`: must be at least 1"),
    ({"rate_window": "soon"}, "config `rate_window`: cannot parse duration"),
    ({"action": "keep"}, "config `action`: 'keep' is not one of route, drop"),
])
def test_bad_config_is_refused_naming_the_key(config, message):
    with pytest.raises(ValueError, match=None) as e:
        TestHarness(BotFilter, config)
    assert message in str(e.value)
