//! Harness tests of the geo stage: every status class, field selection, prefix, truncation
//! and IPv4-mapped addresses, against a fake lookup.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{Value, json};
use weir_sdk::Location;
use weir_sdk::testing::{TestEvent, TestHarness, TestOutput};

use crate::IpGeo;

const T0: i64 = 1_795_000_000_000;

fn london() -> Location {
    Location {
        country_iso: Some("GB".into()),
        country_name: Some("United Kingdom".into()),
        region: Some("England".into()),
        city: Some("London".into()),
        latitude: Some(51.5142),
        longitude: Some(-0.0931),
    }
}

/// A harness whose fake database knows 81.2.69.10 fully, 2a02:ec0::1 by country only and
/// nothing else; every address asked is recorded.
fn harness(config: &[(&str, &str)]) -> (TestHarness<IpGeo>, Rc<RefCell<Vec<String>>>) {
    let asked = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&asked);
    let h = TestHarness::<IpGeo>::new(config)
        .unwrap()
        .with_geo(move |ip| {
            log.borrow_mut().push(ip.to_string());
            Ok(match ip {
                "81.2.69.10" => Some(london()),
                "2a02:ec0::1" => Some(Location {
                    country_iso: Some("DE".into()),
                    ..Location::default()
                }),
                // A record with nothing but the country the network is registered in.
                "8.8.8.8" => Some(Location::default()),
                _ => None,
            })
        });
    (h, asked)
}

fn run(h: &mut TestHarness<IpGeo>, ip: Value) -> Value {
    let out: Vec<TestOutput> = h.process_one("u-42", T0, json!({"event_id": "e-1", "ip": ip}));
    assert_eq!(out.len(), 1);
    assert!(out[0].is_emit());
    out[0].value.clone()
}

fn status(h: &mut TestHarness<IpGeo>, ip: Value) -> String {
    run(h, ip)["geo_status"].as_str().unwrap().to_string()
}

#[test]
fn found_address_gets_default_fields() {
    let (mut h, _) = harness(&[]);
    let v = run(&mut h, json!("81.2.69.10"));
    assert_eq!(
        v,
        json!({"event_id": "e-1", "ip": "81.2.69.10", "geo_country": "GB", "geo_region": "England",
            "geo_city": "London", "geo_latitude": 51.5142, "geo_longitude": -0.0931, "geo_status": "ok"})
    );
    assert_eq!(h.host().counters.get("geo_ok"), Some(&1));
}

#[test]
fn every_status_class() {
    let (mut h, asked) = harness(&[]);
    let cases = [
        (json!("81.2.69.10"), "ok"),
        (json!("1.1.1.1"), "not_found"),
        (json!("8.8.8.8"), "no_location"),
        (json!("10.0.0.7"), "private"),
        (json!("192.168.0.1"), "private"),
        (json!("fd00::1"), "private"),
        (json!("127.0.0.1"), "loopback"),
        (json!("::1"), "loopback"),
        (json!("169.254.1.1"), "link_local"),
        (json!("fe80::1"), "link_local"),
        (json!("0.0.0.0"), "reserved"),
        (json!("255.255.255.255"), "reserved"),
        (json!("192.0.2.1"), "reserved"),
        (json!("2001:db8::1"), "reserved"),
        (json!("224.0.0.1"), "reserved"),
        (json!("100.64.1.1"), "reserved"),
        (json!("not-an-ip"), "malformed"),
        (json!("81.2.69.10:443"), "malformed"),
        (json!(8_843_010), "malformed"),
        (json!(null), "missing"),
        (json!(""), "missing"),
        (json!(" "), "missing"),
    ];
    for (ip, expected) in &cases {
        assert_eq!(status(&mut h, ip.clone()), *expected, "{ip}");
    }
    let out = h.process_one("u-42", T0, json!({"event_id": "e-2"}));
    assert_eq!(out[0].value["geo_status"], "missing");
    // Only public addresses reach the database, each once.
    assert_eq!(*asked.borrow(), ["81.2.69.10", "1.1.1.1", "8.8.8.8"]);
    let counters = &h.host().counters;
    assert_eq!(counters.get("geo_no_location"), Some(&1));
    assert_eq!(counters.get("geo_private"), Some(&3));
    assert_eq!(counters.get("geo_reserved"), Some(&6));
    assert_eq!(counters.get("geo_missing"), Some(&4));
}

#[test]
fn lookup_error_is_logged_once() {
    // The harness without with_geo answers Err, like a host without a database.
    let mut h = TestHarness::<IpGeo>::new(&[]).unwrap();
    assert_eq!(status(&mut h, json!("81.2.69.10")), "error");
    assert_eq!(status(&mut h, json!("8.8.8.8")), "error");
    assert_eq!(status(&mut h, json!("10.0.0.1")), "private");
    let warnings: Vec<_> = h
        .host()
        .logs
        .iter()
        .filter(|(l, _)| *l == weir_sdk::Level::Warn)
        .collect();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].1.contains("no geo database"));
    assert_eq!(h.host().counters.get("geo_error"), Some(&2));
}

