"""Tests of the Python SDK through its native harness: field access, edits, new events, JSON
state, timers, lifetimes, headers, geo, config parsing and the framing."""

import pytest

from weir_sdk import Config, Event, GeoError, Level, Location, Needs, Transform, TtlRefresh
from weir_sdk import abi
from weir_sdk.config import parse_duration_ms
from weir_sdk.testing import TestEvent, TestHarness


class Sessionize(Transform):
    """Counts each user's events in state; closes a session with a summary on a timer."""

    def __init__(self, config):
        self.gap = config.duration_ms_or("gap", 30_000)

    def needs(self):
        return Needs.of_fields(["page", "context.ip"]).with_state(["count"])

    def process(self, event, ctx):
        session = ctx.state(event.key, "count")
        if session is not None:
            ctx.cancel_timer(event.key, session["due"])
        count = 1 if session is None else session["n"] + 1
        ctx.set_state(event.key, "count", {"n": count, "due": event.time + self.gap})
        ctx.set_timer(event.key, event.time + self.gap)
        event.set("n", count)
        event.set("ip", event.get("context.ip"))
        event.remove("secret")
        ctx.emit(event)

    def on_timer(self, key, at, ctx):
        summary = Event.new({"user": key.decode(), "events": ctx.state(key, "count")["n"]}, at)
        summary.set_key(b"sessions")
        ctx.route("sessions", summary)
        ctx.delete_state(key, "count")


def test_edits_are_applied_and_read_back():
    h = TestHarness(Sessionize)
    outs = h.process([
        ("u1", 1_000, {"page": "/a", "context": {"ip": "10.0.0.1"}, "secret": 1}),
        ("u1", 1_001, {"page": "/b", "context": {"ip": "10.0.0.2"}}),
        ("u2", 1_002, {"page": "/c"}),
    ])
    assert [o.value for o in outs] == [
        {"page": "/a", "context": {"ip": "10.0.0.1"}, "n": 1, "ip": "10.0.0.1"},
        {"page": "/b", "context": {"ip": "10.0.0.2"}, "n": 2, "ip": "10.0.0.2"},
        {"page": "/c", "n": 1, "ip": None},
    ]
    assert [(o.input, o.key, o.time) for o in outs] == [(0, "u1", 1_000), (1, "u1", 1_001),
                                                       (2, "u2", 1_002)]
    assert h.state("u1", "count") == {"n": 2, "due": 31_001}


def test_timers_fire_with_the_watermark_and_outputs_keep_their_own_key_and_time():
    h = TestHarness(Sessionize, {"gap": "30s"})
    h.process_one("u1", 1_000, {"page": "/a"})
    h.process_one("u1", 2_000, {"page": "/b"})
    assert h.timers() == [(32_000, "u1")]
    assert h.advance_watermark(31_999) == []
    [out] = h.advance_watermark(32_000)
    assert (out.route, out.value, out.key, out.time, out.input) == (
        "sessions", {"user": "u1", "events": 2}, "sessions", 32_000, None)
    assert h.state("u1", "count") is None and h.timers() == []


class Lookups(Transform):
    """Reads state of other keys, headers and geo; writes raw state; dead-letters."""

    def needs(self):
        return Needs.whole_values().with_headers().with_ttl("seen", 1_000,
                                                            TtlRefresh.ON_READ_AND_WRITE)

    def prepare(self, events, ctx):
        self.places = ctx.geo_many([e.get_str("ip") or "" for e in events])

    def process(self, event, ctx):
        if event.get("bad"):
            ctx.dead_letter("bad record", event)
            return
        ctx.set_state_bytes(b"all", "seen", (ctx.state_bytes(b"all", "seen") or b"") + b".")
        place = self.places[event.input_index]
        event.set("country", place.country_iso if isinstance(place, Location) else None)
        event.set("trace", (event.header("trace") or b"").decode())
        event.set("deep", event.get("a.b.c"))
        ctx.log(Level.INFO, f"seen {event.key_str}")
        ctx.histogram("size", len(event.get_raw("a") or b""))
        ctx.emit(event)


