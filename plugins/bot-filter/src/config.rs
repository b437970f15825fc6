//! The bot filter's stage configuration, parsed and checked once at init.

use weir_sdk::Config;

use crate::rate::RateRule;

/// Events a user may send at once above the sustained rate, unless configured (or the limit is
/// lower): a page load fires a few, a human clicking fast a dozen.
const DEFAULT_BURST: u32 = 20;

/// Every config key the bot filter understands.
const KEYS: &[&str] = &[
    "user_agent_field",
    "extra_patterns",
    "missing_user_agent",
    "rate_limit",
    "rate_window",
    "burst",
    "bot_ttl",
    "action",
    "route",
];

/// What to do with an event whose user agent is absent, not a string, or blank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissingPolicy {
    /// Treat it like any other event (the rate rule still applies).
    Allow,
    /// Treat it as a bot.
    Bot,
    /// Send it to the dead-letter output.
    DeadLetter,
}

/// What happens to bot events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Tag them with `bot_reason` and send them to the bot route.
    Route,
    /// Drop them.
    Drop,
}

/// The parsed stage config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) user_agent_field: String,
    pub(crate) extra_patterns: Vec<String>,
    pub(crate) missing: MissingPolicy,
    pub(crate) rate: RateRule,
    pub(crate) action: Action,
    pub(crate) route: String,
}

impl Settings {
    /// Parses `config`, refusing unknown keys and values out of range.
    pub(crate) fn from_config(config: &Config) -> Result<Self, String> {
        config.reject_unknown(KEYS)?;
        let missing = match config.choice_or(
            "missing_user_agent",
            &["allow", "bot", "dead-letter"],
            "bot",
        )? {
            "allow" => MissingPolicy::Allow,
            "dead-letter" => MissingPolicy::DeadLetter,
            _ => MissingPolicy::Bot,
        };
        let action = match config.choice_or("action", &["route", "drop"], "route")? {
            "drop" => Action::Drop,
            _ => Action::Route,
        };
        let limit = config.parse_or("rate_limit", 120u32)?;
        let rate = RateRule {
            limit,
            window_ms: config.duration_ms_or("rate_window", 60_000)?,
            burst: config.parse_or("burst", limit.min(DEFAULT_BURST))?,
            ttl_ms: config.duration_ms_or("bot_ttl", 3_600_000)?,
        };
        // A zero limit would mark every user a bot on the first event, a zero window would
        // never count past one and a zero ttl would never mark anyone: all are mistakes.
        if rate.limit == 0 {
            return Err("config `rate_limit`: must be at least 1".to_string());
        }
        if rate.burst == 0 {
            return Err("config `burst`: must be at least 1".to_string());
        }
        if rate.window_ms <= 0 {
            return Err("config `rate_window`: must be longer than zero".to_string());
        }
        if rate.ttl_ms <= 0 {
            return Err("config `bot_ttl`: must be longer than zero".to_string());
        }
        Ok(Settings {
            user_agent_field: config.non_empty_or("user_agent_field", "user_agent")?,
            extra_patterns: config.list_or("extra_patterns", &[]),
            missing,
            rate,
            action,
            route: config.non_empty_or("route", "bots")?,
        })
    }
}
