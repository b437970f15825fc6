"""Runs a transform natively, without Wasm, against an in-memory host that behaves like the
real one: declared fields and state come with each batch, edits are applied to make the
outputs, state and timer changes are applied after each call, state lifetimes end with the
watermark, and timers fire as it passes them.

    harness = TestHarness(MyTransform, {"rate_limit": "3"})
    [out] = harness.process_one("u1", 1_000, {"user_agent": "curl/8"})
    assert out.route == "bots"
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

from . import abi
from .config import Config
from .context import fire_timers, process_batch
from .event import find, to_json, _MISSING
from .transform import GeoError, Level, Location, Needs, Transform, TtlRefresh


class MemoryHost:
    """In-memory host capabilities, like the host's own per-partition state."""

    def __init__(self, geo: Optional[Callable[[str], Optional[Location]]] = None):
        # (key, name) -> [value, event time it was last touched]
        self.state: Dict[tuple, list] = {}
        self.ttls: Dict[str, tuple] = {}
        self.timers: set = set()
        self.watermark = -(1 << 63)
        self.logs: List[tuple] = []
        self.counters: Dict[str, int] = {}
        self.histograms: Dict[str, List[float]] = {}
        self.geo_calls = 0
        self._geo = geo
        self._touch: Dict[bytes, int] = {}

    def state_get(self, key: bytes, name: str) -> Optional[bytes]:
        entry = self.state.get((key, name))
        if entry is None:
            return None
        ttl = self.ttls.get(name)
        if ttl and ttl[1] == TtlRefresh.ON_READ_AND_WRITE and key in self._touch:
            entry[1] = max(entry[1], self._touch[key])
        return entry[0]

    def apply_changes(self, changes: bytes) -> None:
        for op, key, name, value, at in abi.changes(changes):
            if op == abi.PUT:
                touch = self._touch.get(key, self.watermark)
                old = self.state.get((key, name))
                self.state[(key, name)] = [value, touch if old is None else max(old[1], touch)]
            elif op == abi.DELETE:
                self.state.pop((key, name), None)
            elif op == abi.SET_TIMER:
                self.timers.add((at, key))
            else:
                self.timers.discard((at, key))

    def log(self, level: Level, message: str) -> None:
        self.logs.append((Level(level), message))

    def counter(self, name: str, delta: int) -> None:
        self.counters[name] = self.counters.get(name, 0) + delta

    def histogram(self, name: str, value: float) -> None:
        self.histograms.setdefault(name, []).append(value)

    def geo_lookup(self, ips: List[str]) -> list:
        self.geo_calls += 1
        answers = []
        for ip in ips:
            if self._geo is None:
                answers.append(GeoError("no geo database configured"))
                continue
            try:
                answers.append(self._geo(ip))
            except GeoError as e:
                answers.append(e)
        return answers

    def expire(self) -> None:
        """Drops the entries whose lifetime ended by the watermark, as the host does."""
        for entry in [e for e, (_, touched) in self.state.items()
                      if e[1] in self.ttls and touched + self.ttls[e[1]][0] <= self.watermark]:
            del self.state[entry]

    def prefetch(self, batch: abi.Batch, names: List[str]) -> None:
        """Notes when the batch's records touch their keys; fills in the key ids and the
        declared state of each distinct key."""
        self._touch.clear()
        ids: Dict[bytes, int] = {}
        for i, time in enumerate(batch.times):
            key = abi.segment(batch.keys, batch.key_ends, i)
            self._touch[key] = max(self._touch.get(key, time), time)
            batch.key_ids.append(ids.setdefault(key, len(ids)))
        state, ends = bytearray(), []
        for key in ids:
            for name in names:
                value = self.state_get(key, name)
                batch.state_present.append(value is not None)
                state += value or b""
                ends.append(len(state))
        batch.state, batch.state_ends = bytes(state), ends


@dataclass
class TestEvent:
    """An input record: key, event time (ms), JSON value and headers."""

    __test__ = False

    key: str
    time: int
    value: Any
    headers: Dict[str, bytes] = field(default_factory=dict)


@dataclass
class TestOutput:
    """One output as a test sees it: `kind` is `emit`, `route` or `dead-letter`; `value` has
    the edits applied; `input` is the input's index in its call (None for timer outputs)."""

    input: Optional[int]
    kind: str
    text: str
    value: Any
    key: str
    time: int

    @property
    def route(self) -> Optional[str]:
        """The route name, if routed."""
        return self.text if self.kind == "route" else None

    @property
    def dead_letter_reason(self) -> Optional[str]:
        """The dead-letter reason, if dead-lettered."""
        return self.text if self.kind == "dead-letter" else None

    @property
    def is_emit(self) -> bool:
        """Whether the output goes on to the next stage."""
        return self.kind == "emit"


