//! RoQ framing against a reference that does not come from the module.
//!
//! The reference reads a whole DATAGRAM or a whole stream at once, straight
//! from the formats of draft-ietf-avtcore-rtp-over-quic-14 §5.2.1 and §5.3
//! and the varint table of RFC 9000 §16, with its own varint decoder. The
//! properties:
//!
//! - **no panic, same answer**: any bytes given to `parse_datagram`, and to
//!   a `StreamReader` in any chunking, give what the reference gives: the
//!   same packets, then the same clean end or error;
//! - **bounded**: the reader never holds more than one packet and a varint;
//! - **round trip**: what the encoders write for any flow id and packets
//!   reads back as exactly those, in any chunking.

use hearken_core::roq::{
    FlowId, MAX_VARINT, RoqError, StreamEvent, StreamReader, decode_varint, encode_datagram,
    encode_stream_header, encode_stream_packet, encode_varint, parse_datagram, varint_len,
};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------
// The reference.

/// RFC 9000 §16: the two top bits of the first byte say 1, 2, 4 or 8 bytes;
/// the rest is the value, big-endian. `None` if `bytes` is too short.
fn ref_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let len = [1, 2, 4, 8][usize::from(first >> 6)];
    if bytes.len() < len {
        return None;
    }
    let mut value = u64::from(first & 0b0011_1111);
    for &b in &bytes[1..len] {
        value = value * 256 + u64::from(b);
    }
    Some((value, len))
}

/// One DATAGRAM: flow id, then a non-empty packet.
fn ref_datagram(d: &[u8]) -> Result<(u64, Vec<u8>), RoqError> {
    let (flow, n) = ref_varint(d).ok_or(RoqError::TruncatedVarint)?;
    if d.len() == n {
        return Err(RoqError::EmptyPacket);
    }
    Ok((flow, d[n..].to_vec()))
}

/// What reading a stream gave: the flow id, the packets, and how it ended
/// (`Ok` for a clean FIN).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    flow: Option<u64>,
    packets: Vec<Vec<u8>>,
    end: Result<(), RoqError>,
}

/// One whole stream: flow id, then `{length, packet}` until the end.
fn ref_stream(s: &[u8], max_packet: usize) -> Outcome {
    let mut out = Outcome {
        flow: None,
        packets: Vec::new(),
        end: Ok(()),
    };
    let Some((flow, mut at)) = ref_varint(s) else {
        out.end = Err(RoqError::TruncatedStream);
        return out;
    };
    out.flow = Some(flow);
    while at < s.len() {
        let Some((len, n)) = ref_varint(&s[at..]) else {
            out.end = Err(RoqError::TruncatedStream);
            return out;
        };
        at += n;
        if len == 0 {
            out.end = Err(RoqError::EmptyPacket);
            return out;
        }
        if len > max_packet as u64 {
            out.end = Err(RoqError::PacketTooLarge {
                len,
                max: max_packet,
            });
            return out;
        }
        let len = len as usize;
        if s.len() - at < len {
            out.end = Err(RoqError::TruncatedStream);
            return out;
        }
        out.packets.push(s[at..at + len].to_vec());
        at += len;
    }
    out
}

// ---------------------------------------------------------------------------
// The module under test.

/// `bytes` cut at `cuts` (positions in any order, repeats make empty chunks).
fn chunks(bytes: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for end in at.into_iter().chain([bytes.len()]) {
        out.push(bytes[start..end].to_vec());
        start = end;
    }
    out
}

/// Feeds `chunks` to a fresh reader, then FIN unless it failed first.
fn read_stream(chunks: &[Vec<u8>], max_packet: usize) -> Result<Outcome, TestCaseError> {
    let mut reader = StreamReader::new(max_packet);
    let mut out = Outcome {
        flow: None,
        packets: Vec::new(),
        end: Ok(()),
    };
    for chunk in chunks {
        let mut input = &chunk[..];
        loop {
            match reader.read(&mut input) {
                Ok(Some(StreamEvent::Flow(f))) => {
                    prop_assert_eq!(out.flow, None, "the flow id comes once");
                    prop_assert!(out.packets.is_empty(), "the flow id comes first");
                    out.flow = Some(f.value());
                }
                Ok(Some(StreamEvent::Packet(p))) => {
                    prop_assert!(out.flow.is_some(), "the flow id comes first");
                    out.packets.push(p.to_vec());
                }
                Ok(None) => break,
                Err(e) => {
                    out.end = Err(e);
                    return Ok(out);
                }
            }
        }
        prop_assert!(input.is_empty(), "Ok(None) only when the chunk is used up");
        prop_assert!(
            reader.buffered() <= max_packet + 8,
            "{} bytes held for packets of at most {}",
            reader.buffered(),
            max_packet
        );
    }
    out.end = reader.finish();
    Ok(out)
}

