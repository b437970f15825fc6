// What a transform uses while it handles a batch: where outputs go, JSON state (read from
// what the batch carries, cached for the call and written back with the result), timers,
// logs, metrics and geo lookups; and the loops that run a transform over a batch.

import * as abi from "./abi.js";
import { Event, toJson } from "./event.js";
import { GeoError, Level } from "./transform.js";

/** Pending changes past this many bytes go to the host at once rather than with the result. */
export const FLUSH_AT = 1 << 20;

/** A map key for bytes: one char per byte, so no two keys collide. */
function bytesKey(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 4096));
  }
  return s;
}

/** The per-call context handed to `Transform` methods. */
export class Context {
  constructor(host, batch, stateNames) {
    this.host = host;
    this.batch = batch;
    this.stateNames = stateNames;
    this.input = 0;
    this.result = new abi.BatchResult();
    /** `(key, name)` -> value as this call left it (null: deleted or absent). */
    this.seen = new Map();
    this.keyIds = undefined;
    this.counters = new Map();
  }

  output(kind, text, event) {
    const [valueKind, value] = event.outputValue();
    this.result.push(event.inputIndex ?? this.input, kind, abi.utf8(text), event.ownKey,
      event.ownTime(), valueKind, value);
  }

  /** Sends `event` on to the next stage. */
  emit(event) {
    this.output(abi.EMIT, "", event);
  }

  /** Sends `event` to the route `route`, skipping later stages. */
  route(route, event) {
    this.output(abi.ROUTE, route, event);
  }

  /** Sends `event` to the dead-letter output with `reason`. */
  deadLetter(reason, event) {
    this.output(abi.DEAD_LETTER, reason, event);
  }

  /** `[found, value]`: whether the batch carries `(key, name)`, and its value. */
  prefetched(key, name) {
    const s = this.stateNames.indexOf(name);
    if (s < 0) return [false, null];
    const b = this.batch;
    let id;
    if (abi.sameBytes(abi.segment(b.keys, b.keyEnds, this.input), key)) {
      id = b.keyIds[this.input];
    } else {
      if (!this.keyIds) {
        this.keyIds = new Map();
        for (let i = 0; i < b.times.length; i++) {
          this.keyIds.set(bytesKey(abi.segment(b.keys, b.keyEnds, i)), b.keyIds[i]);
        }
      }
      id = this.keyIds.get(bytesKey(key));
      if (id === undefined) return [false, null];
    }
    const slot = id * this.stateNames.length + s;
    return [true, b.statePresent[slot] ? abi.segment(b.state, b.stateEnds, slot) : null];
  }

  /** The raw state value `name` of `key` (bytes or null), as this call left it. */
  stateBytes(key, name) {
    key = abi.utf8(key);
    const entry = bytesKey(key) + "\uffff" + name;
    if (this.seen.has(entry)) return this.seen.get(entry);
    let [found, value] = this.prefetched(key, name);
    if (!found) {
      value = this.host.stateGet(key, name) ?? null;
      this.seen.set(entry, value);
    }
    return value;
  }

  /** The state value `name` of `key`, decoded from JSON, or `fallback`. A value that does not
   * decode (written by another plugin version) reads as absent and is logged. */
  state(key, name, fallback = undefined) {
    const raw = this.stateBytes(key, name);
    if (raw === null) return fallback;
    try {
      return JSON.parse(abi.text(raw));
    } catch (e) {
      this.log(Level.WARN, `state \`${name}\` does not decode, treating as absent: ${e.message}`);
      return fallback;
    }
  }

  /** Stores raw bytes as the state value `name` of `key`. */
  setStateBytes(key, name, value) {
    key = abi.utf8(key);
    const bytes = Uint8Array.from(abi.utf8(value));
    this.seen.set(bytesKey(key) + "\uffff" + name, bytes);
    abi.pushChange(this.result.changes, abi.PUT, key, name, bytes);
    this.flushIfLarge();
  }

  /** Stores `value` (anything JSON can hold) as the state value `name` of `key`. */
  setState(key, name, value) {
    this.setStateBytes(key, name, toJson(value));
  }

  /** Deletes the state value `name` of `key`. */
  deleteState(key, name) {
    key = abi.utf8(key);
    this.seen.set(bytesKey(key) + "\uffff" + name, null);
    abi.pushChange(this.result.changes, abi.DELETE, key, name);
    this.flushIfLarge();
  }

  /** Registers an event-time timer for `key` at `at` (ms). */
  setTimer(key, at) {
    abi.pushChange(this.result.changes, abi.SET_TIMER, abi.utf8(key), "", undefined, at);
    this.flushIfLarge();
  }

  /** Cancels the timer for `key` at `at`. */
  cancelTimer(key, at) {
    abi.pushChange(this.result.changes, abi.CANCEL_TIMER, abi.utf8(key), "", undefined, at);
    this.flushIfLarge();
  }

  flushIfLarge() {
    // What was sent stays in `seen`, so reads still see this call's writes.
    if (this.result.changes.length >= FLUSH_AT) {
      this.host.applyChanges(this.result.changes.bytes());
      this.result.changes.clear();
    }
  }

  /** The partition's watermark (ms) during this call. */
  get watermark() {
    return this.batch.watermark;
  }

  /** Logs `message` into the host's log, tagged with the stage and plugin. */
  log(level, message) {
    this.host.log(level, message);
  }

  /** Adds `delta` to the counter `name` (summed, sent once at the end of the call). */
  counter(name, delta = 1) {
    this.counters.set(name, (this.counters.get(name) ?? 0) + delta);
  }

  /** Records `value` in the histogram `name`. */
  histogram(name, value) {
    this.host.histogram(name, value);
  }

  /** Where `ip` is, or undefined when the database does not know it; throws `GeoError` when
   * the host has no database or the text is not an address. */
  geo(ip) {
    const [found] = this.geoMany([ip]);
    if (found instanceof GeoError) throw found;
    return found;
  }

  /** Looks up every address in one host call; errors come back as `GeoError` values. */
  geoMany(ips) {
    return this.host.geoLookup([...ips]);
  }

  /** Ends the call: sends the counters; the result carries the outputs and changes. */
  finish() {
    for (const [name, delta] of this.counters) this.host.counter(name, delta);
    return this.result;
  }
}

/** Runs `transform` over every record of `batch`, which carries what `needs` declared. */
export function processBatch(transform, needs, batch, host) {
  const ctx = new Context(host, batch, needs.state);
  const events = Array.from(batch.times, (_, i) => new Event(batch, needs.fields, i));
  transform.prepare(events, ctx);
  events.forEach((event, i) => {
    ctx.input = i;
    transform.process(event, ctx);
  });
  return ctx.finish();
}

/** Runs `transform`'s timer handler for every timer of `timers`, in order. */
export function fireTimers(transform, needs, timers, host) {
  const ctx = new Context(host, timers, needs.state);
  Array.from(timers.times).forEach((at, i) => {
    ctx.input = i;
    transform.onTimer(abi.segment(timers.keys, timers.keyEnds, i), at, ctx);
  });
  return ctx.finish();
}