#[test]
fn only_configured_and_present_fields_are_added() {
    let (mut h, _) = harness(&[("fields", "country, country_name ,city")]);
    let v = run(&mut h, json!("81.2.69.10"));
    assert_eq!(v["geo_country"], "GB");
    assert_eq!(v["geo_country_name"], "United Kingdom");
    assert_eq!(v["geo_city"], "London");
    assert!(v.get("geo_latitude").is_none() && v.get("geo_region").is_none());
    // The location has only a country: no city field, not even a null one.
    let v = run(&mut h, json!("2a02:ec0::1"));
    assert_eq!(v["geo_country"], "DE");
    assert!(v.get("geo_city").is_none() && v.get("geo_country_name").is_none());
    assert_eq!(v["geo_status"], "ok");
}

#[test]
fn prefix_and_status_field() {
    let (mut h, _) = harness(&[
        ("prefix", "loc."),
        ("fields", "country,latitude"),
        ("status_field", "geo"),
    ]);
    let v = run(&mut h, json!("81.2.69.10"));
    assert_eq!(v["loc.country"], "GB");
    assert_eq!(v["loc.latitude"], 51.5142);
    assert_eq!(v["geo"], "ok");
    let (mut h, _) = harness(&[("prefix", ""), ("fields", "city")]);
    assert_eq!(run(&mut h, json!("81.2.69.10"))["city"], "London");
}

#[test]
fn custom_ip_field_and_nested_path() {
    let (mut h, asked) = harness(&[("ip_field", "client.addr"), ("truncate_ip", "true")]);
    let out = h.process_one(
        "u-1",
        T0,
        json!({"client": {"addr": "81.2.69.10", "port": 1}, "ip": "1.1.1.1"}),
    );
    let v = &out[0].value;
    assert_eq!(v["geo_city"], "London");
    assert_eq!(v["client"], json!({"addr": "81.2.69.0", "port": 1}));
    assert_eq!(v["ip"], "1.1.1.1");
    assert!(v.get("client.addr").is_none());
    assert_eq!(*asked.borrow(), ["81.2.69.10"]);
}

#[test]
fn truncation_v4_and_v6_for_every_status() {
    let (mut h, asked) = harness(&[("truncate_ip", "TRUE")]);
    let v = run(&mut h, json!("81.2.69.10"));
    assert_eq!(
        (v["ip"].as_str(), v["geo_city"].as_str()),
        (Some("81.2.69.0"), Some("London"))
    );
    assert_eq!(
        run(&mut h, json!("2001:db8:1:2:3:4:5:6"))["ip"],
        "2001:db8:1::"
    );
    assert_eq!(run(&mut h, json!("2a02:ec0::1"))["ip"], "2a02:ec0::");
    assert_eq!(run(&mut h, json!("10.1.2.3"))["ip"], "10.1.2.0");
    assert_eq!(run(&mut h, json!("not-an-ip"))["ip"], "not-an-ip");
    // The lookup sees the full address; only the output is truncated.
    assert_eq!(*asked.borrow(), ["81.2.69.10", "2a02:ec0::1"]);
    let (mut h, _) = harness(&[]);
    assert_eq!(run(&mut h, json!("81.2.69.10"))["ip"], "81.2.69.10");
}

#[test]
fn ipv4_mapped_ipv6_is_treated_as_ipv4() {
    let (mut h, asked) = harness(&[("truncate_ip", "true")]);
    let v = run(&mut h, json!("::ffff:81.2.69.10"));
    assert_eq!(v["geo_status"], "ok");
    assert_eq!(v["ip"], "81.2.69.0");
    assert_eq!(status(&mut h, json!("::ffff:192.168.1.1")), "private");
    assert_eq!(status(&mut h, json!("::FFFF:127.0.0.1")), "loopback");
    assert_eq!(*asked.borrow(), ["81.2.69.10"]);
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("fields", "country,zip")], "fields"),
        (&[("truncate_ip", "yes")], "truncate_ip"),
        (&[("ip_field", "")], "ip_field"),
        (&[("status_field", "geo_city")], "status_field"),
        (
            &[("prefix", ""), ("fields", "city"), ("ip_field", "city")],
            "prefix",
        ),
        (&[("ip_fields", "ip")], "ip_fields"),
    ];
    for (config, key) in cases {
        let err = TestHarness::<IpGeo>::new(config).err().unwrap();
        assert!(err.contains(key), "{err:?} does not name {key}");
    }
}

#[test]
fn a_batch_looks_up_its_new_addresses_in_one_call() {
    let (mut h, asked) = harness(&[]);
    let events: Vec<TestEvent> = [
        "81.2.69.10",
        "1.1.1.1",
        "81.2.69.10",
        "10.0.0.1",
        "2a02:ec0::1",
    ]
    .iter()
    .map(|ip| TestEvent::new("u-1", T0, json!({"ip": ip})))
    .collect();
    let out = h.process(&events);
    assert_eq!(out.len(), 5);
    assert_eq!(out[2].value["geo_city"], "London");
    assert_eq!(h.host().geo_calls, 1);
    assert_eq!(*asked.borrow(), ["81.2.69.10", "1.1.1.1", "2a02:ec0::1"]);
    // Known addresses are not asked again.
    h.process(&events);
    assert_eq!(h.host().geo_calls, 1);
}