fn flow_value() -> impl Strategy<Value = u64> {
    prop_oneof![0..64u64, 0..=MAX_VARINT]
}

/// A well-formed stream's bytes, written by hand from §5.2.1 with the
/// shortest varints: so the mutations below start from something the reader
/// gets far into.
fn valid_stream() -> impl Strategy<Value = (Vec<u8>, usize)> {
    (
        flow_value(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 1..90), 0..6),
    )
        .prop_map(|(flow, packets)| {
            let mut s = Vec::new();
            encode_varint(flow, &mut s).unwrap();
            for p in &packets {
                encode_varint(p.len() as u64, &mut s).unwrap();
                s.extend(p);
            }
            (s, 64)
        })
}

/// Stream bytes to throw at a reader: random, or a valid stream with a byte
/// changed and maybe cut short.
fn wild_stream() -> impl Strategy<Value = (Vec<u8>, usize)> {
    prop_oneof![
        (prop::collection::vec(any::<u8>(), 0..200), 0..300usize),
        (valid_stream(), any::<Index>(), any::<u8>(), any::<Index>()).prop_map(
            |((mut s, max), at, byte, cut)| {
                if !s.is_empty() {
                    let i = at.index(s.len());
                    s[i] = byte;
                    s.truncate(cut.index(s.len() + 1));
                }
                (s, max)
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// RFC 9000 §16 both ways, and the shortest length by the table's ranges.
    #[test]
    fn varints_round_trip(value in prop_oneof![0..20_000u64, 0..=MAX_VARINT]) {
        let mut bytes = Vec::new();
        encode_varint(value, &mut bytes).unwrap();
        let shortest = if value < 1 << 6 {
            1
        } else if value < 1 << 14 {
            2
        } else if value < 1 << 30 {
            4
        } else {
            8
        };
        prop_assert_eq!(bytes.len(), shortest);
        prop_assert_eq!(varint_len(value), Some(shortest));
        prop_assert_eq!(ref_varint(&bytes), Some((value, shortest)));
        prop_assert_eq!(decode_varint(&bytes), Ok((value, shortest)));
    }

    /// Any bytes decode as the reference decodes them.
    #[test]
    fn varint_decode_matches_the_reference(bytes in prop::collection::vec(any::<u8>(), 0..10)) {
        match ref_varint(&bytes) {
            Some(v) => prop_assert_eq!(decode_varint(&bytes), Ok(v)),
            None => prop_assert!(decode_varint(&bytes).is_err()),
        }
    }

    /// Any DATAGRAM parses as the reference parses it.
    #[test]
    fn any_datagram_parses_as_the_reference(d in prop::collection::vec(any::<u8>(), 0..40)) {
        let got = parse_datagram(&d).map(|(f, p)| (f.value(), p.to_vec()));
        prop_assert_eq!(got, ref_datagram(&d));
    }

    /// Any stream bytes, in any chunking, read as the reference reads them.
    #[test]
    fn any_stream_reads_as_the_reference(
        (stream, max_packet) in wild_stream(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let got = read_stream(&chunks(&stream, &cuts), max_packet)?;
        prop_assert_eq!(got, ref_stream(&stream, max_packet));
    }

    /// What the encoders write reads back as what went in.
    #[test]
    fn encode_then_read_round_trips(
        flow in flow_value(),
        packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..8),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let flow_id = FlowId::new(flow).unwrap();
        let mut stream = Vec::new();
        encode_stream_header(flow_id, &mut stream);
        for p in &packets {
            encode_stream_packet(p, &mut stream).unwrap();
        }
        let want = Outcome { flow: Some(flow), packets: packets.clone(), end: Ok(()) };
        prop_assert_eq!(read_stream(&chunks(&stream, &cuts), 300)?, want);

        for p in &packets {
            let mut d = Vec::new();
            encode_datagram(flow_id, p, &mut d).unwrap();
            let (f, got) = parse_datagram(&d).unwrap();
            prop_assert_eq!(f, flow_id);
            prop_assert_eq!(got, &p[..]);
        }
    }
}
