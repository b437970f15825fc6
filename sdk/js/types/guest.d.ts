// Types of `weir-sdk/guest`: the component's exports for a transform.
import type { Batch, BatchResult, Needs } from "./wit/interfaces/weir-transform-types.js";
import type { TransformClass } from "./index.js";

/** The `init`, `process` and `onTimers` exports of a component running `transform`. */
export declare function exportTransform(transform: TransformClass): {
  init(config: Array<[string, string]>): Needs;
  process(batch: Batch): BatchResult;
  onTimers(timers: Batch): BatchResult;
};
