// Types of `weir-sdk/testing`: the transform harness for `node --test`.
import type { BytesLike, Json, Level, Location, TransformClass } from "./index.js";

/** An input record. */
export interface TestEvent {
  key: string;
  time: number;
  value: { [key: string]: Json };
  headers: { [name: string]: BytesLike };
}

/** One output as a test sees it. */
export interface TestOutput {
  /** The input's index in its call; undefined for timer outputs. */
  input: number | undefined;
  kind: "emit" | "route" | "dead-letter";
  route: string | undefined;
  deadLetterReason: string | undefined;
  /** The output value with the edits applied. */
  value: { [key: string]: Json };
  key: string;
  time: number;
}

export declare function testEvent(key: string, time: number, value: { [key: string]: Json }, headers?: { [name: string]: BytesLike }): TestEvent;

/** The in-memory host a harness runs against. */
export declare class MemoryHost {
  logs: [Level, string][];
  counters: { [name: string]: number };
  histograms: { [name: string]: number[] };
  geoCalls: number;
  watermark: number;
}

/** Runs one transform under node against a `MemoryHost`. */
export declare class TestHarness {
  constructor(transform: TransformClass, config?: { [key: string]: string } | [string, string][], options?: { geo?: (ip: string) => Location | undefined });
  readonly host: MemoryHost;
  process(events: (TestEvent | [string, number, { [key: string]: Json }])[]): TestOutput[];
  processOne(key: string, time: number, value: { [key: string]: Json }): TestOutput[];
  advanceWatermark(watermark: number): TestOutput[];
  state(key: string, name: string): Json | undefined;
  stateBytes(key: string, name: string): Uint8Array | undefined;
  timers(): [number, string][];
}
