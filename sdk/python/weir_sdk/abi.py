"""The framing of `weir:transform@0.2.0` (see `wit/transform.wit`): a batch's columns, an
output's edits, a call's state and timer changes, and a record's headers."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterator, Optional

# What an output is (`output-kind`) and what its value is (`value-kind`), as the WIT numbers them.
EMIT, ROUTE, DEAD_LETTER = 0, 1, 2
UNCHANGED, EDITED, REPLACED = 0, 1, 2

# Edit operations.
SET, REMOVE = 0, 1

# Change operations.
PUT, DELETE, SET_TIMER, CANCEL_TIMER = 0, 1, 2, 3

_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")


@dataclass
class Batch:
    """A batch in columns, with the attribute names of the WIT record (the guest's generated
    `Batch` has the same ones, so the SDK reads either)."""

    watermark: int = 0
    times: list = field(default_factory=list)
    keys: bytes = b""
    key_ends: list = field(default_factory=list)
    key_ids: list = field(default_factory=list)
    fields: bytes = b""
    field_ends: list = field(default_factory=list)
    state: bytes = b""
    state_ends: list = field(default_factory=list)
    state_present: list = field(default_factory=list)
    values: bytes = b""
    value_ends: list = field(default_factory=list)
    headers: bytes = b""
    header_ends: list = field(default_factory=list)


def segment(buf: bytes, ends: list, i: int) -> bytes:
    """Item `i` of `buf`, whose items end at `ends`."""
    return buf[ends[i - 1] if i else 0 : ends[i]]


@dataclass
class Output:
    """One output, as the WIT record has it."""

    input: int
    kind: int
    value: int
    end: int
    text_len: int
    key_len: Optional[int]
    time: Optional[int]


@dataclass
class BatchResult:
    """The outcome of one call: outputs, their variable parts, and the state and timer changes."""

    outputs: list = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    changes: bytearray = field(default_factory=bytearray)

    def push(self, input: int, kind: int, text: bytes, key: Optional[bytes],
             time: Optional[int], value_kind: int, value: bytes) -> None:
        """Appends an output: its text, own key and value go into `data`."""
        self.data += text
        if key is not None:
            self.data += key
        self.data += value
        self.outputs.append(Output(input, kind, value_kind, len(self.data), len(text),
                                   None if key is None else len(key), time))

    def parts(self, i: int) -> tuple:
        """Output `i`'s text, own key (or None) and value bytes."""
        out = self.outputs[i]
        start = self.outputs[i - 1].end if i else 0
        text_end = start + out.text_len
        key_end = text_end + (out.key_len or 0)
        key = None if out.key_len is None else bytes(self.data[text_end:key_end])
        return bytes(self.data[start:text_end]), key, bytes(self.data[key_end:out.end])


def push_frame(buf: bytearray, data: bytes) -> None:
    """Appends `data` with its u32-le length in front."""
    buf += _U32.pack(len(data))
    buf += data


def _frame(buf: bytes, at: int) -> tuple:
    (length,) = _U32.unpack_from(buf, at)
    start = at + 4
    if start + length > len(buf):
        raise ValueError("a frame runs past the end of its buffer")
    return buf[start : start + length], start + length


def push_set(buf: bytearray, name: str, raw: bytes) -> None:
    """Appends an edit setting the top-level field `name` to the raw JSON `raw`."""
    buf.append(SET)
    push_frame(buf, name.encode())
    push_frame(buf, raw)


def push_remove(buf: bytearray, name: str) -> None:
    """Appends an edit removing the top-level field `name`."""
    buf.append(REMOVE)
    push_frame(buf, name.encode())


def edits(buf: bytes) -> Iterator[tuple]:
    """Each edit of `buf` as `(name, raw JSON)`, with `None` for a removal."""
    at = 0
    while at < len(buf):
        op = buf[at]
        name, at = _frame(buf, at + 1)
        if op == SET:
            raw, at = _frame(buf, at)
            yield name.decode(), bytes(raw)
        elif op == REMOVE:
            yield name.decode(), None
        else:
            raise ValueError(f"unknown edit op {op}")


def push_change(buf: bytearray, op: int, key: bytes, name: str = "",
                value: bytes = b"", at: int = 0) -> None:
    """Appends one state or timer change."""
    buf.append(op)
    push_frame(buf, key)
    if op in (PUT, DELETE):
        push_frame(buf, name.encode())
        if op == PUT:
            push_frame(buf, value)
    else:
        buf += _I64.pack(at)


def changes(buf: bytes) -> Iterator[tuple]:
    """Each change of `buf` as `(op, key, name, value, at)`."""
    at = 0
    while at < len(buf):
        op = buf[at]
        key, at = _frame(buf, at + 1)
        name, value, when = "", None, 0
        if op in (PUT, DELETE):
            raw_name, at = _frame(buf, at)
            name = raw_name.decode()
            if op == PUT:
                value, at = _frame(buf, at)
                value = bytes(value)
        elif op in (SET_TIMER, CANCEL_TIMER):
            (when,) = _I64.unpack_from(buf, at)
            at += 8
        else:
            raise ValueError(f"unknown change op {op}")
        yield op, bytes(key), name, value, when


def push_header(buf: bytearray, name: str, value: bytes) -> None:
    """Appends one header to a record's framed headers."""
    push_frame(buf, name.encode())
    push_frame(buf, value)


def headers(buf: bytes) -> Iterator[tuple]:
    """Each header of a record's framed headers as `(name, value)`."""
    at = 0
    while at < len(buf):
        name, at = _frame(buf, at)
        value, at = _frame(buf, at)
        yield name.decode("utf-8", "replace"), bytes(value)
