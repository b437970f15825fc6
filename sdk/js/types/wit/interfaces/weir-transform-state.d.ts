/** @module Interface weir:transform/state@0.2.0 **/
/**
 * The value stored under `name` for `key`, with the changes applied so far in this call.
 */
export function get(key: Uint8Array, name: string): Uint8Array | undefined;
/**
 * Applies state and timer changes (framed as in `batch-result.changes`) now instead of
 * with the result: an SDK calls it when a call's pending changes grow large. A change
 * past the stage's state or timer limit ends the call.
 */
export function apply(changes: Uint8Array): void;
/**
 * Called during `init`: entries stored under `name` expire `ttl-ms` of event time after
 * the last write (or read, per `refresh`) by a record of their key. Once the partition's
 * watermark passes that point, the entry is gone: reads find nothing, and the host drops
 * it from memory and checkpoints. Names not declared live until deleted, or for the
 * stage's configured `state_ttl`. Calls after `init` are ignored.
 */
export function expireAfter(name: string, ttlMs: bigint, refresh: TtlRefresh): void;
/**
 * What restarts a state entry's lifetime.
 * # Variants
 * 
 * ## `"on-write"`
 * 
 * Writing it.
 * ## `"on-read-and-write"`
 * 
 * Writing it or reading it.
 */
export type TtlRefresh = 'on-write' | 'on-read-and-write';
