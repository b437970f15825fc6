//! The W3C `traceparent` header of an input record: read so the batch span can link to the
//! producer's trace, and written unchanged on the Kafka outputs derived from the record.

/// The header's name (lower case, as the W3C Trace Context names it).
pub const HEADER: &str = "traceparent";

/// A parsed `traceparent`: version 00, trace id, parent span id and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace the record belongs to.
    pub trace_id: [u8; 16],
    /// The producer's span.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything else, an all-zero trace or
    /// span id included (the W3C text calls those invalid). A later version's value is read
    /// by its version-00 prefix, as the text asks.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        let text = std::str::from_utf8(value).ok()?.trim();
        let mut parts = text.splitn(5, '-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        let later_version = version != "00";
        if version.len() != 2 || version == "ff" || (!later_version && parts.next().is_some()) {
            return None;
        }
        let mut parent = TraceParent {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
        };
        decode_hex(trace, &mut parent.trace_id)?;
        decode_hex(span, &mut parent.span_id)?;
        let mut flag_byte = [0u8; 1];
        decode_hex(flags, &mut flag_byte)?;
        parent.flags = flag_byte[0];
        let valid = parent.trace_id != [0; 16] && parent.span_id != [0; 8];
        valid.then_some(parent)
    }

    /// The `traceparent` among a record's headers, if it has a valid one.
    pub fn from_headers(headers: &[(String, Vec<u8>)]) -> Option<TraceParent> {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(HEADER))
            .and_then(|(_, value)| TraceParent::parse(value))
    }

    /// The header value, version 00.
    pub fn to_header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        )
    }
}

/// Decodes lower-case hex of exactly `out.len()` bytes (the W3C text allows no upper case).
fn decode_hex(text: &str, out: &mut [u8]) -> Option<()> {
    let lower = text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if text.len() != out.len() * 2 || !lower {
        return None;
    }
    hex::decode_to_slice(text, out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_version_00_header_round_trips() {
        let parent = TraceParent::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            hex::encode(parent.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(hex::encode(parent.span_id), "00f067aa0ba902b7");
        assert_eq!(parent.flags, 1);
        assert_eq!(parent.to_header(), EXAMPLE);
    }

    #[test]
    fn malformed_and_invalid_headers_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_version_00_prefix() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        let parent = TraceParent::parse(later.as_bytes()).unwrap();
        assert_eq!(parent.to_header(), EXAMPLE);
    }

    #[test]
    fn the_header_is_found_among_others_whatever_its_case() {
        let headers = vec![
            ("weir.source.topic".to_string(), b"clicks".to_vec()),
            ("TraceParent".to_string(), EXAMPLE.as_bytes().to_vec()),
        ];
        assert!(TraceParent::from_headers(&headers).is_some());
        assert_eq!(TraceParent::from_headers(&headers[..1]), None);
    }
}
