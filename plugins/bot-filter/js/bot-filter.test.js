// Harness tests of the JavaScript bot filter (`weir-js test`, no Wasm): patterns, missing
// user agents, the rate rule and config errors. The cross-language test checks it against
// the Rust plugin.

import assert from "node:assert/strict";
import { test } from "node:test";

import { TestHarness } from "weir-sdk/testing";

import { BotFilter } from "./bot-filter.js";

const CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const CUBOT = "Mozilla/5.0 (Linux; Android 10; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36";
const T0 = 1_795_000_000_000;

function event(ua) {
  const value = { event_id: "e-1", user_id: "u-42", type: "page_view" };
  if (ua !== undefined) value.user_agent = ua;
  return value;
}

test("crawlers are routed with the pattern found", () => {
  const cases = [
    ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "googlebot"],
    ["MOZILLA/5.0 (COMPATIBLE; GOOGLEBOT/2.1)", "googlebot"],
    ["curl/8.4.0", "curl/"],
    ["python-requests/2.31.0", "python-requests"],
    ["Mozilla/5.0 (compatible; SomeNewBot/1.0)", "bot"],
    ["Mozilla/5.0 (Linux; Android 10; CUBOT_X30) curl/8.0", "curl/"],
  ];
  for (const [ua, pattern] of cases) {
    const h = new TestHarness(BotFilter);
    const [out] = h.processOne("u-1", T0, event(ua));
    assert.equal(out.route, "bots", ua);
    assert.equal(out.value.bot_reason, `user_agent:${pattern}`);
    assert.equal(out.value.user_agent, ua);
    assert.deepEqual(h.host.counters, { bots_user_agent: 1 });
    assert.equal(h.state("u-1", "rate"), undefined, "UA bots skip the rate rule");
  }
});

test("humans pass unchanged; an exemption hides the generic pattern", () => {
  const h = new TestHarness(BotFilter);
  const outs = h.process([["u-1", T0, event(CHROME)], ["u-2", T0, event(CUBOT)]]);
  assert.deepEqual(outs.map((o) => o.kind), ["emit", "emit"]);
  assert.deepEqual(outs[1].value, event(CUBOT));
  assert.deepEqual(h.host.counters, { humans: 2 });
});

test("a missing user agent follows the policy", () => {
  assert.equal(new TestHarness(BotFilter).processOne("u", T0, event())[0].value.bot_reason, "missing_user_agent");
  const [dead] = new TestHarness(BotFilter, { missing_user_agent: "dead-letter" }).processOne("u", T0, event("  "));
  assert.equal(dead.deadLetterReason, "missing user agent");
  const [allowed] = new TestHarness(BotFilter, { missing_user_agent: "allow" }).processOne("u", T0, event(17));
  assert.equal(allowed.kind, "emit");
});

test("the rate rule trips past the burst and marks for the ttl", () => {
  const h = new TestHarness(BotFilter, { rate_limit: "3", rate_window: "1s", burst: "3", bot_ttl: "10s" });
  const kinds = [0, 1, 2, 3].map((t) => h.processOne("u", T0 + t, event(CHROME))[0].kind);
  assert.deepEqual(kinds, ["emit", "emit", "emit", "route"]);
  assert.equal(h.processOne("u", T0 + 9000, event(CHROME))[0].value.bot_reason, "rate");
  assert.equal(h.processOne("u", T0 + 20000, event(CHROME))[0].kind, "emit");
});

test("rate state expires once the user is quiet", () => {
  const h = new TestHarness(BotFilter, { rate_window: "1m", bot_ttl: "2m" });
  h.processOne("u", T0, event(CHROME));
  assert.notEqual(h.state("u", "rate"), undefined);
  h.advanceWatermark(T0 + 120_000);
  assert.equal(h.state("u", "rate"), undefined);
});

test("the drop action drops bots", () => {
  assert.deepEqual(new TestHarness(BotFilter, { action: "drop" }).processOne("u", T0, event("curl/8")), []);
});

test("a bad config is refused, naming the key", () => {
  const cases = [
    [{ rate_limt: "3" }, "unknown config key(s): rate_limt"],
    [{ rate_limit: "0" }, "config `rate_limit`: must be at least 1"],
    [{ rate_window: "soon" }, "config `rate_window`: cannot parse duration"],
    [{ action: "keep" }, 'config `action`: "keep" is not one of route, drop'],
  ];
  for (const [config, message] of cases) {
    assert.throws(() => new TestHarness(BotFilter, config), (e) => e.message.includes(message));
  }
});
