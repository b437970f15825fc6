"""The component's side of the contract: `export(MyTransform)` makes the `WitWorld` class that
componentize-py builds into a `weir:transform@0.2.0` component. Only imported inside the
component (the `wit_world` bindings exist only there)."""

from __future__ import annotations

from typing import List, Optional

import wit_world
from componentize_py_types import Err, Ok
from wit_world.imports import geo, log, metrics, state, types

from . import abi
from .config import Config
from .context import fire_timers, process_batch
from .transform import GeoError, Level, Location, Needs


class _ComponentHost:
    """The host's capabilities through the component's imports."""

    def state_get(self, key: bytes, name: str) -> Optional[bytes]:
        return state.get(key, name)

    def apply_changes(self, changes: bytes) -> None:
        state.apply(changes)

    def log(self, level: Level, message: str) -> None:
        log.log(log.Level(int(level)), message)

    def counter(self, name: str, delta: int) -> None:
        metrics.counter(name, delta)

    def histogram(self, name: str, value: float) -> None:
        metrics.histogram(name, value)

    def geo_lookup(self, ips: List[str]) -> list:
        answers = []
        for answer in geo.lookup(ips):
            if isinstance(answer, Ok):
                found = answer.value
                answers.append(None if found is None else Location(
                    found.country_iso, found.country_name, found.region, found.city,
                    found.latitude, found.longitude))
            else:
                answers.append(GeoError(answer.value))
        return answers


def _result(result: abi.BatchResult) -> types.BatchResult:
    outputs = [
        types.Output(o.input, types.OutputKind(o.kind), types.ValueKind(o.value), o.end,
                     o.text_len, o.key_len, o.time)
        for o in result.outputs
    ]
    return types.BatchResult(outputs, bytes(result.data), bytes(result.changes))


def export(transform_class: type) -> type:
    """The `WitWorld` class for a component running `transform_class`: assign it to a
    module-level `WitWorld` in the app module componentize-py builds."""
    host = _ComponentHost()
    # One transform per instance; componentize-py may make a new WitWorld for every call.
    running: dict = {}

    class WitWorld(wit_world.WitWorld):
        def init(self, config):
            try:
                transform = transform_class(Config(config))
                needs: Needs = transform.needs()
            except Exception as e:  # any failure rejects the plugin with its message
                raise Err(str(e) or type(e).__name__)
            for name, ttl_ms, refresh in needs.ttls:
                state.expire_after(name, ttl_ms, state.TtlRefresh(int(refresh)))
            running["transform"], running["needs"] = transform, needs
            return types.Needs(list(needs.fields), list(needs.state), needs.values,
                               needs.headers)

        def process(self, batch):
            return _result(process_batch(running["transform"], running["needs"], batch, host))

        def on_timers(self, timers):
            return _result(fire_timers(running["transform"], running["needs"], timers, host))

    return WitWorld
