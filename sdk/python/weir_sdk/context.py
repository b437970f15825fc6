"""What a transform uses while it handles a batch: where outputs go, JSON state (read from
what the batch carries, cached for the call and written back with the result), timers, logs,
metrics and geo lookups; and the loops that run a transform over a batch."""

from __future__ import annotations

import json
from typing import Any, List, Optional, Union

from . import abi
from .event import Event, _as_bytes, to_json
from .transform import GeoError, Host, Level, Location, Needs, Transform

# Pending changes past this many bytes go to the host at once rather than with the result.
FLUSH_AT = 1 << 20


class Context:
    """The per-call context handed to `Transform` methods."""

    def __init__(self, host: Host, batch: Any, state_names: List[str]):
        self._host, self._batch, self._state_names = host, batch, state_names
        self._input = 0
        self.result = abi.BatchResult()
        # (key, name) -> value as this call left it (None: deleted or absent).
        self._seen: dict = {}
        self._key_ids: Optional[dict] = None
        self._counters: dict = {}

    def _output(self, kind: int, text: str, event: Event) -> None:
        index = event.input_index
        value_kind, value = event.output_value()
        self.result.push(self._input if index is None else index, kind, text.encode(),
                         event.own_key(), event.own_time(), value_kind, value)

    def emit(self, event: Event) -> None:
        """Sends `event` on to the next stage."""
        self._output(abi.EMIT, "", event)

    def route(self, route: str, event: Event) -> None:
        """Sends `event` to the route `route`, skipping later stages."""
        self._output(abi.ROUTE, route, event)

    def dead_letter(self, reason: str, event: Event) -> None:
        """Sends `event` to the dead-letter output with `reason`."""
        self._output(abi.DEAD_LETTER, reason, event)

    def _prefetched(self, key: bytes, name: str) -> tuple:
        """Whether the batch carries `(key, name)`, and its value."""
        if name not in self._state_names:
            return False, None
        batch = self._batch
        if abi.segment(batch.keys, batch.key_ends, self._input) == key:
            key_id = batch.key_ids[self._input]
        else:
            if self._key_ids is None:
                self._key_ids = {abi.segment(batch.keys, batch.key_ends, i): batch.key_ids[i]
                                 for i in range(len(batch.times))}
            key_id = self._key_ids.get(key)
            if key_id is None:
                return False, None
        slot = key_id * len(self._state_names) + self._state_names.index(name)
        if not batch.state_present[slot]:
            return True, None
        return True, abi.segment(batch.state, batch.state_ends, slot)

    def state_bytes(self, key: Union[bytes, str], name: str) -> Optional[bytes]:
        """The raw state value `name` of `key`, as this call left it."""
        entry = (_as_bytes(key), name)
        if entry in self._seen:
            return self._seen[entry]
        found, value = self._prefetched(*entry)
        if not found:
            value = self._host.state_get(*entry)
            self._seen[entry] = value
        return value

    def state(self, key: Union[bytes, str], name: str, default: Any = None) -> Any:
        """The state value `name` of `key`, decoded from JSON. A value that does not decode
        (written by another plugin version) reads as absent and is logged."""
        raw = self.state_bytes(key, name)
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except ValueError as e:
            self.log(Level.WARN, f"state `{name}` does not decode, treating as absent: {e}")
            return default

    def set_state_bytes(self, key: Union[bytes, str], name: str, value: bytes) -> None:
        """Stores raw bytes as the state value `name` of `key`."""
        key = _as_bytes(key)
        self._seen[(key, name)] = bytes(value)
        abi.push_change(self.result.changes, abi.PUT, key, name, bytes(value))
        self._flush_if_large()

    def set_state(self, key: Union[bytes, str], name: str, value: Any) -> None:
        """Stores `value` (anything JSON can hold) as the state value `name` of `key`."""
        self.set_state_bytes(key, name, to_json(value))

    def delete_state(self, key: Union[bytes, str], name: str) -> None:
        """Deletes the state value `name` of `key`."""
        key = _as_bytes(key)
        self._seen[(key, name)] = None
        abi.push_change(self.result.changes, abi.DELETE, key, name)
        self._flush_if_large()

    def set_timer(self, key: Union[bytes, str], at: int) -> None:
        """Registers an event-time timer for `key` at `at` (ms)."""
        abi.push_change(self.result.changes, abi.SET_TIMER, _as_bytes(key), at=at)
        self._flush_if_large()

    def cancel_timer(self, key: Union[bytes, str], at: int) -> None:
        """Cancels the timer for `key` at `at`."""
        abi.push_change(self.result.changes, abi.CANCEL_TIMER, _as_bytes(key), at=at)
        self._flush_if_large()

    def _flush_if_large(self) -> None:
        # What was sent stays in `_seen`, so reads still see this call's writes.
        if len(self.result.changes) >= FLUSH_AT:
            self._host.apply_changes(bytes(self.result.changes))
            self.result.changes = bytearray()

    @property
    def watermark(self) -> int:
        """The partition's watermark (ms) during this call."""
        return self._batch.watermark

    def log(self, level: Level, message: str) -> None:
        """Logs `message` into the host's log, tagged with the stage and plugin."""
        self._host.log(level, message)

    def counter(self, name: str, delta: int = 1) -> None:
        """Adds `delta` to the counter `name` (summed, sent once at the end of the call)."""
        self._counters[name] = self._counters.get(name, 0) + delta

    def histogram(self, name: str, value: float) -> None:
        """Records `value` in the histogram `name`."""
        self._host.histogram(name, value)

    def geo(self, ip: str) -> Optional[Location]:
        """Where `ip` is, or None when the database does not know it; raises `GeoError` when
        the host has no database or the text is not an address."""
        found = self.geo_many([ip])[0]
        if isinstance(found, GeoError):
            raise found
        return found

    def geo_many(self, ips: List[str]) -> List[Union[Location, None, GeoError]]:
        """Looks up every address in one host call; errors come back as `GeoError` values."""
        return self._host.geo_lookup(list(ips))

    def finish(self) -> abi.BatchResult:
        """Ends the call: sends the counters; the result carries the outputs and changes."""
        for name, delta in self._counters.items():
            self._host.counter(name, delta)
        return self.result


def process_batch(transform: Transform, needs: Needs, batch: Any, host: Host) -> abi.BatchResult:
    """Runs `transform` over every record of `batch`, which carries what `needs` declared."""
    ctx = Context(host, batch, needs.state)
    names = tuple(needs.fields)
    events = [Event(batch, names, i) for i in range(len(batch.times))]
    transform.prepare(events, ctx)
    for index, event in enumerate(events):
        ctx._input = index
        transform.process(event, ctx)
    return ctx.finish()


def fire_timers(transform: Transform, needs: Needs, timers: Any, host: Host) -> abi.BatchResult:
    """Runs `transform`'s timer handler for every timer of `timers`, in order."""
    ctx = Context(host, timers, needs.state)
    for index, at in enumerate(timers.times):
        ctx._input = index
        transform.on_timer(abi.segment(timers.keys, timers.key_ends, index), at, ctx)
    return ctx.finish()
