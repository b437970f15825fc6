// The bot filter in JavaScript: the same rules, config and outputs as the Rust plugin in
// `src/` (see its `lib.rs` for the config keys), over the same pattern list (`patterns.txt`,
// bundled in as text). The cross-language test runs all three versions over the same events
// and checks that their outputs are identical.

import { Needs, Transform, TtlRefresh } from "weir-sdk";

import patternsFile from "../patterns.txt";

const RATE_STATE = "rate";
const KEYS = ["user_agent_field", "extra_patterns", "missing_user_agent", "rate_limit",
  "rate_window", "burst", "bot_ttl", "action", "route"];
const DEFAULT_BURST = 20;
/** Most user-agent verdicts remembered at once. */
const VERDICTS = 8192;

const lines = patternsFile.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
const BUILTIN = lines.filter((l) => !l.startsWith("!"));
const EXEMPTIONS = lines.filter((l) => l.startsWith("!")).map((l) => l.slice(1));

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/** Finds the first bot pattern in a user agent: case-insensitive, leftmost-first (an
 * alternation tries its branches in order at the leftmost position), skipping a match on an
 * exemption. Pattern `i` is group `i + 1`. */
class Matcher {
  constructor(extra) {
    this.names = [...BUILTIN, ...extra];
    this.exemptFrom = this.names.length;
    const branches = [...this.names, ...EXEMPTIONS].map((n) => `(${escape(n)})`);
    this.regex = new RegExp(branches.join("|"), "gi");
  }

  find(userAgent) {
    for (const match of userAgent.matchAll(this.regex)) {
      const id = match.findIndex((group, i) => i > 0 && group !== undefined) - 1;
      if (id < this.exemptFrom) return id;
    }
    return undefined;
  }
}

export class BotFilter extends Transform {
  constructor(config) {
    super();
    config.rejectUnknown(KEYS);
    this.missing = config.choiceOr("missing_user_agent", ["allow", "bot", "dead-letter"], "bot");
    this.action = config.choiceOr("action", ["route", "drop"], "route");
    this.limit = config.intOr("rate_limit", 120, 0);
    this.windowMs = config.durationMsOr("rate_window", 60_000);
    this.burst = config.intOr("burst", Math.min(this.limit, DEFAULT_BURST), 0);
    this.ttlMs = config.durationMsOr("bot_ttl", 3_600_000);
    if (this.limit === 0) throw new Error("config `rate_limit`: must be at least 1");
    if (this.burst === 0) throw new Error("config `burst`: must be at least 1");
    if (this.windowMs <= 0) throw new Error("config `rate_window`: must be longer than zero");
    if (this.ttlMs <= 0) throw new Error("config `bot_ttl`: must be longer than zero");
    this.field = config.nonEmptyOr("user_agent_field", "user_agent");
    this.routeTo = config.nonEmptyOr("route", "bots");
    this.matcher = new Matcher(config.listOr("extra_patterns"));
    this.interval = Math.max(Math.floor(this.windowMs / this.limit), 1);
    this.verdicts = new Map();
  }

  needs() {
    const idle = Math.max(this.windowMs, this.ttlMs, 1);
    return Needs.fields([this.field]).withState([RATE_STATE])
      .withTtl(RATE_STATE, idle, TtlRefresh.ON_WRITE);
  }

  verdict(userAgent) {
    if (!this.verdicts.has(userAgent)) {
      if (this.verdicts.size >= VERDICTS) this.verdicts.clear();
      this.verdicts.set(userAgent, this.matcher.find(userAgent));
    }
    return this.verdicts.get(userAgent);
  }

  /** The token bucket of the Rust `rate.rs`: one theoretical arrival time per user. */
  rateMarksBot(event, ctx) {
    const t = event.time;
    let [tat, botUntil] = ctx.state(event.key, RATE_STATE) ?? [t, null];
    tat = Math.max(tat, t) + this.interval;
    if (tat - t > this.interval * this.burst) {
      botUntil = Math.max(botUntil ?? t + this.ttlMs, t + this.ttlMs);
    }
    ctx.setState(event.key, RATE_STATE, [tat, botUntil]);
    return botUntil !== null && t < botUntil;
  }

  bot(event, reason, ctx) {
    if (this.action === "route") {
      event.set("bot_reason", reason);
      ctx.route(this.routeTo, event);
    }
  }

  process(event, ctx) {
    const userAgent = event.getString(this.field);
    if (userAgent !== undefined && userAgent.trim()) {
      const pattern = this.verdict(userAgent);
      if (pattern !== undefined) {
        ctx.counter("bots_user_agent");
        this.bot(event, `user_agent:${this.matcher.names[pattern]}`, ctx);
        return;
      }
    } else if (this.missing !== "allow") {
      ctx.counter("bots_missing_user_agent");
      if (this.missing === "dead-letter") ctx.deadLetter("missing user agent", event);
      else this.bot(event, "missing_user_agent", ctx);
      return;
    }
    if (this.rateMarksBot(event, ctx)) {
      ctx.counter("bots_rate");
      this.bot(event, "rate", ctx);
    } else {
      ctx.counter("humans");
      ctx.emit(event);
    }
  }
}
