"""An event as a transform sees it: the fields it declared (or its whole value), key, event
time and headers; changed by edits the host applies, so an event is never copied whole into
the sandbox and back."""

from __future__ import annotations

import json
from typing import Any, Optional, Union

from . import abi

_MISSING = object()


def to_json(value: Any) -> bytes:
    """`value` as compact JSON text (non-ASCII kept as UTF-8, as the Rust SDK writes it)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def find(value: Any, path: str) -> Any:
    """The value at the dotted `path` inside parsed JSON, or `_MISSING`."""
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def find_raw(raw: bytes, path: str) -> Optional[bytes]:
    """The raw JSON at `path` inside the JSON text `raw`."""
    try:
        found = find(json.loads(raw), path)
    except ValueError:
        return None
    return None if found is _MISSING else to_json(found)


def _as_bytes(key: Union[bytes, str]) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


class Event:
    """One event passing through a stage: an input record (with the edits made to it) or a
    new JSON object made with `Event.new`."""

    __slots__ = ("_batch", "_names", "_index", "_edits", "_value", "_key", "_time",
                 "_time_set")

    def __init__(self, batch: Any = None, names: tuple = (), index: int = -1):
        self._batch, self._names, self._index = batch, names, index
        self._edits = bytearray()
        self._value: Optional[dict] = None
        self._key: Optional[bytes] = None
        self._time = batch.times[index] if batch is not None else 0
        self._time_set = False

    @classmethod
    def new(cls, value: Union[dict, bytes, str], time: int) -> "Event":
        """A new event holding the JSON object `value` (a dict or JSON text) at event time
        `time` (ms). Its key is the input's unless `set_key` gives it one."""
        event = cls()
        event._value = json.loads(value) if isinstance(value, (bytes, str)) else dict(value)
        event._time, event._time_set = time, True
        return event

    @property
    def input_index(self) -> Optional[int]:
        """The index of the input record this event is, if it is one."""
        return self._index if self._batch is not None else None

    @property
    def key(self) -> bytes:
        """The record key (the entity key, usually the user id)."""
        if self._key is not None:
            return self._key
        if self._batch is None:
            return b""
        return abi.segment(self._batch.keys, self._batch.key_ends, self._index)

    @property
    def key_str(self) -> str:
        """The key as text (invalid UTF-8 replaced)."""
        return self.key.decode("utf-8", "replace")

    def set_key(self, key: Union[bytes, str]) -> None:
        """Gives the event its own key (outputs keep their input's otherwise)."""
        self._key = _as_bytes(key)

    @property
    def time(self) -> int:
        """Event time in ms since the epoch."""
        return self._time

    def set_time(self, time: int) -> None:
        """Gives the event its own event time (ms); the host partitions and watermarks by it."""
        self._time, self._time_set = time, True

    def header(self, name: str) -> Optional[bytes]:
        """The first header called `name` (the stage must declare headers in its needs)."""
        if self._batch is None or not self._batch.header_ends:
            return None
        framed = abi.segment(self._batch.headers, self._batch.header_ends, self._index)
        return next((v for n, v in abi.headers(framed) if n == name), None)

    def _input_raw(self, path: str) -> Optional[bytes]:
        batch, names = self._batch, self._names
        if path in names:
            raw = abi.segment(batch.fields, batch.field_ends,
                              self._index * len(names) + names.index(path))
            if raw:
                return raw
        if batch.value_ends:
            return find_raw(abi.segment(batch.values, batch.value_ends, self._index), path)
        head, dot, rest = path.partition(".")
        if dot:
            outer = self._input_raw(head)
            return find_raw(outer, rest) if outer is not None else None
        return None

    def get_raw(self, path: str) -> Optional[bytes]:
        """The raw JSON at `path` (a field name or a dotted path into nested objects), as the
        event is now: this stage's edits first, then the input."""
        if self._value is not None:
            found = find(self._value, path)
            return None if found is _MISSING else to_json(found)
        if self._edits:
            head, dot, rest = path.partition(".")
            edited = _MISSING
            for name, raw in abi.edits(self._edits):
                if name == path:
                    edited = raw
                elif dot and name == head:
                    edited = find_raw(raw, rest) if raw is not None else None
            if edited is not _MISSING:
                return edited
        return self._input_raw(path)

    def get(self, path: str, default: Any = None) -> Any:
        """The JSON value at `path`, parsed, or `default` when the event has none."""
        raw = self.get_raw(path)
        return default if raw is None else json.loads(raw)

    def get_str(self, path: str) -> Optional[str]:
        """The string at `path` (None when absent or not a string)."""
        value = self.get(path)
        return value if isinstance(value, str) else None

    def get_int(self, path: str) -> Optional[int]:
        """The integer at `path`."""
        value = self.get(path)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def get_float(self, path: str) -> Optional[float]:
        """The number at `path`."""
        value = self.get(path)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    def get_bool(self, path: str) -> Optional[bool]:
        """The boolean at `path`."""
        value = self.get(path)
        return value if isinstance(value, bool) else None

    def has(self, field: str) -> bool:
        """Whether the field exists (even if `null`)."""
        return self.get_raw(field) is not None

    def set_raw(self, field: str, raw: bytes) -> None:
        """Sets a top-level field to raw JSON, which must be valid (the host refuses the call
        otherwise)."""
        if self._value is not None:
            self._value[field] = json.loads(raw)
        else:
            abi.push_set(self._edits, field, bytes(raw))

    def set(self, field: str, value: Any) -> None:
        """Sets a top-level field to any JSON-serializable value."""
        if self._value is not None:
            self._value[field] = value
        else:
            abi.push_set(self._edits, field, to_json(value))

    def remove(self, field: str) -> None:
        """Removes a top-level field."""
        if self._value is not None:
            self._value.pop(field, None)
        else:
            abi.push_remove(self._edits, field)

    def copy(self) -> "Event":
        """An independent copy (edits to one do not show in the other)."""
        event = Event(self._batch, self._names, self._index)
        event._edits = bytearray(self._edits)
        event._value = None if self._value is None else json.loads(to_json(self._value))
        event._key, event._time, event._time_set = self._key, self._time, self._time_set
        return event

    def output_value(self) -> tuple:
        """What `Context` writes for this event: a value kind and its bytes."""
        if self._value is not None:
            return abi.REPLACED, to_json(self._value)
        if self._edits:
            return abi.EDITED, bytes(self._edits)
        return abi.UNCHANGED, b""

    def own_time(self) -> Optional[int]:
        """The event time, if it was set rather than taken from the input."""
        return self._time if self._time_set else None

    def own_key(self) -> Optional[bytes]:
        """The key this event was given, if not the input's."""
        return self._key
