//! IP geolocation: enriches each event with the location of its client address and a status
//! saying why a location is or is not there.
//!
//! Every event is emitted, never dead-lettered. The status field (config `status_field`,
//! default `geo_status`) gets one of `ok`, `not_found`, `private`, `loopback`, `link_local`,
//! `reserved`, `missing`, `malformed` or `error`; only public addresses are looked up, so the
//! database is asked nothing it cannot answer. On `ok`, the configured `fields` that the
//! location has are added as prefix + name (`geo_country` holds the ISO code). With
//! `truncate_ip = true` every parseable address is replaced by its /24 (IPv4) or /48 (IPv6)
//! network after the lookup; IPv4-mapped IPv6 addresses are treated, and written, as IPv4.
//!
//! Config keys: `ip_field` (default `ip`, a dotted path reaches into nested objects),
//! `fields` (comma list of `country`, `country_name`, `region`, `city`, `latitude`,
//! `longitude`; default all but `country_name`), `prefix` (default `geo_`), `truncate_ip`
//! (default `false`) and `status_field` (default `geo_status`).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod classify;
mod config;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use weir_sdk::{Config, Context, Event, Level, Transform, json};

use crate::classify::Status;
use crate::config::Settings;

/// The ip-geo transform.
#[derive(Debug)]
pub struct IpGeo {
    settings: Settings,
    /// Whether a failed lookup was logged already: with no database every event fails, and
    /// one line says it all.
    warned: bool,
}

/// What the IP field holds.
enum Input {
    Missing,
    Malformed,
    Ip(IpAddr),
}

impl IpGeo {
    fn read(&self, event: &Event<'_>) -> Input {
        let field = &self.settings.ip_field;
        match event.get_raw(field) {
            None | Some(b"null") => Input::Missing,
            Some(raw) => match json::decode_string(raw) {
                None => Input::Malformed,
                Some(text) if text.trim().is_empty() => Input::Missing,
                Some(text) => text
                    .trim()
                    .parse()
                    .map_or(Input::Malformed, |ip| Input::Ip(classify::canonical(ip))),
            },
        }
    }

    /// Looks the address up and writes the location fields. `present` says which output
    /// fields the event already has (found in one pass); the others are appended unscanned.
    fn locate(
        &mut self,
        ip: IpAddr,
        present: &[bool],
        event: &mut Event<'_>,
        ctx: &mut Context<'_>,
    ) -> Status {
        match ctx.geo(&ip.to_string()) {
            Ok(Some(location)) => {
                for ((field, name), exists) in self.settings.outputs.iter().zip(present) {
                    field.write(&location, name, *exists, event);
                }
                Status::Ok
            }
            Ok(None) => Status::NotFound,
            Err(e) => {
                if !self.warned {
                    self.warned = true;
                    ctx.log(
                        Level::Warn,
                        &format!("geo lookup failed, marking events `error` (logged once): {e}"),
                    );
                }
                Status::Error
            }
        }
    }
}

impl Transform for IpGeo {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(IpGeo {
            settings: Settings::from_config(config)?,
            warned: false,
        })
    }

    fn process(&mut self, mut event: Event<'_>, ctx: &mut Context<'_>) {
        // One pass over the event finds which of the fields this stage writes it already has.
        let present = event.present(&self.settings.written);
        let status_exists = present.last().copied().unwrap_or(true);
        let status = match self.read(&event) {
            Input::Missing => Status::Missing,
            Input::Malformed => Status::Malformed,
            Input::Ip(ip) => {
                let status = match classify::non_public(ip) {
                    Some(status) => status,
                    None => self.locate(ip, &present, &mut event, ctx),
                };
                if self.settings.truncate_ip {
                    let mut raw = Vec::new();
                    json::push_str(&mut raw, &classify::truncate(ip).to_string());
                    replace_at_path(&mut event, &self.settings.ip_field, &raw);
                }
                status
            }
        };
        if status_exists {
            event.set_str(&self.settings.status_field, status.as_str());
        } else {
            event.add_str(&self.settings.status_field, status.as_str());
        }
        ctx.counter(status.counter(), 1);
        ctx.emit(&event);
    }
}

/// Replaces the existing value at `path`, resolved like [`Event::get_raw`] resolves it.
/// [`Event::set_raw`] only reaches top-level fields, and truncation must not leave the full
/// address in a nested object while adding a new top-level field.
fn replace_at_path(event: &mut Event<'_>, path: &str, raw: &[u8]) {
    if event.has(path) {
        event.set_raw(path, raw);
        return;
    }
    let Some((head, rest)) = path.split_once('.') else {
        return;
    };
    let Some(inner) = event.get_raw(head) else {
        return;
    };
    let mut inner = inner.to_vec();
    if replace_in_object(&mut inner, rest, raw) {
        event.set_raw(head, &inner);
    }
}

fn replace_in_object(obj: &mut Vec<u8>, path: &str, raw: &[u8]) -> bool {
    if json::find_member(obj, path).is_some() {
        json::set_raw(obj, path, raw);
        return true;
    }
    let Some((head, rest)) = path.split_once('.') else {
        return false;
    };
    let Some(member) = json::find_member(obj, head) else {
        return false;
    };
    let mut inner = obj[member.value.clone()].to_vec();
    if !replace_in_object(&mut inner, rest, raw) {
        return false;
    }
    obj.splice(member.value, inner);
    true
}

weir_sdk::export_transform!(IpGeo);
