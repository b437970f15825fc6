// Tests of the JavaScript SDK through its harness: field access, edits, new events, JSON
// state, timers, lifetimes, headers, geo, config parsing and the framing.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Config, Event, GeoError, Level, Needs, Transform, TtlRefresh, parseDurationMs } from "weir-sdk";
import * as abi from "../src/abi.js";
import { TestHarness, testEvent } from "weir-sdk/testing";

/** Counts each user's events in state; closes a session with a summary on a timer. */
class Sessionize extends Transform {
  constructor(config) {
    super();
    this.gap = config.durationMsOr("gap", 30_000);
  }

  needs() {
    return Needs.fields(["page", "context.ip"]).withState(["count"]);
  }

  process(event, ctx) {
    const session = ctx.state(event.key, "count");
    if (session) ctx.cancelTimer(event.key, session.due);
    const n = session ? session.n + 1 : 1;
    ctx.setState(event.key, "count", { n, due: event.time + this.gap });
    ctx.setTimer(event.key, event.time + this.gap);
    event.set("n", n);
    event.set("ip", event.get("context.ip") ?? null);
    event.remove("secret");
    ctx.emit(event);
  }

  onTimer(key, at, ctx) {
    const summary = Event.create({ user: new TextDecoder().decode(key), events: ctx.state(key, "count").n }, at);
    summary.setKey("sessions");
    ctx.route("sessions", summary);
    ctx.deleteState(key, "count");
  }
}

test("edits are applied and read back", () => {
  const h = new TestHarness(Sessionize);
  const outs = h.process([
    ["u1", 1000, { page: "/a", context: { ip: "10.0.0.1" }, secret: 1 }],
    ["u1", 1001, { page: "/b", context: { ip: "10.0.0.2" } }],
    ["u2", 1002, { page: "/c" }],
  ]);
  assert.deepEqual(outs.map((o) => o.value), [
    { page: "/a", context: { ip: "10.0.0.1" }, n: 1, ip: "10.0.0.1" },
    { page: "/b", context: { ip: "10.0.0.2" }, n: 2, ip: "10.0.0.2" },
    { page: "/c", n: 1, ip: null },
  ]);
  assert.deepEqual(outs.map((o) => [o.input, o.key, o.time]), [[0, "u1", 1000], [1, "u1", 1001], [2, "u2", 1002]]);
  assert.deepEqual(h.state("u1", "count"), { n: 2, due: 31001 });
});

test("timers fire with the watermark; outputs keep their own key and time", () => {
  const h = new TestHarness(Sessionize, { gap: "30s" });
  h.processOne("u1", 1000, { page: "/a" });
  h.processOne("u1", 2000, { page: "/b" });
  assert.deepEqual(h.timers(), [[32000, "u1"]]);
  assert.deepEqual(h.advanceWatermark(31999), []);
  const [out] = h.advanceWatermark(32000);
  assert.deepEqual([out.route, out.value, out.key, out.time, out.input],
    ["sessions", { user: "u1", events: 2 }, "sessions", 32000, undefined]);
  assert.equal(h.state("u1", "count"), undefined);
  assert.deepEqual(h.timers(), []);
});

/** Reads state of other keys, headers and geo; writes raw state; dead-letters. */
class Lookups extends Transform {
  needs() {
    return Needs.wholeValues().withHeaders().withTtl("seen", 1000, TtlRefresh.ON_READ_AND_WRITE);
  }

  prepare(events, ctx) {
    this.places = ctx.geoMany(events.map((e) => e.getString("ip") ?? ""));
  }

  process(event, ctx) {
    if (event.get("bad")) {
      ctx.deadLetter("bad record", event);
      return;
    }
    const seen = ctx.stateBytes("all", "seen") ?? new Uint8Array();
    ctx.setStateBytes("all", "seen", new Uint8Array([...seen, 46]));
    const place = this.places[event.inputIndex];
    event.set("country", place instanceof GeoError ? null : place?.countryIso ?? null);
    event.set("trace", new TextDecoder().decode(event.header("trace") ?? new Uint8Array()));
    event.set("deep", event.get("a.b.c"));
    ctx.log(Level.INFO, `seen ${event.keyText}`);
    ctx.histogram("size", (event.getRaw("a") ?? []).length);
    ctx.emit(event);
  }
}

