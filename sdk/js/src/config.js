// A stage's configuration as the plugin receives it: string pairs from the pipeline config,
// with typed getters whose errors name the key (the same rules and messages as the Rust SDK).

const UNITS_MS = {
  ns: 1e-6, nsec: 1e-6, us: 1e-3, usec: 1e-3, ms: 1, msec: 1,
  s: 1e3, sec: 1e3, secs: 1e3, second: 1e3, seconds: 1e3,
  m: 6e4, min: 6e4, mins: 6e4, minute: 6e4, minutes: 6e4,
  h: 36e5, hr: 36e5, hrs: 36e5, hour: 36e5, hours: 36e5,
  d: 864e5, day: 864e5, days: 864e5, w: 6048e5, week: 6048e5, weeks: 6048e5,
};

/** `"30m"`, `"1h 30m"` or `"500ms"` in milliseconds; throws otherwise. */
export function parseDurationMs(raw) {
  const text = raw.trim();
  const part = /\s*(\d+)\s*([A-Za-z]+)/y;
  let total = 0;
  let parts = 0;
  while (part.lastIndex < text.length) {
    const at = part.lastIndex;
    const m = part.exec(text);
    if (!m || !Object.hasOwn(UNITS_MS, m[2])) {
      throw new Error(`expected a number and a unit at ${JSON.stringify(text.slice(at))}`);
    }
    total += Number(m[1]) * UNITS_MS[m[2]];
    parts++;
  }
  if (!parts) throw new Error("value was empty");
  return Math.floor(total);
}

/** The `config` table of a stage. Getters return the value or a default and throw an Error
 * naming the key when a value does not parse. */
export class Config {
  /** @param {Iterable<[string, string]>} pairs */
  constructor(pairs = []) {
    this.pairs = Array.from(pairs, ([k, v]) => [String(k), String(v)]);
  }

  /** The raw value of `key` (the last one given). */
  get(key) {
    for (let i = this.pairs.length - 1; i >= 0; i--) {
      if (this.pairs[i][0] === key) return this.pairs[i][1];
    }
    return undefined;
  }

  /** `key` as an integer at least `minimum`, or `fallback` when absent. */
  intOr(key, fallback, minimum = -Infinity) {
    const raw = this.get(key);
    if (raw === undefined) return fallback;
    if (!/^[+-]?\d+$/.test(raw.trim())) {
      throw new Error(`config \`${key}\`: cannot parse ${JSON.stringify(raw)}: not an integer`);
    }
    const value = Number(raw.trim());
    if (value < minimum) {
      throw new Error(`config \`${key}\`: cannot parse ${JSON.stringify(raw)}: below ${minimum}`);
    }
    return value;
  }

  /** `key` as a number, or `fallback` when absent. */
  numberOr(key, fallback) {
    const raw = this.get(key);
    if (raw === undefined) return fallback;
    const value = Number(raw.trim());
    if (raw.trim() === "" || Number.isNaN(value)) {
      throw new Error(`config \`${key}\`: cannot parse ${JSON.stringify(raw)}: not a number`);
    }
    return value;
  }

  /** `key` as a duration (`"30m"`, `"1h 30m"`, `"500ms"`) in ms, or `fallbackMs`. */
  durationMsOr(key, fallbackMs) {
    const raw = this.get(key);
    if (raw === undefined) return fallbackMs;
    try {
      return parseDurationMs(raw);
    } catch (e) {
      throw new Error(`config \`${key}\`: cannot parse duration ${JSON.stringify(raw)}: ${e.message}`);
    }
  }

  /** `key` trimmed, or `fallback`; a value that is empty after trimming is refused. */
  nonEmptyOr(key, fallback) {
    const value = (this.get(key) ?? fallback).trim();
    if (!value) throw new Error(`config \`${key}\`: must not be empty`);
    return value;
  }

  /** `key` as `true` or `false` (any case), or `fallback`. */
  boolOr(key, fallback) {
    const raw = this.get(key);
    if (raw === undefined) return fallback;
    const value = raw.trim().toLowerCase();
    if (value === "true" || value === "false") return value === "true";
    throw new Error(`config \`${key}\`: ${JSON.stringify(raw)} is not true or false`);
  }

  /** `key` as a comma-separated list of trimmed, non-empty items, or `fallback`. */
  listOr(key, fallback = []) {
    const raw = this.get(key);
    if (raw === undefined) return [...fallback];
    return raw.split(",").map((s) => s.trim()).filter((s) => s);
  }

  /** `key` as one of `allowed` (any case), or `fallback`. */
  choiceOr(key, allowed, fallback) {
    const raw = this.get(key);
    if (raw === undefined) return fallback;
    const found = allowed.find((a) => a.toLowerCase() === raw.trim().toLowerCase());
    if (found === undefined) {
      throw new Error(`config \`${key}\`: ${JSON.stringify(raw)} is not one of ${allowed.join(", ")}`);
    }
    return found;
  }

  /** Refuses every key not in `known`, so a typo fails at init. */
  rejectUnknown(known) {
    const unknown = this.pairs.map(([k]) => k).filter((k) => !known.includes(k));
    if (unknown.length) {
      throw new Error(`unknown config key(s): ${unknown.join(", ")} (known: ${known.join(", ")})`);
    }
  }
}
