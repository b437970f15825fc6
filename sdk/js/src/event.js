// An event as a transform sees it: the fields it declared (or its whole value), key, event
// time and headers; changed by edits the host applies, so an event is never copied whole
// into the sandbox and back.

import * as abi from "./abi.js";

const MISSING = Symbol("missing");

/** `value` as compact JSON bytes. */
export function toJson(value) {
  return abi.utf8(JSON.stringify(value === undefined ? null : value));
}

/** The value at the dotted `path` inside parsed JSON, or `MISSING`. */
export function find(value, path) {
  for (const part of path.split(".")) {
    if (value === null || typeof value !== "object" || Array.isArray(value) || !Object.hasOwn(value, part)) {
      return MISSING;
    }
    value = value[part];
  }
  return value;
}

/** The raw JSON at `path` inside the JSON bytes `raw`, or undefined. */
export function findRaw(raw, path) {
  let parsed;
  try {
    parsed = JSON.parse(abi.text(raw));
  } catch {
    return undefined;
  }
  const found = find(parsed, path);
  return found === MISSING ? undefined : toJson(found);
}

export { MISSING };

/** One event passing through a stage: an input record (with the edits made to it) or a new
 * JSON object made with `Event.create`. */
export class Event {
  constructor(batch = null, names = [], index = -1) {
    this.batch = batch;
    this.names = names;
    this.index = index;
    this.edits = new abi.Bytes();
    this.value = undefined;
    this.ownKey = undefined;
    this.eventTime = batch ? batch.times[index] : 0;
    this.timeSet = false;
  }

  /** A new event holding the JSON object `value` (an object or JSON text) at event time
   * `time` (ms). Its key is the input's unless `setKey` gives it one. */
  static create(value, time) {
    const event = new Event();
    event.value = typeof value === "string" ? JSON.parse(value) : structuredClone(value);
    event.eventTime = time;
    event.timeSet = true;
    return event;
  }

  /** The index of the input record this event is, if it is one. */
  get inputIndex() {
    return this.batch ? this.index : undefined;
  }

  /** The record key (bytes): the entity key, usually the user id. */
  get key() {
    if (this.ownKey !== undefined) return this.ownKey;
    if (!this.batch) return new Uint8Array();
    return abi.segment(this.batch.keys, this.batch.keyEnds, this.index);
  }

  /** The key as text. */
  get keyText() {
    return abi.text(this.key);
  }

  /** Gives the event its own key (outputs keep their input's otherwise). */
  setKey(key) {
    this.ownKey = abi.utf8(key);
  }

  /** Event time in ms since the epoch. */
  get time() {
    return this.eventTime;
  }

  /** Gives the event its own event time (ms); the host partitions and watermarks by it. */
  setTime(time) {
    this.eventTime = time;
    this.timeSet = true;
  }

  /** The first header called `name` (bytes), when the stage declared headers. */
  header(name) {
    if (!this.batch || !this.batch.headerEnds.length) return undefined;
    const framed = abi.segment(this.batch.headers, this.batch.headerEnds, this.index);
    for (const [n, v] of abi.headers(framed)) if (n === name) return v;
    return undefined;
  }

  inputRaw(path) {
    const { batch, names } = this;
    const f = names.indexOf(path);
    if (f >= 0) {
      const raw = abi.segment(batch.fields, batch.fieldEnds, this.index * names.length + f);
      if (raw.length) return raw;
    }
    if (batch.valueEnds.length) {
      return findRaw(abi.segment(batch.values, batch.valueEnds, this.index), path);
    }
    const dot = path.indexOf(".");
    if (dot < 0) return undefined;
    const outer = this.inputRaw(path.slice(0, dot));
    return outer === undefined ? undefined : findRaw(outer, path.slice(dot + 1));
  }

  /** The raw JSON bytes at `path` (a field name or a dotted path into nested objects), as the
   * event is now: this stage's edits first, then the input. */
  getRaw(path) {
    if (this.value !== undefined) {
      const found = find(this.value, path);
      return found === MISSING ? undefined : toJson(found);
    }
    if (this.edits.length) {
      const dot = path.indexOf(".");
      const head = dot < 0 ? undefined : path.slice(0, dot);
      let edited = MISSING;
      for (const [name, raw] of abi.edits(this.edits.bytes())) {
        if (name === path) edited = raw ?? undefined;
        else if (name === head) edited = raw ? findRaw(raw, path.slice(dot + 1)) : undefined;
      }
      if (edited !== MISSING) return edited;
    }
    return this.inputRaw(path);
  }

  /** The JSON value at `path`, parsed, or `fallback` when the event has none. */
  get(path, fallback = undefined) {
    const raw = this.getRaw(path);
    return raw === undefined ? fallback : JSON.parse(abi.text(raw));
  }

  /** The string at `path` (undefined when absent or not a string). */
  getString(path) {
    const v = this.get(path);
    return typeof v === "string" ? v : undefined;
  }

  /** The number at `path`. */
  getNumber(path) {
    const v = this.get(path);
    return typeof v === "number" ? v : undefined;
  }

  /** The boolean at `path`. */
  getBool(path) {
    const v = this.get(path);
    return typeof v === "boolean" ? v : undefined;
  }

  /** Whether the field exists (even if `null`). */
  has(field) {
    return this.getRaw(field) !== undefined;
  }

  /** Sets a top-level field to raw JSON (text or bytes), which must be valid. */
  setRaw(field, raw) {
    if (this.value !== undefined) this.value[field] = JSON.parse(typeof raw === "string" ? raw : abi.text(raw));
    else abi.pushSet(this.edits, field, abi.utf8(raw));
  }

  /** Sets a top-level field to any JSON-serializable value. */
  set(field, value) {
    if (this.value !== undefined) this.value[field] = value;
    else abi.pushSet(this.edits, field, toJson(value));
  }

  /** Removes a top-level field. */
  remove(field) {
    if (this.value !== undefined) delete this.value[field];
    else abi.pushRemove(this.edits, field);
  }

  /** An independent copy (edits to one do not show in the other). */
  copy() {
    const event = new Event(this.batch, this.names, this.index);
    event.edits.push(this.edits.bytes());
    event.value = this.value === undefined ? undefined : structuredClone(this.value);
    Object.assign(event, { ownKey: this.ownKey, eventTime: this.eventTime, timeSet: this.timeSet });
    return event;
  }

  /** What `Context` writes for this event: `[value kind, bytes]`. */
  outputValue() {
    if (this.value !== undefined) return [abi.REPLACED, toJson(this.value)];
    if (this.edits.length) return [abi.EDITED, this.edits.bytes()];
    return [abi.UNCHANGED, new Uint8Array()];
  }

  /** The event time, if it was set rather than taken from the input. */
  ownTime() {
    return this.timeSet ? this.eventTime : undefined;
  }
}