function geo(ip) {
  if (ip === "x") throw new GeoError("not an address");
  return ip.startsWith("81.") ? { countryIso: "GB" } : undefined;
}

test("whole values, headers, geo and state of other keys", () => {
  const h = new TestHarness(Lookups, {}, { geo });
  const outs = h.process([
    testEvent("k", 5, { ip: "81.2.69.10", a: { b: { c: [1] } } }, { trace: "t-1" }),
    testEvent("k", 6, { ip: "10.0.0.1" }),
    testEvent("k", 7, { ip: "x", bad: true }),
  ]);
  assert.deepEqual(outs.map((o) => o.kind), ["emit", "emit", "dead-letter"]);
  assert.equal(outs[0].value.country, "GB");
  assert.equal(outs[1].value.country, null);
  assert.deepEqual([outs[0].value.trace, outs[0].value.deep], ["t-1", [1]]);
  assert.equal(outs[2].deadLetterReason, "bad record");
  assert.deepEqual(h.stateBytes("all", "seen"), new Uint8Array([46, 46]));
  assert.equal(h.host.geoCalls, 1);
  assert.deepEqual(h.host.histograms.size, [15, 0]);
  assert.deepEqual(h.host.logs, [[Level.INFO, "seen k"], [Level.INFO, "seen k"]]);
  h.advanceWatermark(1005);
  assert.equal(h.stateBytes("all", "seen"), undefined, "its lifetime ended at 5 + 1000");
});

test("event accessors", () => {
  const e = Event.create('{"s":"x","i":3,"b":true,"n":null,"o":{"k":"v"}}', 9);
  assert.deepEqual([e.getString("s"), e.getNumber("i"), e.getBool("b")], ["x", 3, true]);
  assert.deepEqual([e.getString("i"), e.has("n"), e.has("zz")], [undefined, true, false]);
  assert.equal(new TextDecoder().decode(e.getRaw("o")), '{"k":"v"}');
  assert.equal(e.get("o.k"), "v");
  assert.deepEqual([e.time, e.ownTime(), e.key.length], [9, 9, 0]);
  const copy = e.copy();
  copy.set("s", "y");
  assert.equal(e.get("s"), "x");
  assert.equal(e.outputValue()[0], abi.REPLACED);
});

test("config getters name the key", () => {
  const c = new Config([["n", "5"], ["d", "1h 30m"], ["l", " a, ,b "], ["c", "Drop"], ["b", "TRUE"]]);
  assert.equal(c.intOr("n", 0), 5);
  assert.equal(c.intOr("missing", 7), 7);
  assert.equal(c.durationMsOr("d", 0), 5_400_000);
  assert.deepEqual(c.listOr("l"), ["a", "b"]);
  assert.equal(c.choiceOr("c", ["route", "drop"], "x"), "drop");
  assert.equal(c.boolOr("b", false), true);
  assert.throws(() => c.intOr("d", 0), /config `d`/);
  assert.throws(() => c.rejectUnknown([]), /unknown config key\(s\): n, d, l, c, b/);
  assert.deepEqual(["500ms", "2s", "1m", "1d"].map(parseDurationMs), [500, 2000, 60000, 86400000]);
});

test("framing round-trips", () => {
  const changes = new abi.Bytes();
  abi.pushChange(changes, abi.PUT, abi.utf8("k"), "n", abi.utf8("v"));
  abi.pushChange(changes, abi.DELETE, abi.utf8("k"), "n");
  abi.pushChange(changes, abi.SET_TIMER, abi.utf8("k"), "", undefined, -5);
  const decoded = [...abi.changes(changes.bytes())].map((c) => [c.op, abi.text(c.key), c.name, c.value && abi.text(c.value), c.at]);
  assert.deepEqual(decoded, [[abi.PUT, "k", "n", "v", 0], [abi.DELETE, "k", "n", null, 0], [abi.SET_TIMER, "k", "", null, -5]]);
  const edits = new abi.Bytes();
  abi.pushSet(edits, "a", abi.utf8("1"));
  abi.pushRemove(edits, "b");
  assert.deepEqual([...abi.edits(edits.bytes())].map(([n, r]) => [n, r && abi.text(r)]), [["a", "1"], ["b", null]]);
  assert.throws(() => [...abi.edits(edits.bytes().subarray(0, edits.length - 1))]);
});
