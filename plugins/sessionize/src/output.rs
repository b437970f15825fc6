//! Closing a session: the summary routed to `sessions`, the per-user features kept in state
//! and routed to `features`.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use weir_sdk::{Context, Event};

use crate::session::{OpenSession, session_id};

/// Name of the per-user state value holding [`Features`].
pub(crate) const FEATURES_STATE: &str = "features";

/// Keys of the summary and features objects; the configured user field must not be one.
pub(crate) const OUTPUT_KEYS: &[&str] = &[
    "session_id",
    "start",
    "end",
    "duration_ms",
    "event_count",
    "page_views",
    "first_url",
    "last_url",
    "session_count",
    "last_session_duration_ms",
    "last_session_events",
    "total_events",
    "updated_at",
];

/// Per-user aggregates over closed sessions, stored under [`FEATURES_STATE`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Features {
    pub(crate) session_count: u64,
    pub(crate) last_session_duration_ms: i64,
    pub(crate) last_session_events: u64,
    /// End of the latest-ending closed session.
    pub(crate) last_session_end: i64,
    pub(crate) total_events: u64,
}

/// The user entry, whose key is configurable, so it serializes as a one-entry map that the
/// output structs flatten in.
struct User<'a> {
    field: &'a str,
    value: &'a str,
}

impl Serialize for User<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.field, self.value)?;
        map.end()
    }
}

#[derive(Serialize)]
struct Summary<'a> {
    #[serde(flatten)]
    user: User<'a>,
    session_id: &'a str,
    start: i64,
    end: i64,
    duration_ms: i64,
    event_count: u64,
    page_views: u64,
    first_url: Option<&'a str>,
    last_url: Option<&'a str>,
}

#[derive(Serialize)]
struct FeaturesOut<'a> {
    #[serde(flatten)]
    user: User<'a>,
    session_count: u64,
    last_session_duration_ms: i64,
    last_session_events: u64,
    total_events: u64,
    updated_at: i64,
}

/// Emits `session`'s summary and the user's updated features.
pub(crate) fn close_session(
    user_field: &str,
    key: &[u8],
    session: &OpenSession<'_>,
    ctx: &mut Context<'_>,
) {
    let user = String::from_utf8_lossy(key);
    let id = session_id(key, session.anchor);
    let duration_ms = session.last.saturating_sub(session.start);
    let summary = Summary {
        user: User {
            field: user_field,
            value: &user,
        },
        session_id: &id,
        start: session.start,
        end: session.last,
        duration_ms,
        event_count: session.event_count,
        page_views: session.page_views,
        first_url: session.first_url.as_deref(),
        last_url: session.last_url.as_deref(),
    };
    ctx.route("sessions", &Event::from_serialize(&summary, session.last));
    ctx.counter("sessions_closed", 1);

    let mut features: Features = ctx.state(key, FEATURES_STATE).unwrap_or_default();
    // Sessions of one user can close out of order (a split at max_duration closes a later
    // session before an older one times out): "last session" means the latest-ending one.
    if features.session_count == 0 || session.last >= features.last_session_end {
        features.last_session_duration_ms = duration_ms;
        features.last_session_events = session.event_count;
        features.last_session_end = session.last;
    }
    features.session_count += 1;
    features.total_events += session.event_count;
    ctx.set_state(key, FEATURES_STATE, &features);
    let out = FeaturesOut {
        user: User {
            field: user_field,
            value: &user,
        },
        session_count: features.session_count,
        last_session_duration_ms: features.last_session_duration_ms,
        last_session_events: features.last_session_events,
        total_events: features.total_events,
        updated_at: session.last,
    };
    ctx.route("features", &Event::from_serialize(&out, session.last));
}
