// world weir:transform/transform@0.2.0
export type Needs = import('./interfaces/weir-transform-types.js').Needs;
export type Batch = import('./interfaces/weir-transform-types.js').Batch;
export type BatchResult = import('./interfaces/weir-transform-types.js').BatchResult;
export type * as WeirTransformGeo020 from './interfaces/weir-transform-geo.js'; // import weir:transform/geo@0.2.0
export type * as WeirTransformLog020 from './interfaces/weir-transform-log.js'; // import weir:transform/log@0.2.0
export type * as WeirTransformMetrics020 from './interfaces/weir-transform-metrics.js'; // import weir:transform/metrics@0.2.0
export type * as WeirTransformState020 from './interfaces/weir-transform-state.js'; // import weir:transform/state@0.2.0
export type * as WeirTransformTypes020 from './interfaces/weir-transform-types.js'; // import weir:transform/types@0.2.0
/**
* Called once per instance before any batch, with the stage's `config` table; says what
* the stage reads. An error rejects the plugin.
*/
export function init(config: Array<[string, string]>): Needs;
/**
* Transforms a batch of records.
*/
export function process(batch: Batch): BatchResult;
/**
* Handles a batch of timers that fired (the watermark passed them), earliest first.
*/
export function onTimers(timers: Batch): BatchResult;
