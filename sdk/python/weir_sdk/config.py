"""A stage's configuration as the plugin receives it: string pairs from the pipeline config,
with typed getters whose errors name the key (the same rules and messages as the Rust SDK)."""

from __future__ import annotations

import re
from typing import Iterable, Optional

_UNITS_MS = {
    "ns": 1e-6, "nsec": 1e-6, "us": 1e-3, "usec": 1e-3, "ms": 1, "msec": 1,
    "s": 1_000, "sec": 1_000, "secs": 1_000, "second": 1_000, "seconds": 1_000,
    "m": 60_000, "min": 60_000, "mins": 60_000, "minute": 60_000, "minutes": 60_000,
    "h": 3_600_000, "hr": 3_600_000, "hrs": 3_600_000, "hour": 3_600_000,
    "hours": 3_600_000, "d": 86_400_000, "day": 86_400_000, "days": 86_400_000,
    "w": 604_800_000, "week": 604_800_000, "weeks": 604_800_000,
}
_DURATION_PART = re.compile(r"\s*(\d+)\s*([A-Za-z]+)")


def parse_duration_ms(text: str) -> int:
    """`"30m"`, `"1h 30m"` or `"500ms"` in milliseconds; raises ValueError otherwise."""
    at, total, parts = 0, 0.0, 0
    text = text.strip()
    while at < len(text):
        match = _DURATION_PART.match(text, at)
        if not match or match.group(2) not in _UNITS_MS:
            raise ValueError(f"expected a number and a unit at {text[at:]!r}")
        total += int(match.group(1)) * _UNITS_MS[match.group(2)]
        at, parts = match.end(), parts + 1
    if not parts:
        raise ValueError("value was empty")
    return int(total)


class Config:
    """The `config` table of a stage. Getters return the value or a default and raise
    `ValueError` naming the key when a value does not parse."""

    def __init__(self, pairs: Iterable[tuple] = ()):
        self._pairs = [(str(k), str(v)) for k, v in pairs]

    def get(self, key: str) -> Optional[str]:
        """The raw value of `key` (the last one given)."""
        for k, v in reversed(self._pairs):
            if k == key:
                return v
        return None

    def int_or(self, key: str, default: int, minimum: Optional[int] = None) -> int:
        """`key` as an integer, or `default` when absent."""
        raw = self.get(key)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError as e:
            raise ValueError(f"config `{key}`: cannot parse {raw!r}: {e}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"config `{key}`: cannot parse {raw!r}: below {minimum}")
        return value

    def float_or(self, key: str, default: float) -> float:
        """`key` as a number, or `default` when absent."""
        raw = self.get(key)
        if raw is None:
            return default
        try:
            return float(raw.strip())
        except ValueError as e:
            raise ValueError(f"config `{key}`: cannot parse {raw!r}: {e}") from None

    def duration_ms_or(self, key: str, default_ms: int) -> int:
        """`key` as a duration (`"30m"`, `"1h 30m"`, `"500ms"`) in ms, or `default_ms`."""
        raw = self.get(key)
        if raw is None:
            return default_ms
        try:
            return parse_duration_ms(raw)
        except ValueError as e:
            raise ValueError(f"config `{key}`: cannot parse duration {raw!r}: {e}") from None

    def non_empty_or(self, key: str, default: str) -> str:
        """`key` trimmed, or `default`; a value that is empty after trimming is refused."""
        raw = self.get(key)
        value = (default if raw is None else raw).strip()
        if not value:
            raise ValueError(f"config `{key}`: must not be empty")
        return value

    def bool_or(self, key: str, default: bool) -> bool:
        """`key` as `true` or `false` (any case), or `default`."""
        raw = self.get(key)
        if raw is None:
            return default
        if raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        raise ValueError(f"config `{key}`: {raw!r} is not true or false")

    def list_or(self, key: str, default: Iterable[str] = ()) -> list:
        """`key` as a comma-separated list of trimmed, non-empty items, or `default`."""
        raw = self.get(key)
        if raw is None:
            return list(default)
        return [item.strip() for item in raw.split(",") if item.strip()]

    def choice_or(self, key: str, allowed: Iterable[str], default: str) -> str:
        """`key` as one of `allowed` (any case), or `default`."""
        allowed = list(allowed)
        raw = self.get(key)
        if raw is None:
            return default
        for choice in allowed:
            if choice.lower() == raw.strip().lower():
                return choice
        raise ValueError(f"config `{key}`: {raw!r} is not one of {', '.join(allowed)}")

    def reject_unknown(self, known: Iterable[str]) -> None:
        """Refuses every key not in `known`, so a typo fails at init."""
        known = list(known)
        unknown = [k for k, _ in self._pairs if k not in known]
        if unknown:
            raise ValueError(
                f"unknown config key(s): {', '.join(unknown)} (known: {', '.join(known)})")