class TestHarness:
    """Runs one transform natively against a `MemoryHost`."""

    __test__ = False  # not a pytest test class

    def __init__(self, transform_class: type, config: Union[Dict[str, str], list, None] = None,
                 geo: Optional[Callable[[str], Optional[Location]]] = None):
        pairs = list(config.items()) if isinstance(config, dict) else list(config or [])
        self.transform: Transform = transform_class(Config(pairs))
        self.needs: Needs = self.transform.needs()
        self.host = MemoryHost(geo)
        self.host.ttls = {name: (ttl, refresh) for name, ttl, refresh in self.needs.ttls}

    def process(self, events: List[Union[TestEvent, tuple]]) -> List[TestOutput]:
        """Runs one batch. The watermark does not move; call `advance_watermark`."""
        events = [e if isinstance(e, TestEvent) else TestEvent(*e) for e in events]
        batch = abi.Batch(watermark=self.host.watermark)
        fields, values, headers = bytearray(), bytearray(), bytearray()
        keys = bytearray()
        for e in events:
            keys += e.key.encode()
            batch.key_ends.append(len(keys))
            batch.times.append(e.time)
            for name in self.needs.fields:
                found = find(e.value, name)
                fields += b"" if found is _MISSING else to_json(found)
                batch.field_ends.append(len(fields))
            if self.needs.values:
                values += to_json(e.value)
                batch.value_ends.append(len(values))
            if self.needs.headers:
                for name, value in e.headers.items():
                    abi.push_header(headers, name, value)
                batch.header_ends.append(len(headers))
        batch.keys, batch.fields, batch.values, batch.headers = (
            bytes(keys), bytes(fields), bytes(values), bytes(headers))
        self.host.prefetch(batch, self.needs.state)
        result = process_batch(self.transform, self.needs, batch, self.host)
        self.host.apply_changes(bytes(result.changes))
        return _decode(result, [(e.value, e.key, e.time) for e in events], True)

    def process_one(self, key: str, time: int, value: Any) -> List[TestOutput]:
        """Runs one batch holding a single event."""
        return self.process([TestEvent(key, time, value)])

    def advance_watermark(self, watermark: int) -> List[TestOutput]:
        """Moves the watermark (never backwards), drops the state whose lifetime ended, and
        fires every timer at or below it, earliest first, in batches as the host does."""
        self.host.watermark = max(self.host.watermark, watermark)
        self.host.expire()
        outputs = []
        while True:
            due = sorted(t for t in self.host.timers if t[0] <= self.host.watermark)
            if not due:
                return outputs
            batch = abi.Batch(watermark=self.host.watermark)
            keys = bytearray()
            for timer in due:
                self.host.timers.discard(timer)
                keys += timer[1]
                batch.key_ends.append(len(keys))
                batch.times.append(timer[0])
            batch.keys = bytes(keys)
            self.host.prefetch(batch, self.needs.state)
            result = fire_timers(self.transform, self.needs, batch, self.host)
            self.host.apply_changes(bytes(result.changes))
            inputs = [({}, key.decode("utf-8", "replace"), at) for at, key in due]
            outputs += _decode(result, inputs, False)

    def state(self, key: str, name: str) -> Any:
        """The state value `name` of `key`, decoded from JSON (None when absent)."""
        raw = self.state_bytes(key, name)
        return None if raw is None else json.loads(raw)

    def state_bytes(self, key: str, name: str) -> Optional[bytes]:
        """The raw state value `name` of `key`."""
        entry = self.host.state.get((key.encode(), name))
        return None if entry is None else entry[0]

    def timers(self) -> List[tuple]:
        """Pending timers as `(at, key)`, earliest first."""
        return sorted((at, key.decode("utf-8", "replace")) for at, key in self.host.timers)


_KINDS = {abi.EMIT: "emit", abi.ROUTE: "route", abi.DEAD_LETTER: "dead-letter"}


def _decode(result: abi.BatchResult, inputs: list, from_inputs: bool) -> List[TestOutput]:
    outputs = []
    for i, out in enumerate(result.outputs):
        text, key, raw = result.parts(i)
        value, input_key, time = inputs[out.input]
        if out.value == abi.REPLACED:
            value = json.loads(raw)
        elif out.value == abi.EDITED:
            value = json.loads(to_json(value))
            for name, edit in abi.edits(raw):
                if edit is None:
                    value.pop(name, None)
                else:
                    value[name] = json.loads(edit)
        outputs.append(TestOutput(
            out.input if from_inputs else None, _KINDS[out.kind], text.decode(), value,
            input_key if key is None else key.decode("utf-8", "replace"),
            time if out.time is None else out.time))
    return outputs
