"""What a transform declares and implements: `Needs`, the `Transform` base class, and the
host's capabilities as a plain interface (`Host`) that the guest glue and the test harness
each provide."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Iterable, List, Optional, Protocol

if TYPE_CHECKING:
    from .config import Config
    from .context import Context
    from .event import Event


class TtlRefresh(IntEnum):
    """What restarts a state entry's lifetime."""

    ON_WRITE = 0
    ON_READ_AND_WRITE = 1


class Level(IntEnum):
    """Log levels, as the host's `log` interface numbers them."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


@dataclass
class Location:
    """What the geo database knows about an address; absent fields are unknown."""

    country_iso: Optional[str] = None
    country_name: Optional[str] = None
    region: Optional[str] = None
    city: Optional[str] = None
    latitude: Optional[float] = None
    longitude: Optional[float] = None


class GeoError(Exception):
    """The host has no geo database, or the text is not an address."""


@dataclass
class Needs:
    """What a stage reads: the fields (top-level names or dotted paths) of each event, the
    state values of each event's key that come with the batch, whether whole values and
    headers come too, and the lifetimes of state names."""

    fields: List[str] = field(default_factory=list)
    state: List[str] = field(default_factory=list)
    values: bool = False
    headers: bool = False
    ttls: List[tuple] = field(default_factory=list)

    @classmethod
    def whole_values(cls) -> "Needs":
        """Whole values: always works, costs the most."""
        return cls(values=True)

    @classmethod
    def of_fields(cls, fields: Iterable[str]) -> "Needs":
        """Only the raw values of `fields`: a few bytes per event instead of the whole event."""
        return cls(fields=list(fields))

    def with_state(self, names: Iterable[str]) -> "Needs":
        """Also the state values `names` of each event's key, so reading them costs no host
        call."""
        self.state = list(names)
        return self

    def with_headers(self) -> "Needs":
        """Also each event's headers."""
        self.headers = True
        return self

    def with_ttl(self, name: str, ttl_ms: int,
                 refresh: TtlRefresh = TtlRefresh.ON_WRITE) -> "Needs":
        """Entries of the state `name` expire `ttl_ms` of event time after they were last
        written (or also read, per `refresh`)."""
        self.ttls = [t for t in self.ttls if t[0] != name] + [(name, max(1, int(ttl_ms)),
                                                               refresh)]
        return self


class Host(Protocol):
    """The host's capabilities during a call."""

    def state_get(self, key: bytes, name: str) -> Optional[bytes]: ...

    def apply_changes(self, changes: bytes) -> None: ...

    def log(self, level: Level, message: str) -> None: ...

    def counter(self, name: str, delta: int) -> None: ...

    def histogram(self, name: str, value: float) -> None: ...

    def geo_lookup(self, ips: List[str]) -> list: ...


class Transform:
    """A transform: the business logic of one pipeline stage. Subclass it; `__init__` takes
    the stage's `Config` and raises (any exception) to reject it."""

    def __init__(self, config: Optional["Config"] = None):
        """A transform without settings ignores its config."""

    def needs(self) -> Needs:
        """What the transform reads, asked once after `__init__`. The default, whole values,
        always works; naming the fields (and the state read per key) is much cheaper."""
        return Needs.whole_values()

    def prepare(self, events: List["Event"], ctx: "Context") -> None:
        """Called once per batch before `process` runs on its events: the place for one host
        call for the whole batch (geo lookups, say). The events are the ones `process` gets
        next: read them here, edit them there."""

    def process(self, event: "Event", ctx: "Context") -> None:
        """Handles one event: call `ctx.emit`, `ctx.route` or `ctx.dead_letter` for each
        output; an event with no output is dropped."""
        raise NotImplementedError

    def on_timer(self, key: bytes, at: int, ctx: "Context") -> None:
        """Handles a timer set for `key` that fired at `at` (the watermark passed it)."""
