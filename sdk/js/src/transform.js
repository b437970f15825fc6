// What a transform declares and implements: `Needs`, the `Transform` base class, log levels,
// state lifetimes and geo answers.

/** What restarts a state entry's lifetime. */
export const TtlRefresh = Object.freeze({ ON_WRITE: "on-write", ON_READ_AND_WRITE: "on-read-and-write" });

/** Log levels, as the host's `log` interface names them. */
export const Level = Object.freeze({
  TRACE: "trace", DEBUG: "debug", INFO: "info", WARN: "warn", ERROR: "error",
});

/** The host has no geo database, or the text is not an address. */
export class GeoError extends Error {}

/** What a stage reads: the fields (top-level names or dotted paths) of each event, the state
 * values of each event's key that come with the batch, whether whole values and headers come
 * too, and the lifetimes of state names. */
export class Needs {
  constructor({ fields = [], state = [], values = false, headers = false } = {}) {
    this.fields = [...fields];
    this.state = [...state];
    this.values = values;
    this.headers = headers;
    this.ttls = [];
  }

  /** Whole values: always works, costs the most. */
  static wholeValues() {
    return new Needs({ values: true });
  }

  /** Only the raw values of `fields`: a few bytes per event instead of the whole event. */
  static fields(fields) {
    return new Needs({ fields });
  }

  /** Also the state values `names` of each event's key, so reading them costs no host call. */
  withState(names) {
    this.state = [...names];
    return this;
  }

  /** Also each event's headers. */
  withHeaders() {
    this.headers = true;
    return this;
  }

  /** Entries of the state `name` expire `ttlMs` of event time after they were last written
   * (or also read, per `refresh`). */
  withTtl(name, ttlMs, refresh = TtlRefresh.ON_WRITE) {
    this.ttls = this.ttls.filter((t) => t.name !== name);
    this.ttls.push({ name, ttlMs: Math.max(1, Math.floor(ttlMs)), refresh });
    return this;
  }
}

/** A transform: the business logic of one pipeline stage. Extend it; the constructor takes
 * the stage's `Config` and throws to reject it. */
export class Transform {
  /** What the transform reads, asked once after the constructor. The default, whole values,
   * always works; naming the fields (and the state read per key) is much cheaper. */
  needs() {
    return Needs.wholeValues();
  }

  /** Called once per batch before `process` runs on its events: the place for one host call
   * for the whole batch (geo lookups, say). The events are the ones `process` gets next. */
  prepare(events, ctx) {}

  /** Handles one event: call `ctx.emit`, `ctx.route` or `ctx.deadLetter` for each output;
   * an event with no output is dropped. */
  process(event, ctx) {
    throw new Error("a Transform must implement process(event, ctx)");
  }

  /** Handles a timer set for `key` (bytes) that fired at `at` (ms). */
  onTimer(key, at, ctx) {}
}
