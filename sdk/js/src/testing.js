// Runs a transform under node, without Wasm, against an in-memory host that behaves like the
// real one: declared fields and state come with each batch, edits are applied to make the
// outputs, state and timer changes are applied after each call, state lifetimes end with the
// watermark, and timers fire as it passes them.
//
//   const h = new TestHarness(MyTransform, { rate_limit: "3" });
//   const [out] = h.processOne("u1", 1000, { user_agent: "curl/8" });
//   assert.equal(out.route, "bots");

import * as abi from "./abi.js";
import { Config } from "./config.js";
import { fireTimers, processBatch } from "./context.js";
import { MISSING, find, toJson } from "./event.js";
import { GeoError, TtlRefresh } from "./transform.js";

const entryOf = (key, name) => `${abi.text(key)}\uffff${name}`;

/** Orders timers as the host does: by time, then key bytes. */
function byTimeThenKey([atA, keyA], [atB, keyB]) {
  if (atA !== atB) return atA - atB;
  for (let i = 0; i < Math.min(keyA.length, keyB.length); i++) {
    if (keyA[i] !== keyB[i]) return keyA[i] - keyB[i];
  }
  return keyA.length - keyB.length;
}

/** In-memory host capabilities, like the host's own per-partition state. */
export class MemoryHost {
  constructor(geo) {
    /** entry -> {key, name, value, touched} */
    this.state = new Map();
    this.ttls = new Map();
    /** `${at}\uffff${key}` -> [at, key bytes] */
    this.timers = new Map();
    this.watermark = Number.MIN_SAFE_INTEGER;
    this.logs = [];
    this.counters = {};
    this.histograms = {};
    this.geoCalls = 0;
    this.geo = geo;
    this.touch = new Map();
  }

  stateGet(key, name) {
    const entry = this.state.get(entryOf(key, name));
    if (!entry) return undefined;
    const ttl = this.ttls.get(name);
    const touch = this.touch.get(abi.text(key));
    if (ttl?.refresh === TtlRefresh.ON_READ_AND_WRITE && touch !== undefined) {
      entry.touched = Math.max(entry.touched, touch);
    }
    return entry.value;
  }

  applyChanges(changes) {
    for (const { op, key, name, value, at } of abi.changes(changes)) {
      if (op === abi.PUT) {
        const touch = this.touch.get(abi.text(key)) ?? this.watermark;
        const old = this.state.get(entryOf(key, name));
        const touched = old ? Math.max(old.touched, touch) : touch;
        this.state.set(entryOf(key, name), { key, name, value: value.slice(), touched });
      } else if (op === abi.DELETE) {
        this.state.delete(entryOf(key, name));
      } else if (op === abi.SET_TIMER) {
        this.timers.set(`${at}\uffff${abi.text(key)}`, [at, key.slice()]);
      } else {
        this.timers.delete(`${at}\uffff${abi.text(key)}`);
      }
    }
  }

  log(level, message) {
    this.logs.push([level, message]);
  }

  counter(name, delta) {
    this.counters[name] = (this.counters[name] ?? 0) + Number(delta);
  }

  histogram(name, value) {
    (this.histograms[name] ??= []).push(value);
  }

  geoLookup(ips) {
    this.geoCalls++;
    return ips.map((ip) => {
      if (!this.geo) return new GeoError("no geo database configured");
      try {
        return this.geo(ip);
      } catch (e) {
        if (e instanceof GeoError) return e;
        throw e;
      }
    });
  }

  /** Drops the entries whose lifetime ended by the watermark, as the host does. */
  expire() {
    for (const [entry, { name, touched }] of this.state) {
      const ttl = this.ttls.get(name);
      if (ttl && touched + ttl.ttlMs <= this.watermark) this.state.delete(entry);
    }
  }

  /** Notes when the batch's records touch their keys; fills in the key ids and the declared
   * state of each distinct key. */
  prefetch(batch, names) {
    this.touch.clear();
    const ids = new Map();
    const order = [];
    batch.keyIds = batch.times.map((time, i) => {
      const key = abi.segment(batch.keys, batch.keyEnds, i);
      const text = abi.text(key);
      this.touch.set(text, Math.max(this.touch.get(text) ?? time, time));
      if (!ids.has(text)) {
        ids.set(text, ids.size);
        order.push(key);
      }
      return ids.get(text);
    });
    const state = new abi.Bytes();
    batch.stateEnds = [];
    batch.statePresent = [];
    for (const key of order) {
      for (const name of names) {
        const value = this.stateGet(key, name);
        batch.statePresent.push(value !== undefined);
        if (value !== undefined) state.push(value);
        batch.stateEnds.push(state.length);
      }
    }
    batch.state = state.bytes();
  }
}

/** An input record: key, event time (ms), JSON value and headers (name -> bytes or text). */
export function testEvent(key, time, value, headers = {}) {
  return { key, time, value, headers };
}

function emptyBatch(watermark) {
  const none = new Uint8Array();
  return {
    watermark, times: [], keys: none, keyEnds: [], keyIds: [], fields: none, fieldEnds: [],
    state: none, stateEnds: [], statePresent: [], values: none, valueEnds: [], headers: none,
    headerEnds: [],
  };
}

