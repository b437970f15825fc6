// The weir plugin SDK for JavaScript: extend `Transform`, and in the entry module that
// componentize-js builds, export it:
//
//   import { Needs, Transform } from "weir-sdk";
//   import { exportTransform } from "weir-sdk/guest";
//
//   class Tag extends Transform {
//     constructor(config) { super(); this.env = config.get("env") ?? "prod"; }
//     needs() { return Needs.fields([]); }
//     process(event, ctx) { event.set("env", this.env); ctx.emit(event); }
//   }
//   export const { init, process, onTimers } = exportTransform(Tag);
//
// Under the hood (`weir:transform@0.2.0`) the host hands the stage only what `needs`
// declares, an emitted event goes back as the edits made to it, and state written during a
// call goes back with the result. `weir-sdk/testing` runs the same class under `node --test`.

export { Config, parseDurationMs } from "./config.js";
export { Context } from "./context.js";
export { Event } from "./event.js";
export { GeoError, Level, Needs, Transform, TtlRefresh } from "./transform.js";
