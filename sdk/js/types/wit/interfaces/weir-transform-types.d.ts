/** @module Interface weir:transform/types@0.2.0 **/
/**
 * What a stage reads, declared once by `init`.
 */
export interface Needs {
  /**
   * Fields whose raw JSON values come with every record: top-level names, or dotted
   * paths into nested objects (`context.ip`).
   */
  fields: Array<string>,
  /**
   * State names whose values for each record's key (for `on-timers`, each timer's key)
   * come with the batch. Other state is read through `state.get`.
   */
  state: Array<string>,
  /**
   * Whether every record's whole value (the JSON object as the earlier stages left it)
   * comes with the batch.
   */
  values: boolean,
  /**
   * Whether every record's headers come with the batch.
   */
  headers: boolean,
}
/**
 * A batch of records (for `process`) or of fired timers (for `on-timers`), in columns.
 * Item `i` of a buffer with end offsets `ends` spans `buf[ends[i-1]..ends[i]]`, with
 * `ends[-1] = 0`.
 */
export interface Batch {
  /**
   * The partition's watermark (ms) during this call.
   */
  watermark: bigint,
  /**
   * Event time of each record in ms; for a timer, the time it was set for. One entry
   * per record: the batch's length.
   */
  times: BigInt64Array,
  /**
   * Every record's key, back to back.
   */
  keys: Uint8Array,
  /**
   * End offset of each key in `keys`.
   */
  keyEnds: Uint32Array,
  /**
   * For each record, the index of its key among the batch's distinct keys, numbered
   * in order of first appearance.
   */
  keyIds: Uint32Array,
  /**
   * The declared fields' raw JSON values: item `i * F + f` (F declared fields) is field
   * `f` of record `i`, empty when the record lacks it.
   */
  fields: Uint8Array,
  /**
   * End offsets of the items in `fields`.
   */
  fieldEnds: Uint32Array,
  /**
   * The declared state values as they were before the call: item `k * S + s` (S
   * declared names) is state `s` of the key with id `k`.
   */
  state: Uint8Array,
  /**
   * End offsets of the items in `state`.
   */
  stateEnds: Uint32Array,
  /**
   * Whether each state item holds a value (an empty value and none differ).
   */
  statePresent: Array<boolean>,
  /**
   * Whole values, when declared; empty otherwise.
   */
  values: Uint8Array,
  /**
   * End offsets of the items in `values`.
   */
  valueEnds: Uint32Array,
  /**
   * Headers, when declared; empty otherwise. One record's headers are a sequence of
   * `u32-le name length, name bytes, u32-le value length, value bytes`.
   */
  headers: Uint8Array,
  /**
   * End offsets of each record's headers in `headers`.
   */
  headerEnds: Uint32Array,
}
/**
 * Where an output goes.
 * # Variants
 * 
 * ## `"emit"`
 * 
 * To the next stage, or to the `main` route after the last stage.
 * ## `"route"`
 * 
 * Straight to the route named by the output's text, skipping later stages.
 * ## `"dead-letter"`
 * 
 * To the dead-letter output, with the output's text as the reason.
 */
export type OutputKind = 'emit' | 'route' | 'dead-letter';
/**
 * What an output's value is.
 * # Variants
 * 
 * ## `"unchanged"`
 * 
 * The input's value, unchanged (for timer outputs: an empty object).
 * ## `"edited"`
 * 
 * The input's value with edits applied, in order. Each edit is `u8 op` (0 sets a
 * top-level field, 1 removes it), `u32-le name length, name`, and for a set,
 * `u32-le value length, raw JSON value`.
 * ## `"replaced"`
 * 
 * A new value: a JSON object.
 */
export type ValueKind = 'unchanged' | 'edited' | 'replaced';
/**
 * One output. Its variable parts lie in `batch-result.data` from the previous output's
 * `end` (0 for the first) to its own: the route name or dead-letter reason (`text-len`
 * bytes), its own key (`key-len` bytes, when it has one), then its value (nothing when
 * unchanged, the edits, or the new object).
 */
export interface Output {
  /**
   * Index of the input record (or timer) it derives from.
   */
  input: number,
  /**
   * Where it goes.
   */
  kind: OutputKind,
  /**
   * What its value is.
   */
  value: ValueKind,
  /**
   * End offset of its parts in `data`.
   */
  end: number,
  /**
   * Length of the route name or reason (0 for `emit`).
   */
  textLen: number,
  /**
   * Length of its own key; none keeps the input's key.
   */
  keyLen?: number,
  /**
   * Its own event time (ms); none keeps the input's time.
   */
  time?: bigint,
}
/**
 * The outcome of one call.
 */
export interface BatchResult {
  /**
   * Outputs in order. An input with no output is dropped.
   */
  outputs: Array<Output>,
  /**
   * The outputs' variable parts, back to back.
   */
  data: Uint8Array,
  /**
   * State and timer changes of the call, applied in order once the call returns: each
   * is `u8 op` (0 puts state, 1 deletes state, 2 sets a timer, 3 cancels one), `u32-le
   * key length, key`, then for 0: `u32-le name length, name, u32-le value length,
   * value`; for 1: `u32-le name length, name`; for 2 and 3: `s64-le at` (ms).
   */
  changes: Uint8Array,
}