/** Runs one transform under node against a `MemoryHost`. Outputs are
 * `{input, kind, route, deadLetterReason, value, key, time}` with `kind` one of `emit`,
 * `route` and `dead-letter`, `value` with the edits applied, and `input` the input's index
 * in its call (undefined for timer outputs). */
export class TestHarness {
  constructor(TransformClass, config = {}, { geo } = {}) {
    const pairs = Array.isArray(config) ? config : Object.entries(config);
    this.transform = new TransformClass(new Config(pairs));
    this.needs = this.transform.needs();
    this.host = new MemoryHost(geo);
    for (const t of this.needs.ttls) this.host.ttls.set(t.name, t);
  }

  /** Runs one batch of `testEvent`s (or `[key, time, value]` arrays). The watermark does not
   * move; call `advanceWatermark`. */
  process(events) {
    events = events.map((e) => (Array.isArray(e) ? testEvent(...e) : e));
    const batch = emptyBatch(this.host.watermark);
    const [keys, fields, values, headers] = [1, 2, 3, 4].map(() => new abi.Bytes());
    for (const e of events) {
      keys.push(abi.utf8(e.key));
      batch.keyEnds.push(keys.length);
      batch.times.push(e.time);
      for (const name of this.needs.fields) {
        const found = find(e.value, name);
        if (found !== MISSING) fields.push(toJson(found));
        batch.fieldEnds.push(fields.length);
      }
      if (this.needs.values) {
        values.push(toJson(e.value));
        batch.valueEnds.push(values.length);
      }
      if (this.needs.headers) {
        for (const [name, value] of Object.entries(e.headers)) {
          abi.pushHeader(headers, name, abi.utf8(value));
        }
        batch.headerEnds.push(headers.length);
      }
    }
    Object.assign(batch, {
      keys: keys.bytes(), fields: fields.bytes(), values: values.bytes(), headers: headers.bytes(),
    });
    this.host.prefetch(batch, this.needs.state);
    const result = processBatch(this.transform, this.needs, batch, this.host);
    this.host.applyChanges(result.changes.bytes());
    return decode(result, events.map((e) => [e.value, e.key, e.time]), true);
  }

  /** Runs one batch holding a single event. */
  processOne(key, time, value) {
    return this.process([testEvent(key, time, value)]);
  }

  /** Moves the watermark (never backwards), drops the state whose lifetime ended, and fires
   * every timer at or below it, earliest first, in batches as the host does. */
  advanceWatermark(watermark) {
    this.host.watermark = Math.max(this.host.watermark, watermark);
    this.host.expire();
    const outputs = [];
    for (;;) {
      const due = [...this.host.timers.entries()]
        .filter(([, [at]]) => at <= this.host.watermark)
        .sort(([, a], [, b]) => byTimeThenKey(a, b));
      if (!due.length) return outputs;
      const batch = emptyBatch(this.host.watermark);
      const keys = new abi.Bytes();
      for (const [id, [at, key]] of due) {
        this.host.timers.delete(id);
        keys.push(key);
        batch.keyEnds.push(keys.length);
        batch.times.push(at);
      }
      batch.keys = keys.bytes();
      this.host.prefetch(batch, this.needs.state);
      const result = fireTimers(this.transform, this.needs, batch, this.host);
      this.host.applyChanges(result.changes.bytes());
      const inputs = due.map(([, [at, key]]) => [{}, abi.text(key), at]);
      outputs.push(...decode(result, inputs, false));
    }
  }

  /** The state value `name` of `key`, decoded from JSON (undefined when absent). */
  state(key, name) {
    const raw = this.stateBytes(key, name);
    return raw === undefined ? undefined : JSON.parse(abi.text(raw));
  }

  /** The raw state value `name` of `key`. */
  stateBytes(key, name) {
    return this.host.state.get(entryOf(abi.utf8(key), name))?.value;
  }

  /** Pending timers as `[at, key]`, earliest first. */
  timers() {
    return [...this.host.timers.values()].sort(byTimeThenKey).map(([at, key]) => [at, abi.text(key)]);
  }
}

function decode(result, inputs, fromInputs) {
  return result.outputs.map((out, i) => {
    const parts = result.parts(i);
    let [value, key, time] = inputs[out.input];
    if (out.value === abi.REPLACED) {
      value = JSON.parse(abi.text(parts.value));
    } else if (out.value === abi.EDITED) {
      value = structuredClone(value);
      for (const [name, raw] of abi.edits(parts.value)) {
        if (raw === null) delete value[name];
        else value[name] = JSON.parse(abi.text(raw));
      }
    }
    return {
      input: fromInputs ? out.input : undefined,
      kind: out.kind,
      route: out.kind === abi.ROUTE ? parts.text : undefined,
      deadLetterReason: out.kind === abi.DEAD_LETTER ? parts.text : undefined,
      value,
      key: parts.key === undefined ? key : abi.text(parts.key),
      time: out.time === undefined ? time : Number(out.time),
    };
  });
}
