// The component's side of the contract: `exportTransform(MyTransform)` gives the `init`,
// `process` and `onTimers` exports that componentize-js builds into a
// `weir:transform@0.2.0` component. Only usable inside the component, where the
// `weir:transform/*` imports exist.

import { apply, expireAfter, get } from "weir:transform/state@0.2.0";
import { log } from "weir:transform/log@0.2.0";
import { counter, histogram } from "weir:transform/metrics@0.2.0";
import { lookup } from "weir:transform/geo@0.2.0";

import { Config } from "./config.js";
import { fireTimers, processBatch } from "./context.js";
import { GeoError } from "./transform.js";

/** The host's capabilities through the component's imports. */
const host = {
  stateGet: (key, name) => get(key, name),
  applyChanges: (changes) => apply(changes),
  log: (level, message) => log(level, message),
  counter: (name, delta) => counter(name, BigInt(delta)),
  histogram: (name, value) => histogram(name, value),
  geoLookup: (ips) =>
    lookup(ips).map((answer) => (answer.tag === "ok" ? answer.val : new GeoError(answer.val))),
};

/** The batch with its times as numbers (ms fits a double exactly until the year 287,396). */
function withNumberTimes(batch) {
  return { ...batch, watermark: Number(batch.watermark), times: Array.from(batch.times, Number) };
}

function toWit(result) {
  return { outputs: result.outputs, data: result.data.bytes(), changes: result.changes.bytes() };
}

/** The component's exports for a component running `TransformClass`. */
export function exportTransform(TransformClass) {
  let transform;
  let needs;
  return {
    init(pairs) {
      try {
        transform = new TransformClass(new Config(pairs));
        needs = transform.needs();
      } catch (e) {
        // Thrown, the message becomes the `err` of `init`: the host rejects the plugin with it.
        throw String(e?.message ?? e);
      }
      for (const { name, ttlMs, refresh } of needs.ttls) expireAfter(name, BigInt(ttlMs), refresh);
      return { fields: needs.fields, state: needs.state, values: needs.values, headers: needs.headers };
    },
    process(batch) {
      return toWit(processBatch(transform, needs, withNumberTimes(batch), host));
    },
    onTimers(timers) {
      return toWit(fireTimers(transform, needs, withNumberTimes(timers), host));
    },
  };
}
