//! Address classes: which addresses are worth a geo lookup, the status each event gets, and
//! the network prefix that replaces an address when `truncate_ip` is on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The outcome for one event, written to the status field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Public address found in the database.
    Ok,
    /// Public address the database does not know.
    NotFound,
    /// Public address the database has a record for, but no location in it (MaxMind lists
    /// some networks with only the country they are registered in): nothing to add.
    NoLocation,
    /// RFC 1918 or IPv6 unique-local address.
    Private,
    /// Loopback address.
    Loopback,
    /// Link-local address.
    LinkLocal,
    /// Special-purpose address that is never a client's public address.
    Reserved,
    /// The IP field is absent, null or empty.
    Missing,
    /// The IP field is not an IP address string.
    Malformed,
    /// The lookup failed (for example, the host has no database).
    Error,
}

impl Status {
    /// The value written to the status field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotFound => "not_found",
            Status::NoLocation => "no_location",
            Status::Private => "private",
            Status::Loopback => "loopback",
            Status::LinkLocal => "link_local",
            Status::Reserved => "reserved",
            Status::Missing => "missing",
            Status::Malformed => "malformed",
            Status::Error => "error",
        }
    }

    /// The counter incremented for this status.
    pub(crate) fn counter(self) -> &'static str {
        match self {
            Status::Ok => "geo_ok",
            Status::NotFound => "geo_not_found",
            Status::NoLocation => "geo_no_location",
            Status::Private => "geo_private",
            Status::Loopback => "geo_loopback",
            Status::LinkLocal => "geo_link_local",
            Status::Reserved => "geo_reserved",
            Status::Missing => "geo_missing",
            Status::Malformed => "geo_malformed",
            Status::Error => "geo_error",
        }
    }
}

/// Non-public IPv4 ranges (IANA special-purpose registry), as network, prefix length, class.
const V4_RANGES: &[(Ipv4Addr, u32, Status)] = &[
    (Ipv4Addr::new(127, 0, 0, 0), 8, Status::Loopback),
    (Ipv4Addr::new(10, 0, 0, 0), 8, Status::Private),
    (Ipv4Addr::new(172, 16, 0, 0), 12, Status::Private),
    (Ipv4Addr::new(192, 168, 0, 0), 16, Status::Private),
    (Ipv4Addr::new(169, 254, 0, 0), 16, Status::LinkLocal),
    // "This network", including the unspecified 0.0.0.0.
    (Ipv4Addr::new(0, 0, 0, 0), 8, Status::Reserved),
    // Carrier-grade NAT: shared by many subscribers, located nowhere in particular.
    (Ipv4Addr::new(100, 64, 0, 0), 10, Status::Reserved),
    (Ipv4Addr::new(192, 0, 0, 0), 24, Status::Reserved),
    // Documentation (TEST-NET-1..3) and benchmarking.
    (Ipv4Addr::new(192, 0, 2, 0), 24, Status::Reserved),
    (Ipv4Addr::new(198, 51, 100, 0), 24, Status::Reserved),
    (Ipv4Addr::new(203, 0, 113, 0), 24, Status::Reserved),
    (Ipv4Addr::new(198, 18, 0, 0), 15, Status::Reserved),
    (Ipv4Addr::new(224, 0, 0, 0), 4, Status::Reserved),
    // Future use, including the limited broadcast 255.255.255.255.
    (Ipv4Addr::new(240, 0, 0, 0), 4, Status::Reserved),
];

/// Non-public IPv6 ranges, as network, prefix length, class. IPv4-mapped addresses never
/// get here: [`canonical`] turns them into IPv4 first.
const V6_RANGES: &[(Ipv6Addr, u32, Status)] = &[
    (Ipv6Addr::LOCALHOST, 128, Status::Loopback),
    (Ipv6Addr::UNSPECIFIED, 128, Status::Reserved),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        Status::Private,
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        Status::LinkLocal,
    ),
    // Deprecated site-local (RFC 3879): no longer assigned to anyone.
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        Status::Reserved,
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        Status::Reserved,
    ),
    // Documentation (RFC 3849, RFC 9637) and discard-only (RFC 6666).
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        Status::Reserved,
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        Status::Reserved,
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        Status::Reserved,
    ),
];

/// The address to classify, look up and truncate: IPv4-mapped IPv6 (`::ffff:a.b.c.d`)
/// becomes IPv4, because that is the client's real address and the database keys it so.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The class of a non-public address; `None` for a public one, which needs a lookup.
pub(crate) fn non_public(ip: IpAddr) -> Option<Status> {
    match ip {
        IpAddr::V4(v4) => {
            let bits = v4.to_bits();
            V4_RANGES
                .iter()
                .find(|(net, len, _)| bits & mask32(*len) == net.to_bits())
                .map(|r| r.2)
        }
        IpAddr::V6(v6) => {
            let bits = v6.to_bits();
            V6_RANGES
                .iter()
                .find(|(net, len, _)| bits & mask128(*len) == net.to_bits())
                .map(|r| r.2)
        }
    }
}

/// The /24 network of an IPv4 address or the /48 network of an IPv6 one: coarse enough
/// not to identify a household, fine enough to keep the network.
pub(crate) fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask32(24))),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask128(48))),
    }
}

fn mask32(len: u32) -> u32 {
    u32::MAX.checked_shl(32 - len).unwrap_or(0)
}

fn mask128(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn class(ip: &str) -> Option<Status> {
        non_public(canonical(ip.parse().unwrap()))
    }

    #[test]
    fn ipv4_classes() {
        assert_eq!(class("81.2.69.10"), None);
        assert_eq!(class("8.8.8.8"), None);
        assert_eq!(class("172.32.0.1"), None);
        assert_eq!(class("100.128.0.1"), None);
        assert_eq!(class("127.0.0.1"), Some(Status::Loopback));
        assert_eq!(class("10.1.2.3"), Some(Status::Private));
        assert_eq!(class("172.31.255.255"), Some(Status::Private));
        assert_eq!(class("192.168.1.1"), Some(Status::Private));
        assert_eq!(class("169.254.10.1"), Some(Status::LinkLocal));
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.9",
            "198.19.0.1",
            "224.0.0.251",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert_eq!(class(ip), Some(Status::Reserved), "{ip}");
        }
    }

    #[test]
    fn ipv6_classes() {
        assert_eq!(class("2a00:1450:4001:81a::200e"), None);
        assert_eq!(class("::1"), Some(Status::Loopback));
        assert_eq!(class("::"), Some(Status::Reserved));
        assert_eq!(class("fd12:3456:789a::1"), Some(Status::Private));
        assert_eq!(class("fc00::1"), Some(Status::Private));
        assert_eq!(class("fe80::1ff:fe23:4567:890a"), Some(Status::LinkLocal));
        assert_eq!(class("ff02::1"), Some(Status::Reserved));
        assert_eq!(class("2001:db8:1::5"), Some(Status::Reserved));
        assert_eq!(class("::ffff:10.0.0.1"), Some(Status::Private));
        assert_eq!(class("::ffff:81.2.69.10"), None);
    }

    #[test]
    fn truncation() {
        let t = |ip: &str| truncate(canonical(ip.parse().unwrap())).to_string();
        assert_eq!(t("81.2.69.10"), "81.2.69.0");
        assert_eq!(t("2001:db8:1:2:3:4:5:6"), "2001:db8:1::");
        assert_eq!(t("::ffff:81.2.69.10"), "81.2.69.0");
    }
}
