// Types of the weir plugin SDK for JavaScript and TypeScript (`weir-sdk`). The contract's
// own types, generated from the WIT by `jco types`, are in `wit/`.

import type { Location as WitLocation } from "./wit/interfaces/weir-transform-geo.js";

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Bytes or text (encoded as UTF-8). */
export type BytesLike = Uint8Array | string;

/** What the geo database knows about an address; absent fields are unknown. */
export type Location = WitLocation;

/** What restarts a state entry's lifetime. */
export declare const TtlRefresh: { readonly ON_WRITE: "on-write"; readonly ON_READ_AND_WRITE: "on-read-and-write" };
export type TtlRefresh = (typeof TtlRefresh)[keyof typeof TtlRefresh];

/** Log levels. */
export declare const Level: {
  readonly TRACE: "trace"; readonly DEBUG: "debug"; readonly INFO: "info"; readonly WARN: "warn"; readonly ERROR: "error";
};
export type Level = (typeof Level)[keyof typeof Level];

/** The host has no geo database, or the text is not an address. */
export declare class GeoError extends Error {}

/** `"30m"`, `"1h 30m"` or `"500ms"` in milliseconds; throws otherwise. */
export declare function parseDurationMs(text: string): number;

/** The `config` table of a stage; getters throw an Error naming the key on a bad value. */
export declare class Config {
  constructor(pairs?: Iterable<[string, string]>);
  get(key: string): string | undefined;
  intOr(key: string, fallback: number, minimum?: number): number;
  numberOr(key: string, fallback: number): number;
  durationMsOr(key: string, fallbackMs: number): number;
  nonEmptyOr(key: string, fallback: string): string;
  boolOr(key: string, fallback: boolean): boolean;
  listOr(key: string, fallback?: string[]): string[];
  choiceOr<T extends string>(key: string, allowed: T[], fallback: T): T;
  rejectUnknown(known: string[]): void;
}

/** What a stage reads. */
export declare class Needs {
  fields: string[];
  state: string[];
  values: boolean;
  headers: boolean;
  ttls: { name: string; ttlMs: number; refresh: TtlRefresh }[];
  /** Whole values: always works, costs the most. */
  static wholeValues(): Needs;
  /** Only the raw values of `fields` (top-level names or dotted paths). */
  static fields(fields: string[]): Needs;
  /** Also the state values `names` of each event's key. */
  withState(names: string[]): this;
  /** Also each event's headers. */
  withHeaders(): this;
  /** Entries of the state `name` expire `ttlMs` of event time after the last write (or read). */
  withTtl(name: string, ttlMs: number, refresh?: TtlRefresh): this;
}

/** One event passing through a stage. */
export declare class Event {
  /** A new event holding the JSON object `value` at event time `time` (ms). */
  static create(value: { [key: string]: Json } | string, time: number): Event;
  /** The index of the input record this event is, if it is one. */
  readonly inputIndex: number | undefined;
  /** The record key. */
  readonly key: Uint8Array;
  /** The key as text. */
  readonly keyText: string;
  /** Event time in ms since the epoch. */
  readonly time: number;
  setKey(key: BytesLike): void;
  setTime(time: number): void;
  header(name: string): Uint8Array | undefined;
  /** The raw JSON at `path` (a field or a dotted path). */
  getRaw(path: string): Uint8Array | undefined;
  get(path: string): Json | undefined;
  get<T extends Json>(path: string, fallback: T): Json;
  getString(path: string): string | undefined;
  getNumber(path: string): number | undefined;
  getBool(path: string): boolean | undefined;
  has(field: string): boolean;
  setRaw(field: string, raw: BytesLike): void;
  set(field: string, value: Json): void;
  remove(field: string): void;
  copy(): Event;
}

/** The per-call context handed to `Transform` methods. */
export declare class Context {
  readonly watermark: number;
  emit(event: Event): void;
  route(route: string, event: Event): void;
  deadLetter(reason: string, event: Event): void;
  stateBytes(key: BytesLike, name: string): Uint8Array | null;
  state(key: BytesLike, name: string): Json | undefined;
  state<T extends Json>(key: BytesLike, name: string, fallback: T): Json;
  setStateBytes(key: BytesLike, name: string, value: BytesLike): void;
  setState(key: BytesLike, name: string, value: Json): void;
  deleteState(key: BytesLike, name: string): void;
  setTimer(key: BytesLike, at: number): void;
  cancelTimer(key: BytesLike, at: number): void;
  log(level: Level, message: string): void;
  counter(name: string, delta?: number): void;
  histogram(name: string, value: number): void;
  geo(ip: string): Location | undefined;
  geoMany(ips: string[]): (Location | undefined | GeoError)[];
}

/** A transform: extend it; the constructor takes the stage's `Config` and throws to reject it. */
export declare class Transform {
  constructor(config?: Config);
  needs(): Needs;
  prepare(events: Event[], ctx: Context): void;
  process(event: Event, ctx: Context): void;
  onTimer(key: Uint8Array, at: number, ctx: Context): void;
}

/** A class that builds a transform from its config. */
export type TransformClass = new (config: Config) => Transform;