def geo(ip):
    if ip == "x":
        raise GeoError("not an address")
    return Location(country_iso="GB") if ip.startswith("81.") else None


def test_whole_values_headers_geo_and_other_keys_state():
    h = TestHarness(Lookups, geo=geo)
    outs = h.process([
        TestEvent("k", 5, {"ip": "81.2.69.10", "a": {"b": {"c": [1]}}}, {"trace": b"t-1"}),
        TestEvent("k", 6, {"ip": "10.0.0.1"}),
        TestEvent("k", 7, {"ip": "x", "bad": True}),
    ])
    assert [o.kind for o in outs] == ["emit", "emit", "dead-letter"]
    assert outs[0].value["country"] == "GB" and outs[1].value["country"] is None
    assert (outs[0].value["trace"], outs[0].value["deep"]) == ("t-1", [1])
    assert outs[2].dead_letter_reason == "bad record"
    assert h.state_bytes("all", "seen") == b".."
    assert h.host.geo_calls == 1 and h.host.histograms["size"] == [15, 0]
    assert h.host.logs == [(Level.INFO, "seen k")] * 2
    h.advance_watermark(1_005)
    assert h.state_bytes("all", "seen") is None, "its lifetime ended at 5 + 1000"


def test_event_accessors():
    e = Event.new(b'{"s":"x","i":3,"f":1.5,"b":true,"n":null,"o":{"k":"v"}}', 9)
    assert (e.get_str("s"), e.get_int("i"), e.get_float("i"), e.get_bool("b")) == (
        "x", 3, 3.0, True)
    assert (e.get_str("i"), e.get_int("b"), e.has("n"), e.has("zz")) == (None, None, True, False)
    assert e.get_raw("o") == b'{"k":"v"}' and e.get("o.k") == "v"
    assert (e.time, e.own_time(), e.key) == (9, 9, b"")
    copy = e.copy()
    copy.set("s", "y")
    assert e.get("s") == "x"
    assert e.output_value()[0] == abi.REPLACED


def test_config_getters_name_the_key():
    c = Config([("n", "5"), ("d", "1h 30m"), ("l", " a, ,b "), ("c", "Drop"), ("b", "TRUE")])
    assert c.int_or("n", 0) == 5 and c.int_or("missing", 7) == 7
    assert c.duration_ms_or("d", 0) == 5_400_000
    assert c.list_or("l") == ["a", "b"] and c.choice_or("c", ["route", "drop"], "x") == "drop"
    assert c.bool_or("b", False) is True
    with pytest.raises(ValueError, match="config `d`"):
        c.int_or("d", 0)
    with pytest.raises(ValueError, match=r"unknown config key\(s\): n, d, l, c, b"):
        c.reject_unknown([])
    assert [parse_duration_ms(t) for t in ("500ms", "2s", "1m", "1d")] == [
        500, 2_000, 60_000, 86_400_000]


def test_framing_round_trips():
    changes = bytearray()
    abi.push_change(changes, abi.PUT, b"k", "n", b"v")
    abi.push_change(changes, abi.DELETE, b"k", "n")
    abi.push_change(changes, abi.SET_TIMER, b"k", at=-5)
    assert list(abi.changes(bytes(changes))) == [
        (abi.PUT, b"k", "n", b"v", 0), (abi.DELETE, b"k", "n", None, 0),
        (abi.SET_TIMER, b"k", "", None, -5)]
    edits = bytearray()
    abi.push_set(edits, "a", b"1")
    abi.push_remove(edits, "b")
    assert list(abi.edits(bytes(edits))) == [("a", b"1"), ("b", None)]
    with pytest.raises(ValueError):
        list(abi.edits(bytes(edits[:-1])))
