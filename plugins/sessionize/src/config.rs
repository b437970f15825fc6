//! The sessionizer's stage configuration, parsed and checked once at init.

use weir_sdk::Config;

use crate::output::OUTPUT_KEYS;
use crate::session::Windows;

/// Every config key the stage understands.
const KEYS: &[&str] = &[
    "gap",
    "max_duration",
    "allowed_lateness",
    "late_action",
    "late_route",
    "url_field",
    "type_field",
    "page_view_type",
    "user_field",
];

/// What happens to an event too far behind the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LateAction {
    /// Tag it `"late": true` and send it to the late route.
    Route,
    /// Send it to the dead-letter output.
    DeadLetter,
}

/// The parsed stage config.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) windows: Windows,
    pub(crate) late_action: LateAction,
    pub(crate) late_route: String,
    pub(crate) url_field: String,
    pub(crate) type_field: String,
    pub(crate) page_view_type: String,
    pub(crate) user_field: String,
}

impl Settings {
    /// Parses `config`, refusing unknown keys and values out of range.
    pub(crate) fn from_config(config: &Config) -> Result<Self, String> {
        config.reject_unknown(KEYS)?;
        let windows = Windows {
            gap: config.duration_ms_or("gap", 30 * 60_000)?,
            max_duration: config.duration_ms_or("max_duration", 12 * 3_600_000)?,
            allowed_lateness: config.duration_ms_or("allowed_lateness", 60_000)?,
        };
        // A zero gap would put every event in a session of its own, a zero maximum would
        // split every session at its second event.
        if windows.gap <= 0 {
            return Err("config `gap`: must be longer than zero".to_string());
        }
        if windows.max_duration <= 0 {
            return Err("config `max_duration`: must be longer than zero".to_string());
        }
        let late_action =
            match config.choice_or("late_action", &["route", "dead-letter"], "route")? {
                "dead-letter" => LateAction::DeadLetter,
                _ => LateAction::Route,
            };
        let user_field = config.non_empty_or("user_field", "user_id")?;
        // The summary and features objects would otherwise carry the key twice.
        if OUTPUT_KEYS.contains(&user_field.as_str()) {
            return Err(format!(
                "config `user_field`: `{user_field}` is already a summary or features field"
            ));
        }
        Ok(Settings {
            windows,
            late_action,
            late_route: config.non_empty_or("late_route", "late")?,
            url_field: config.non_empty_or("url_field", "url")?,
            type_field: config.non_empty_or("type_field", "type")?,
            page_view_type: config.non_empty_or("page_view_type", "page_view")?,
            user_field,
        })
    }
}
