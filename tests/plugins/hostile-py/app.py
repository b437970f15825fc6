"""The hostile test plugin in Python (see `../hostile/src/lib.rs`): a record whose `action` is
`trap` raises, `spin` loops forever, `hog` allocates without bound, `recurse` recurses without
end, `flood` emits 64 copies of a 64 KiB value, `timers` sets timers until the host stops it,
`hoard` stores ever more state, `dead-letter` is dead-lettered by the plugin itself, `sandbox`
reports what of the environment, filesystem and network it can reach, `timer` sets a timer a
second later, and anything else is counted in state and emitted with `"seen": true`. A timer
of a key starting with `trap` raises."""

import os
import socket

from weir_sdk import Event, Transform
from weir_sdk.guest import export


def depth(n):
    return depth(n + 1) + 1


def reaches(attempt):
    try:
        attempt()
        return True
    except Exception:
        return False


class Hostile(Transform):
    def __init__(self, config):
        if config.get("fail_init") is not None:
            raise ValueError("init refused: fail_init is set")

    def process(self, event, ctx):
        action = event.get_str("action")
        if action == "trap":
            raise RuntimeError("hostile plugin asked to trap")
        if action == "spin":
            while True:
                pass
        if action == "hog":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if action == "recurse":
            ctx.counter("depth", depth(1))
        elif action == "flood":
            big = Event.new({"pad": "x" * (64 << 10)}, 0)
            for _ in range(64):
                ctx.emit(big)
        elif action == "timers":
            for at in range(10_000_000):
                ctx.set_timer(event.key, at)
            ctx.emit(event)
        elif action == "hoard":
            block = b"\x07" * (64 << 10)
            for i in range(1_000_000):
                ctx.set_state_bytes(event.key, f"block-{i}", block)
            ctx.emit(event)
        elif action == "dead-letter":
            ctx.dead_letter("asked to dead-letter", event)
        elif action == "sandbox":
            event.set("env_vars", len(os.environ))
            event.set("fs_read", reaches(lambda: os.listdir("/")) or reaches(lambda: os.listdir(".")))
            event.set("fs_write", reaches(lambda: open("escape.txt", "w").write("x")))
            event.set("net", reaches(lambda: socket.create_connection(("127.0.0.1", 9), 1)))
            ctx.emit(event)
        elif action == "timer":
            ctx.set_timer(event.key, event.time + 1_000)
            ctx.emit(event)
        else:
            count = ctx.state(event.key, "count", 0) + 1
            ctx.set_state(event.key, "count", count)
            event.set("seen", True)
            event.set("count", count)
            ctx.emit(event)

    def on_timer(self, key, at, ctx):
        if key.startswith(b"trap"):
            raise RuntimeError("hostile timer asked to trap")
        ctx.route("timers", Event.new({"timer": at}, at))


WitWorld = export(Hostile)
