/** @module Interface weir:transform/metrics@0.2.0 **/
/**
 * Adds `delta` to the counter `name`.
 */
export function counter(name: string, delta: bigint): void;
/**
 * Records `value` in the histogram `name`.
 */
export function histogram(name: string, value: number): void;
