//! IP geolocation: enriches each event with the location of its client address and a status
//! saying why a location is or is not there.
//!
//! Every event is emitted, never dead-lettered. The status field (config `status_field`,
//! default `geo_status`) gets one of `ok`, `not_found`, `no_location` (the database has a
//! record for the address but no location in it), `private`, `loopback`, `link_local`,
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
//!
//! It reads only the IP field. Each batch's addresses that it has not seen are looked up in
//! one host call, and what an address gives (the fields to set) is remembered, so most
//! events cost a hash lookup and a few copied bytes.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod classify;
mod config;
mod places;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use weir_sdk::{Config, Context, Event, Events, Level, Needs, Transform, json};

use crate::classify::Status;
use crate::config::Settings;
use crate::places::{Place, Places};

/// The ip-geo transform.
#[derive(Debug)]
pub struct IpGeo {
    settings: Settings,
    places: Places,
    /// What `prepare` read of each event of the batch, so `process` does not parse it again.
    inputs: std::vec::IntoIter<Input>,
    /// Whether a failed lookup was logged already: with no database every event fails, and
    /// one line says it all.
    warned: bool,
}

/// What the IP field holds.
#[derive(Debug, Clone, Copy)]
enum Input {
    Missing,
    Malformed,
    Ip(IpAddr),
}

impl IpGeo {
    fn read(&self, event: &Event<'_>) -> Input {
        match event.get_raw(&self.settings.ip_field) {
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

    /// Writes what is known of the public address `ip` (looked up in `prepare`).
    fn locate(&mut self, ip: IpAddr, event: &mut Event<'_>, ctx: &mut Context<'_>) -> Status {
        let failure = match self.places.get(&ip) {
            Some(Place::Located(values)) => {
                for ((_, name), raw) in self.settings.outputs.iter().zip(values) {
                    if let Some(raw) = raw {
                        event.set_raw(name, raw);
                    }
                }
                return Status::Ok;
            }
            Some(Place::NoLocation) => return Status::NoLocation,
            Some(Place::NotFound) => return Status::NotFound,
            Some(Place::Failed(e)) => e.clone(),
            None => "the address was not looked up".to_string(),
        };
        if !self.warned {
            self.warned = true;
            let message =
                format!("geo lookup failed, marking events `error` (logged once): {failure}");
            ctx.log(Level::Warn, &message);
        }
        Status::Error
    }
}

impl Transform for IpGeo {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(IpGeo {
            settings: Settings::from_config(config)?,
            places: Places::default(),
            inputs: Vec::new().into_iter(),
            warned: false,
        })
    }

    fn needs(&self) -> Needs {
        let ip_field = self.settings.ip_field.as_str();
        match ip_field.split_once('.') {
            // Truncating an address inside an object rewrites the top-level field holding it.
            Some((head, _)) if self.settings.truncate_ip => Needs::fields(&[ip_field, head]),
            _ => Needs::fields(&[ip_field]),
        }
    }

    fn prepare(&mut self, events: &Events<'_>, ctx: &mut Context<'_>) {
        let inputs: Vec<Input> = events.iter().map(|event| self.read(&event)).collect();
        let mut wanted: Vec<IpAddr> = Vec::new();
        for input in &inputs {
            if let Input::Ip(ip) = *input
                && classify::non_public(ip).is_none()
                && !self.places.contains(&ip)
                && !wanted.contains(&ip)
            {
                wanted.push(ip);
            }
        }
        self.inputs = inputs.into_iter();
        if wanted.is_empty() {
            return;
        }
        let texts: Vec<String> = wanted.iter().map(IpAddr::to_string).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let answers = ctx.geo_many(&refs);
        self.places.make_room(wanted.len());
        for (ip, answer) in wanted.into_iter().zip(answers) {
            self.places
                .insert(ip, Place::of(answer, &self.settings.outputs));
        }
    }

    fn process(&mut self, mut event: Event<'_>, ctx: &mut Context<'_>) {
        // `prepare` read every event of the batch, in the order they come here.
        let input = self.inputs.next().unwrap_or_else(|| self.read(&event));
        let status = match input {
            Input::Missing => Status::Missing,
            Input::Malformed => Status::Malformed,
            Input::Ip(ip) => {
                let status = match classify::non_public(ip) {
                    Some(status) => status,
                    None => self.locate(ip, &mut event, ctx),
                };
                if self.settings.truncate_ip {
                    let mut raw = Vec::new();
                    json::push_str(&mut raw, &classify::truncate(ip).to_string());
                    replace_at_path(&mut event, &self.settings.ip_field, &raw);
                }
                status
            }
        };
        event.set_str(&self.settings.status_field, status.as_str());
        ctx.counter(status.counter(), 1);
        ctx.emit(&event);
    }
}

/// Replaces the existing value at `path`, resolved like [`Event::get_raw`] resolves it:
/// truncation must not leave the full address in a nested object while adding a new
/// top-level field.
fn replace_at_path(event: &mut Event<'_>, path: &str, raw: &[u8]) {
    if let Some((head, rest)) = path.split_once('.')
        && let Some(inner) = event.get_raw(head)
        && json::find_raw(inner, rest).is_some()
    {
        let mut inner = inner.to_vec();
        if replace_in_object(&mut inner, rest, raw) {
            event.set_raw(head, &inner);
        }
        return;
    }
    if event.has(path) {
        event.set_raw(path, raw);
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
