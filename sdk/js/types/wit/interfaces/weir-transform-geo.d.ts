/** @module Interface weir:transform/geo@0.2.0 **/
/**
 * Looks up every address of `ips`, answering in order: `ok(none)` means the address is
 * not in the database; `err` means the host has no database or the text is not an
 * address.
 */
export function lookup(ips: Array<string>): Array<Result<Location | undefined, string>>;
/**
 * What the database knows about an address. Absent fields are unknown.
 */
export interface Location {
  countryIso?: string,
  countryName?: string,
  region?: string,
  city?: string,
  latitude?: number,
  longitude?: number,
}
export type Result<T, E> = { tag: 'ok', val: T } | { tag: 'err', val: E };
