"""The bot filter in Python: the same rules, config and outputs as the Rust plugin in `src/`
(see its `lib.rs` for the config keys), over the same pattern list (`patterns.txt`, found on
the Python path). The cross-language test runs all three versions over the same events and
checks that their outputs are identical."""

from __future__ import annotations

import os
import re
import sys

from weir_sdk import Config, Context, Event, Needs, Transform, TtlRefresh

RATE_STATE = "rate"
KEYS = ["user_agent_field", "extra_patterns", "missing_user_agent", "rate_limit",
        "rate_window", "burst", "bot_ttl", "action", "route"]
DEFAULT_BURST = 20
# Most user-agent verdicts remembered at once.
VERDICTS = 8_192


def _pattern_file() -> tuple:
    """The built-in patterns and exemptions of `patterns.txt`, in order."""
    for folder in sys.path:
        path = os.path.join(folder, "patterns.txt")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                lines = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
            return ([l for l in lines if not l.startswith("!")],
                    [l[1:] for l in lines if l.startswith("!")])
    raise RuntimeError("patterns.txt is not on the Python path")


# Read at import: componentize-py runs this while it builds the component, which keeps it.
BUILTIN, EXEMPTIONS = _pattern_file()


class Matcher:
    """Finds the first bot pattern in a user agent: ASCII case-insensitive, leftmost-first
    (an alternation tries its branches in order at the leftmost position), skipping a match
    on an exemption. Pattern `i` is group `i + 1`."""

    def __init__(self, extra: list):
        self.names = BUILTIN + extra
        self.exempt_from = len(self.names)
        branches = "|".join(f"({re.escape(n)})" for n in self.names + EXEMPTIONS)
        self.regex = re.compile(branches, re.IGNORECASE | re.ASCII)

    def find(self, user_agent: str):
        for match in self.regex.finditer(user_agent):
            if match.lastindex - 1 < self.exempt_from:
                return match.lastindex - 1
        return None


class BotFilter(Transform):
    def __init__(self, config: Config):
        config.reject_unknown(KEYS)
        self.missing = config.choice_or("missing_user_agent", ["allow", "bot", "dead-letter"],
                                        "bot")
        self.action = config.choice_or("action", ["route", "drop"], "route")
        self.limit = config.int_or("rate_limit", 120, minimum=0)
        self.window_ms = config.duration_ms_or("rate_window", 60_000)
        self.burst = config.int_or("burst", min(self.limit, DEFAULT_BURST), minimum=0)
        self.ttl_ms = config.duration_ms_or("bot_ttl", 3_600_000)
        if self.limit == 0:
            raise ValueError("config `rate_limit`: must be at least 1")
        if self.burst == 0:
            raise ValueError("config `burst`: must be at least 1")
        if self.window_ms <= 0:
            raise ValueError("config `rate_window`: must be longer than zero")
        if self.ttl_ms <= 0:
            raise ValueError("config `bot_ttl`: must be longer than zero")
        self.field = config.non_empty_or("user_agent_field", "user_agent")
        self.route_to = config.non_empty_or("route", "bots")
        self.matcher = Matcher(config.list_or("extra_patterns"))
        self.interval = max(self.window_ms // self.limit, 1)
        self.verdicts: dict = {}

    def needs(self) -> Needs:
        idle = max(self.window_ms, self.ttl_ms, 1)
        return (Needs.of_fields([self.field]).with_state([RATE_STATE])
                .with_ttl(RATE_STATE, idle, TtlRefresh.ON_WRITE))

    def _verdict(self, user_agent: str):
        if user_agent not in self.verdicts:
            if len(self.verdicts) >= VERDICTS:
                self.verdicts.clear()
            self.verdicts[user_agent] = self.matcher.find(user_agent)
        return self.verdicts[user_agent]

    def _rate_marks_bot(self, event: Event, ctx: Context) -> bool:
        """The token bucket of the Rust `rate.rs`: one theoretical arrival time per user."""
        t = event.time
        tat, bot_until = ctx.state(event.key, RATE_STATE) or (t, None)
        tat = max(tat, t) + self.interval
        if tat - t > self.interval * self.burst:
            bot_until = max(bot_until if bot_until is not None else t + self.ttl_ms,
                            t + self.ttl_ms)
        ctx.set_state(event.key, RATE_STATE, [tat, bot_until])
        return bot_until is not None and t < bot_until

    def _bot(self, event: Event, reason: str, ctx: Context) -> None:
        if self.action == "route":
            event.set("bot_reason", reason)
            ctx.route(self.route_to, event)

    def process(self, event: Event, ctx: Context) -> None:
        user_agent = event.get_str(self.field)
        if user_agent is not None and user_agent.strip():
            pattern = self._verdict(user_agent)
            if pattern is not None:
                ctx.counter("bots_user_agent")
                self._bot(event, f"user_agent:{self.matcher.names[pattern]}", ctx)
                return
        elif self.missing != "allow":
            ctx.counter("bots_missing_user_agent")
            if self.missing == "dead-letter":
                ctx.dead_letter("missing user agent", event)
            else:
                self._bot(event, "missing_user_agent", ctx)
            return
        if self._rate_marks_bot(event, ctx):
            ctx.counter("bots_rate")
            self._bot(event, "rate", ctx)
        else:
            ctx.counter("humans")
            ctx.emit(event)
