// The framing of `weir:transform@0.2.0` (see `wit/transform.wit`): a batch's columns, an
// output's edits, a call's state and timer changes, and a record's headers.

/** What an output is (`output-kind`) and what its value is (`value-kind`), as jco names them. */
export const EMIT = "emit";
export const ROUTE = "route";
export const DEAD_LETTER = "dead-letter";
export const UNCHANGED = "unchanged";
export const EDITED = "edited";
export const REPLACED = "replaced";

/** Edit and change operations. */
export const SET = 0;
export const REMOVE = 1;
export const PUT = 0;
export const DELETE = 1;
export const SET_TIMER = 2;
export const CANCEL_TIMER = 3;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** UTF-8 bytes of a string (bytes pass through). */
export function utf8(text) {
  return typeof text === "string" ? encoder.encode(text) : text;
}

/** A string from UTF-8 bytes (invalid sequences replaced). */
export function text(bytes) {
  return decoder.decode(bytes);
}

/** Item `i` of `buf`, whose items end at `ends`. */
export function segment(buf, ends, i) {
  return buf.subarray(i ? ends[i - 1] : 0, ends[i]);
}

/** Whether two byte arrays hold the same bytes. */
export function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A growable byte buffer. */
export class Bytes {
  constructor() {
    this.buf = new Uint8Array(256);
    this.length = 0;
  }

  reserve(extra) {
    if (this.length + extra <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.length + extra));
    grown.set(this.buf.subarray(0, this.length));
    this.buf = grown;
  }

  push(bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }

  byte(b) {
    this.reserve(1);
    this.buf[this.length++] = b;
  }

  u32(n) {
    this.reserve(4);
    new DataView(this.buf.buffer).setUint32(this.length, n, true);
    this.length += 4;
  }

  i64(n) {
    this.reserve(8);
    new DataView(this.buf.buffer).setBigInt64(this.length, BigInt(n), true);
    this.length += 8;
  }

  /** `bytes` with its u32-le length in front. */
  frame(bytes) {
    const b = utf8(bytes);
    this.u32(b.length);
    this.push(b);
  }

  bytes() {
    return this.buf.slice(0, this.length);
  }

  clear() {
    this.length = 0;
  }
}

/** Reads frames of a buffer in order. */
class Reader {
  constructor(buf) {
    this.buf = buf;
    this.at = 0;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  more() {
    return this.at < this.buf.length;
  }

  byte() {
    return this.buf[this.at++];
  }

  frame() {
    if (this.at + 4 > this.buf.length) throw new Error("a frame runs past the end of its buffer");
    const len = this.view.getUint32(this.at, true);
    const start = this.at + 4;
    if (start + len > this.buf.length) throw new Error("a frame runs past the end of its buffer");
    this.at = start + len;
    return this.buf.subarray(start, start + len);
  }

  i64() {
    const n = this.view.getBigInt64(this.at, true);
    this.at += 8;
    return Number(n);
  }
}

/** Appends an edit setting the top-level field `name` to the raw JSON `raw`. */
export function pushSet(buf, name, raw) {
  buf.byte(SET);
  buf.frame(name);
  buf.frame(raw);
}

/** Appends an edit removing the top-level field `name`. */
export function pushRemove(buf, name) {
  buf.byte(REMOVE);
  buf.frame(name);
}

/** Each edit of `buf` as `[name, raw JSON bytes]`, with `null` for a removal. */
export function* edits(buf) {
  const r = new Reader(buf);
  while (r.more()) {
    const op = r.byte();
    const name = text(r.frame());
    if (op === SET) yield [name, r.frame()];
    else if (op === REMOVE) yield [name, null];
    else throw new Error(`unknown edit op ${op}`);
  }
}

/** Appends one state or timer change. */
export function pushChange(buf, op, key, name = "", value = new Uint8Array(), at = 0) {
  buf.byte(op);
  buf.frame(key);
  if (op === PUT || op === DELETE) {
    buf.frame(name);
    if (op === PUT) buf.frame(value);
  } else {
    buf.i64(at);
  }
}

/** Each change of `buf` as `{op, key, name, value, at}`. */
export function* changes(buf) {
  const r = new Reader(buf);
  while (r.more()) {
    const op = r.byte();
    const key = r.frame();
    const change = { op, key, name: "", value: null, at: 0 };
    if (op === PUT || op === DELETE) {
      change.name = text(r.frame());
      if (op === PUT) change.value = r.frame();
    } else if (op === SET_TIMER || op === CANCEL_TIMER) {
      change.at = r.i64();
    } else {
      throw new Error(`unknown change op ${op}`);
    }
    yield change;
  }
}

/** Appends one header to a record's framed headers. */
export function pushHeader(buf, name, value) {
  buf.frame(name);
  buf.frame(value);
}

/** Each header of a record's framed headers as `[name, value bytes]`. */
export function* headers(buf) {
  const r = new Reader(buf);
  while (r.more()) yield [text(r.frame()), r.frame()];
}

/** The outcome of one call: outputs, their variable parts, and state and timer changes. */
export class BatchResult {
  constructor() {
    this.outputs = [];
    this.data = new Bytes();
    this.changes = new Bytes();
  }

  /** Appends an output: its text, own key and value go into `data`. */
  push(input, kind, textBytes, key, time, valueKind, value) {
    this.data.push(textBytes);
    if (key !== undefined) this.data.push(key);
    this.data.push(value);
    this.outputs.push({
      input,
      kind,
      value: valueKind,
      end: this.data.length,
      textLen: textBytes.length,
      keyLen: key === undefined ? undefined : key.length,
      time: time === undefined ? undefined : BigInt(time),
    });
  }

  /** Output `i`'s text, own key (or undefined) and value bytes. */
  parts(i) {
    const out = this.outputs[i];
    const data = this.data.buf;
    const start = i ? this.outputs[i - 1].end : 0;
    const textEnd = start + out.textLen;
    const keyEnd = textEnd + (out.keyLen ?? 0);
    return {
      text: text(data.subarray(start, textEnd)),
      key: out.keyLen === undefined ? undefined : data.slice(textEnd, keyEnd),
      value: data.subarray(keyEnd, out.end),
    };
  }
}
