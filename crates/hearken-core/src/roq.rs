//! RTP over QUIC (RoQ) framing, draft-ietf-avtcore-rtp-over-quic-14: the
//! bytes of DATAGRAMs and unidirectional streams, without the QUIC stack.
//!
//! Every DATAGRAM and every stream starts with a flow identifier (§5.1). A
//! DATAGRAM then holds exactly one RTP packet, with no length (§5.3); a
//! stream holds any number of `{length, packet}` pairs (§5.2.1). The shell
//! reads DATAGRAMs and stream chunks from its QUIC connection and hands them
//! here; what it gets back are flow ids and RTP packets, or a [`RoqError`]
//! that says which [`RoqErrorCode`] to close the stream or connection with.
//! RoQ sends RTP on unidirectional streams only (§5.2): a bidirectional one
//! never reaches this module, the shell refuses it with
//! [`RoqErrorCode::StreamCreationError`].
//!
//! **Why the variable-length integers (RFC 9000 §16) are hand-written.** This
//! crate depends on no network library, and the only ready-made coder in the
//! shell's stack, quinn-proto's, comes with the whole QUIC implementation.
//! The coding is a dozen lines, and the tests below check it against RFC 9000
//! itself.

use std::fmt;

use thiserror::Error;

/// The ALPN token of the draft this module implements. Only the published RFC
/// may use plain `"roq"`; a draft implementation appends `-` and its draft
/// number (§4.1), so peers of different drafts never talk past each other.
pub const ALPN: &[u8] = b"roq-14";

/// Largest value a QUIC variable-length integer holds: 2^62 - 1 (RFC 9000 §16).
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// Longest encoding of a variable-length integer, in bytes.
const MAX_VARINT_LEN: usize = 8;

/// Why RoQ data could not be framed or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RoqError {
    /// A value above [`MAX_VARINT`] has no variable-length encoding.
    #[error("{0} exceeds the largest QUIC variable-length integer (2^62 - 1)")]
    VarintOutOfRange(u64),
    /// A DATAGRAM ends inside its flow identifier.
    #[error("the data ends inside a variable-length integer")]
    TruncatedVarint,
    /// A DATAGRAM holds a flow identifier and nothing else, or a stream
    /// announces a packet of length 0: no RTP packet is empty.
    #[error("an empty RTP packet")]
    EmptyPacket,
    /// A stream announces a packet longer than the reader accepts.
    #[error("a stream packet of {len} bytes exceeds the limit of {max}")]
    PacketTooLarge {
        /// The announced length.
        len: u64,
        /// The reader's limit.
        max: usize,
    },
    /// A stream ended (FIN) before its flow identifier, or inside a length or
    /// a packet.
    #[error("the stream ended inside its flow identifier, a length or a packet")]
    TruncatedStream,
}

impl RoqError {
    /// The error code a receiver closes the connection or stops the stream
    /// with for this error (§7).
    ///
    /// Every framing fault of the peer is `ROQ_PACKET_ERROR` ("invalid
    /// payload format"); a value this side could not encode is its own fault,
    /// `ROQ_INTERNAL_ERROR`.
    pub fn code(&self) -> RoqErrorCode {
        match self {
            RoqError::VarintOutOfRange(_) => RoqErrorCode::InternalError,
            RoqError::TruncatedVarint
            | RoqError::EmptyPacket
            | RoqError::PacketTooLarge { .. }
            | RoqError::TruncatedStream => RoqErrorCode::PacketError,
        }
    }
}

/// The RoQ error codes (§7), for CONNECTION_CLOSE, RESET_STREAM and
/// STOP_SENDING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum RoqErrorCode {
    /// `ROQ_NO_ERROR` (0x00): closing without an error.
    NoError = 0x00,
    /// `ROQ_GENERAL_ERROR` (0x01): no more specific code fits.
    GeneralError = 0x01,
    /// `ROQ_INTERNAL_ERROR` (0x02): a fault in this RoQ stack.
    InternalError = 0x02,
    /// `ROQ_PACKET_ERROR` (0x03): invalid payload format (bad length, bad
    /// flow id encoding, non-RTP on an RTP flow).
    PacketError = 0x03,
    /// `ROQ_STREAM_CREATION_ERROR` (0x04): the peer opened a stream RoQ does
    /// not allow, such as a bidirectional one for RTP.
    StreamCreationError = 0x04,
    /// `ROQ_FRAME_CANCELLED` (0x05): a media frame is no longer wanted
    /// (STOP_SENDING) or no longer sent (RESET_STREAM).
    FrameCancelled = 0x05,
    /// `ROQ_UNKNOWN_FLOW_ID` (0x06): a flow identifier this endpoint cannot
    /// associate with an RTP stream.
    UnknownFlowId = 0x06,
    /// `ROQ_EXPECTATION_UNMET` (0x07): the QUIC connection does not meet what
    /// signaling set up (e.g. no DATAGRAM support).
    ExpectationUnmet = 0x07,
}

impl RoqErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [RoqErrorCode; 8] = [
        RoqErrorCode::NoError,
        RoqErrorCode::GeneralError,
        RoqErrorCode::InternalError,
        RoqErrorCode::PacketError,
        RoqErrorCode::StreamCreationError,
        RoqErrorCode::FrameCancelled,
        RoqErrorCode::UnknownFlowId,
        RoqErrorCode::ExpectationUnmet,
    ];

    /// The code's value on the wire.
    pub fn code(self) -> u64 {
        self as u64
    }

    /// The RoQ code with this value, if it is one: the code a peer closed
    /// with may be any 62-bit number.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The code's name in the draft, e.g. `ROQ_PACKET_ERROR`.
    pub fn name(self) -> &'static str {
        match self {
            RoqErrorCode::NoError => "ROQ_NO_ERROR",
            RoqErrorCode::GeneralError => "ROQ_GENERAL_ERROR",
            RoqErrorCode::InternalError => "ROQ_INTERNAL_ERROR",
            RoqErrorCode::PacketError => "ROQ_PACKET_ERROR",
            RoqErrorCode::StreamCreationError => "ROQ_STREAM_CREATION_ERROR",
            RoqErrorCode::FrameCancelled => "ROQ_FRAME_CANCELLED",
            RoqErrorCode::UnknownFlowId => "ROQ_UNKNOWN_FLOW_ID",
            RoqErrorCode::ExpectationUnmet => "ROQ_EXPECTATION_UNMET",
        }
    }
}

impl fmt::Display for RoqErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A RoQ flow identifier (§5.1): which RTP session a DATAGRAM or stream
/// belongs to. Always at most [`MAX_VARINT`], so it always has an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(u64);

impl FlowId {
    /// The flow id `value`, or [`RoqError::VarintOutOfRange`] above
    /// [`MAX_VARINT`].
    pub fn new(value: u64) -> Result<Self, RoqError> {
        if value > MAX_VARINT {
            return Err(RoqError::VarintOutOfRange(value));
        }
        Ok(FlowId(value))
    }

    /// The flow id as a number.
    pub fn value(self) -> u64 {
        self.0
    }
}

impl From<u32> for FlowId {
    /// Every `u32` is a valid flow id.
    fn from(value: u32) -> Self {
        FlowId(u64::from(value))
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// ---------------------------------------------------------------------------
// Variable-length integers (RFC 9000 §16).

/// Why a variable-length integer could not be decoded. Every byte string is
/// a valid encoding once it is long enough, so the only fault is too few
/// bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VarintError {
    /// The input ends before the integer does.
    #[error("a variable-length integer of {needed} bytes is incomplete")]
    Incomplete {
        /// Bytes the whole encoding takes: from the first byte's two top
        /// bits, or 1 when there is no first byte yet.
        needed: usize,
    },
}

/// Bytes of the shortest encoding of `value`, or `None` above [`MAX_VARINT`].
pub fn varint_len(value: u64) -> Option<usize> {
    match value {
        0..=63 => Some(1),
        64..=16_383 => Some(2),
        16_384..=1_073_741_823 => Some(4),
        1_073_741_824..=MAX_VARINT => Some(8),
        _ => None,
    }
}

/// Appends the shortest encoding of `value` to `out`; above [`MAX_VARINT`]
/// it is [`RoqError::VarintOutOfRange`] and `out` is unchanged.
pub fn encode_varint(value: u64, out: &mut Vec<u8>) -> Result<(), RoqError> {
    let len = varint_len(value).ok_or(RoqError::VarintOutOfRange(value))?;
    // The value fits in the low bits of `len` bytes with the top two free;
    // those two give the length: 0b00 = 1 byte, 0b01 = 2, 0b10 = 4, 0b11 = 8
    // (log2 of the length).
    let start = out.len();
    out.extend_from_slice(&value.to_be_bytes()[MAX_VARINT_LEN - len..]);
    out[start] |= (len.trailing_zeros() as u8) << 6;
    Ok(())
}

/// Decodes the variable-length integer at the start of `input`: its value
/// and the bytes it took. Non-minimal encodings are accepted, as RFC 9000
/// §16 allows.
pub fn decode_varint(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let &first = input.first().ok_or(VarintError::Incomplete { needed: 1 })?;
    let needed = encoded_len(first);
    let bytes = input
        .get(..needed)
        .ok_or(VarintError::Incomplete { needed })?;
    Ok((varint_value(bytes), needed))
}

/// Length of the encoding that starts with `first`.
fn encoded_len(first: u8) -> usize {
    1 << (first >> 6)
}

/// Value of a complete encoding (`bytes` is exactly its length).
fn varint_value(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .skip(1)
        .fold(u64::from(bytes[0] & 0x3f), |v, &b| (v << 8) | u64::from(b))
}

// ---------------------------------------------------------------------------
// DATAGRAMs (§5.3).

/// Splits a RoQ DATAGRAM into its flow id and its RTP packet.
///
/// Errors: [`RoqError::TruncatedVarint`] when the DATAGRAM ends inside the
/// flow id, [`RoqError::EmptyPacket`] when nothing follows it. The packet is
/// not checked to be RTP: that is the caller's parser's job.
pub fn parse_datagram(datagram: &[u8]) -> Result<(FlowId, &[u8]), RoqError> {
    let (flow, len) = decode_varint(datagram).map_err(|_| RoqError::TruncatedVarint)?;
    let packet = &datagram[len..];
    if packet.is_empty() {
        return Err(RoqError::EmptyPacket);
    }
    Ok((FlowId(flow), packet))
}

/// Appends the RoQ DATAGRAM carrying `rtp` on `flow` to `out`.
///
/// An empty `rtp` is [`RoqError::EmptyPacket`] (a receiver would refuse it)
/// and leaves `out` unchanged.
pub fn encode_datagram(flow: FlowId, rtp: &[u8], out: &mut Vec<u8>) -> Result<(), RoqError> {
    if rtp.is_empty() {
        return Err(RoqError::EmptyPacket);
    }
    encode_stream_header(flow, out);
    out.extend_from_slice(rtp);
    Ok(())
}

// ---------------------------------------------------------------------------
// Streams (§5.2).

/// Appends the start of a RoQ stream, its flow id, to `out`.
pub fn encode_stream_header(flow: FlowId, out: &mut Vec<u8>) {
    // A FlowId is at most MAX_VARINT by construction, so this cannot fail.
    let _ = encode_varint(flow.0, out);
}

/// Appends one RTP packet of a RoQ stream, its length then its bytes, to
/// `out`.
///
/// An empty `rtp` is [`RoqError::EmptyPacket`] (a receiver would refuse it)
/// and leaves `out` unchanged.
pub fn encode_stream_packet(rtp: &[u8], out: &mut Vec<u8>) -> Result<(), RoqError> {
    if rtp.is_empty() {
        return Err(RoqError::EmptyPacket);
    }
    let len = u64::try_from(rtp.len()).unwrap_or(u64::MAX);
    encode_varint(len, out)?;
    out.extend_from_slice(rtp);
    Ok(())
}

/// What a [`StreamReader`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// The stream's flow id: the first event, exactly once.
    Flow(FlowId),
    /// One complete RTP packet (never empty), borrowed from the input or the
    /// reader until the next read.
    Packet(&'a [u8]),
}

/// Where a [`StreamReader`] is in its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading the flow id.
    FlowId,
    /// Reading a packet's length (or at a packet boundary).
    Length,
    /// Reading a packet of this many bytes.
    Packet { len: usize },
    /// A framing error happened; every later call reports it again.
    Failed(RoqError),
}

/// An incremental reader of one unidirectional RoQ stream (§5.2.1): the flow
/// id, then `{length, RTP packet}` pairs.
///
/// Feed it the stream's bytes in whatever chunks QUIC delivers them with
/// [`StreamReader::read`]; a chunk may end anywhere, inside a varint
/// included. At the stream's FIN call [`StreamReader::finish`]. A stream
/// that was reset (RESET_STREAM) simply ends: drop the reader.
///
/// It buffers at most one packet and one varint: a packet that arrives whole
/// within a chunk is handed out straight from the chunk, a packet split
/// across chunks is gathered in a buffer of at most `max_packet` bytes, and
/// the bytes of a split varint in an 8-byte array. A length above
/// `max_packet` fails before anything is buffered, so a peer cannot make the
/// reader allocate more than that.
///
/// After an error the reader is spent: every later call returns the same
/// error, whose [`RoqError::code`] is what to stop the stream (or close the
/// connection) with.
#[derive(Debug, Clone)]
pub struct StreamReader {
    /// Longest packet accepted.
    max_packet: usize,
    state: State,
    /// The flow id, once read.
    flow: Option<FlowId>,
    /// The bytes so far of a varint split across chunks.
    varint: [u8; MAX_VARINT_LEN],
    /// How many bytes of `varint` are filled.
    varint_filled: usize,
    /// The bytes so far of a packet split across chunks; after such a packet
    /// is handed out, it stays here until the next read.
    packet: Vec<u8>,
    /// `packet` holds a packet already handed out.
    packet_handed_out: bool,
}

impl StreamReader {
    /// A reader of a new stream that refuses packets longer than
    /// `max_packet` bytes with [`RoqError::PacketTooLarge`]. RTP packets fit
    /// a UDP datagram, so 65 535 is a natural bound; an audio ingest can use
    /// far less.
    pub fn new(max_packet: usize) -> Self {
        StreamReader {
            max_packet,
            state: State::FlowId,
            flow: None,
            varint: [0; MAX_VARINT_LEN],
            varint_filled: 0,
            packet: Vec::new(),
            packet_handed_out: false,
        }
    }

    /// The stream's flow id, once read.
    pub fn flow(&self) -> Option<FlowId> {
        self.flow
    }

    /// Bytes the reader holds between calls: never more than `max_packet`
    /// plus one varint.
    pub fn buffered(&self) -> usize {
        self.packet.len() + self.varint_filled
    }

    /// Reads from `input` up to the next event and advances `input` past the
    /// bytes it consumed.
    ///
    /// Returns `Ok(None)` once `input` is used up (everything in it is then
    /// buffered), so a loop `while let Some(event) = reader.read(&mut
    /// chunk)? { … }` takes a whole chunk. A packet borrows either `input` or
    /// the reader, so it lives until the next call.
    pub fn read<'r, 'i: 'r>(
        &'r mut self,
        input: &mut &'i [u8],
    ) -> Result<Option<StreamEvent<'r>>, RoqError> {
        // The packet handed out from the buffer last time has been used.
        if self.packet_handed_out {
            self.packet.clear();
            self.packet_handed_out = false;
        }
        loop {
            match self.state {
                State::Failed(ref e) => return Err(e.clone()),
                State::FlowId => {
                    let Some(value) = self.take_varint(input) else {
                        return Ok(None);
                    };
                    let flow = FlowId(value);
                    self.flow = Some(flow);
                    self.state = State::Length;
                    return Ok(Some(StreamEvent::Flow(flow)));
                }
                State::Length => {
                    let Some(len) = self.take_varint(input) else {
                        return Ok(None);
                    };
                    if len == 0 {
                        return Err(self.fail(RoqError::EmptyPacket));
                    }
                    let max = self.max_packet;
                    let len = match usize::try_from(len) {
                        Ok(l) if l <= max => l,
                        _ => return Err(self.fail(RoqError::PacketTooLarge { len, max })),
                    };
                    self.state = State::Packet { len };
                }
                State::Packet { len } => {
                    if self.packet.is_empty() && input.len() >= len {
                        // The whole packet is in this chunk: no copy.
                        let (packet, rest) = input.split_at(len);
                        *input = rest;
                        self.state = State::Length;
                        return Ok(Some(StreamEvent::Packet(packet)));
                    }
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (len - self.packet.len()).min(input.len());
                    if self.packet.is_empty() {
                        // Only what the announced length needs, never more.
                        self.packet.reserve_exact(len);
                    }
                    self.packet.extend_from_slice(&input[..take]);
                    *input = &input[take..];
                    if self.packet.len() < len {
                        return Ok(None);
                    }
                    self.state = State::Length;
                    self.packet_handed_out = true;
                    return Ok(Some(StreamEvent::Packet(&self.packet)));
                }
            }
        }
    }

    /// Checks the stream ended (FIN) where it may: after the flow id and
    /// between packets. A stream that ends before its flow id is complete,
    /// or inside a length or a packet, is [`RoqError::TruncatedStream`]; a
    /// reader that already failed returns its error.
    ///
    /// A stream that ends right after its flow id, with no packet, is
    /// accepted: nothing was lost, and a sender may open a stream for a frame
    /// it then has nothing to send for.
    pub fn finish(&self) -> Result<(), RoqError> {
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            State::Length if self.varint_filled == 0 => Ok(()),
            State::FlowId | State::Length | State::Packet { .. } => Err(RoqError::TruncatedStream),
        }
    }

    /// Records `error` as the reader's end and returns it.
    fn fail(&mut self, error: RoqError) -> RoqError {
        self.state = State::Failed(error.clone());
        // Nothing buffered is of use any more.
        self.packet = Vec::new();
        self.varint_filled = 0;
        error
    }

    /// Takes one varint from `input`, gathering one split across chunks in
    /// `self.varint`. `None` when `input` ran out first (all of it is then
    /// gathered).
    fn take_varint(&mut self, input: &mut &[u8]) -> Option<u64> {
        if self.varint_filled == 0 {
            match decode_varint(input) {
                Ok((value, len)) => {
                    *input = &input[len..];
                    return Some(value);
                }
                Err(VarintError::Incomplete { .. }) => {
                    // Shorter than the varint, so at most 7 bytes.
                    self.varint[..input.len()].copy_from_slice(input);
                    self.varint_filled = input.len();
                    *input = &[];
                    return None;
                }
            }
        }
        let needed = encoded_len(self.varint[0]);
        let take = (needed - self.varint_filled).min(input.len());
        self.varint[self.varint_filled..self.varint_filled + take].copy_from_slice(&input[..take]);
        self.varint_filled += take;
        *input = &input[take..];
        if self.varint_filled < needed {
            return None;
        }
        self.varint_filled = 0;
        Some(varint_value(&self.varint[..needed]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varint(value, &mut out).unwrap();
        out
    }

    /// Every length boundary of RFC 9000 §16's table, with its encoding
    /// worked out by hand: the length's two bits (00, 01, 10, 11) on top of
    /// the value in 1, 2, 4 or 8 bytes.
    #[test]
    fn varint_boundaries() {
        let cases: [(u64, &[u8]); 8] = [
            (0, &[0x00]),
            (63, &[0x3f]),
            // 0x4000 | 64 = 0x4040.
            (64, &[0x40, 0x40]),
            // 0x4000 | 0x3fff.
            (16_383, &[0x7f, 0xff]),
            // 0x8000_0000 | 0x4000.
            (16_384, &[0x80, 0x00, 0x40, 0x00]),
            // 0x8000_0000 | 0x3fff_ffff.
            ((1 << 30) - 1, &[0xbf, 0xff, 0xff, 0xff]),
            // 0xc000_0000_0000_0000 | 0x4000_0000.
            (1 << 30, &[0xc0, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00]),
            ((1 << 62) - 1, &[0xff; 8]),
        ];
        for (value, bytes) in cases {
            assert_eq!(encoded(value), bytes, "encoding {value}");
            assert_eq!(varint_len(value), Some(bytes.len()), "length of {value}");
            assert_eq!(
                decode_varint(bytes),
                Ok((value, bytes.len())),
                "decoding {value}"
            );
        }
    }

    #[test]
    fn varint_above_2_pow_62_is_refused() {
        let mut out = vec![0xaa];
        assert_eq!(
            encode_varint(1 << 62, &mut out),
            Err(RoqError::VarintOutOfRange(1 << 62))
        );
        assert_eq!(
            encode_varint(u64::MAX, &mut out),
            Err(RoqError::VarintOutOfRange(u64::MAX))
        );
        assert_eq!(out, [0xaa], "out is untouched");
        assert_eq!(varint_len(1 << 62), None);
        assert_eq!(
            FlowId::new(1 << 62),
            Err(RoqError::VarintOutOfRange(1 << 62))
        );
        assert_eq!(
            FlowId::new((1 << 62) - 1).map(FlowId::value),
            Ok((1 << 62) - 1)
        );
    }

    /// RFC 9000 Appendix A.1's sample decodings.
    #[test]
    fn varint_rfc_9000_examples() {
        let cases: [(&[u8], u64); 5] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
            // Two bytes for 37: not minimal, still valid.
            (&[0x40, 0x25], 37),
        ];
        for (bytes, value) in cases {
            assert_eq!(
                decode_varint(bytes),
                Ok((value, bytes.len())),
                "{bytes:02x?}"
            );
        }
        // The encoder picks the shortest form, so the first four round-trip.
        for (bytes, value) in &cases[..4] {
            assert_eq!(encoded(*value), *bytes);
        }
    }

    #[test]
    fn varint_decode_reads_only_its_bytes_and_reports_what_it_needs() {
        assert_eq!(decode_varint(&[0x25, 0xff, 0xff]), Ok((37, 1)));
        assert_eq!(decode_varint(&[0x7b, 0xbd, 0x01]), Ok((15_293, 2)));
        assert_eq!(
            decode_varint(&[]),
            Err(VarintError::Incomplete { needed: 1 })
        );
        assert_eq!(
            decode_varint(&[0x40]),
            Err(VarintError::Incomplete { needed: 2 })
        );
        assert_eq!(
            decode_varint(&[0x9d, 0x7f, 0x3e]),
            Err(VarintError::Incomplete { needed: 4 })
        );
        assert_eq!(
            decode_varint(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8]),
            Err(VarintError::Incomplete { needed: 8 })
        );
    }

    #[test]
    fn datagram_parse() {
        let d = [0x05, 0x80, 0x60, 0x00, 0x01];
        assert_eq!(
            parse_datagram(&d),
            Ok((FlowId(5), &[0x80, 0x60, 0x00, 0x01][..]))
        );
        // Flow 16 384 takes four bytes; a non-minimal flow id is accepted.
        let d = [0x80, 0x00, 0x40, 0x00, 0x80];
        assert_eq!(parse_datagram(&d), Ok((FlowId(16_384), &[0x80][..])));
        let d = [0x40, 0x05, 0x80];
        assert_eq!(parse_datagram(&d), Ok((FlowId(5), &[0x80][..])));
    }

    #[test]
    fn datagram_errors() {
        assert_eq!(parse_datagram(&[]), Err(RoqError::TruncatedVarint));
        assert_eq!(parse_datagram(&[0x40]), Err(RoqError::TruncatedVarint));
        assert_eq!(
            parse_datagram(&[0x80, 0x00, 0x40]),
            Err(RoqError::TruncatedVarint)
        );
        assert_eq!(parse_datagram(&[0x05]), Err(RoqError::EmptyPacket));
        assert_eq!(
            parse_datagram(&[0x80, 0x00, 0x40, 0x00]),
            Err(RoqError::EmptyPacket)
        );
        for e in [RoqError::TruncatedVarint, RoqError::EmptyPacket] {
            assert_eq!(e.code(), RoqErrorCode::PacketError);
        }
    }

    #[test]
    fn datagram_encode() {
        let mut out = Vec::new();
        encode_datagram(FlowId(16_384), &[0x80, 0x60], &mut out).unwrap();
        assert_eq!(out, [0x80, 0x00, 0x40, 0x00, 0x80, 0x60]);
        out.clear();
        encode_datagram(FlowId::from(7u32), &[0x80], &mut out).unwrap();
        assert_eq!(out, [0x07, 0x80]);
        assert_eq!(
            encode_datagram(FlowId(7), &[], &mut out),
            Err(RoqError::EmptyPacket)
        );
        assert_eq!(out, [0x07, 0x80], "out is untouched");
    }

    /// Three packets on flow 16 384, built by hand from §5.2.1: the flow id
    /// (4 bytes), then each length (12 in 1 byte, 70 in 2: 0x4000 | 70 =
    /// 0x4046, 3 in 1 byte) and packet.
    fn three_packets() -> (Vec<u8>, Vec<Vec<u8>>) {
        let p1: Vec<u8> = (0..12).collect();
        let p2: Vec<u8> = (100..170).collect();
        let p3 = vec![0xfd, 0xfe, 0xff];
        let mut stream = vec![0x80, 0x00, 0x40, 0x00];
        stream.push(0x0c);
        stream.extend(&p1);
        stream.extend([0x40, 0x46]);
        stream.extend(&p2);
        stream.push(0x03);
        stream.extend(&p3);
        (stream, vec![p1, p2, p3])
    }

    /// What the reader made of a stream: the flow id and the packets.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Read {
        flows: Vec<FlowId>,
        packets: Vec<Vec<u8>>,
    }

    fn read_chunks<'a>(
        reader: &mut StreamReader,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Read, RoqError> {
        let mut read = Read::default();
        for mut chunk in chunks {
            while let Some(event) = reader.read(&mut chunk)? {
                match event {
                    StreamEvent::Flow(f) => read.flows.push(f),
                    StreamEvent::Packet(p) => read.packets.push(p.to_vec()),
                }
            }
            assert!(chunk.is_empty(), "a read loop takes the whole chunk");
            assert!(reader.buffered() <= reader.max_packet + MAX_VARINT_LEN);
        }
        Ok(read)
    }

    fn expected(packets: &[Vec<u8>]) -> Read {
        Read {
            flows: vec![FlowId(16_384)],
            packets: packets.to_vec(),
        }
    }

    #[test]
    fn stream_encoders_write_the_hand_built_stream() {
        let (stream, packets) = three_packets();
        let mut out = Vec::new();
        encode_stream_header(FlowId(16_384), &mut out);
        for p in &packets {
            encode_stream_packet(p, &mut out).unwrap();
        }
        assert_eq!(out, stream);
        assert_eq!(
            encode_stream_packet(&[], &mut out),
            Err(RoqError::EmptyPacket)
        );
        assert_eq!(out, stream, "out is untouched");
    }

    #[test]
    fn stream_in_one_chunk_and_byte_by_byte() {
        let (stream, packets) = three_packets();
        let mut r = StreamReader::new(100);
        assert_eq!(read_chunks(&mut r, [&stream[..]]), Ok(expected(&packets)));
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(r.flow(), Some(FlowId(16_384)));

        let mut r = StreamReader::new(100);
        let bytes = stream.chunks(1);
        assert_eq!(read_chunks(&mut r, bytes), Ok(expected(&packets)));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn stream_in_every_split_of_two_and_three_chunks() {
        let (stream, packets) = three_packets();
        for a in 0..=stream.len() {
            let mut r = StreamReader::new(100);
            let chunks = [&stream[..a], &stream[a..]];
            assert_eq!(read_chunks(&mut r, chunks), Ok(expected(&packets)), "{a}");
            assert_eq!(r.finish(), Ok(()));
            for b in a..=stream.len() {
                let mut r = StreamReader::new(100);
                let chunks = [&stream[..a], &stream[a..b], &stream[b..]];
                assert_eq!(
                    read_chunks(&mut r, chunks),
                    Ok(expected(&packets)),
                    "{a} {b}"
                );
                assert_eq!(r.finish(), Ok(()));
            }
        }
    }

    /// FIN after every prefix: clean only after the flow id (4 bytes) and
    /// after each packet (4 + 1 + 12 = 17, 17 + 2 + 70 = 89, 89 + 1 + 3 = 93).
    #[test]
    fn stream_finish_is_clean_only_at_packet_boundaries() {
        let (stream, _) = three_packets();
        assert_eq!(stream.len(), 93);
        for end in 0..=stream.len() {
            let mut r = StreamReader::new(100);
            read_chunks(&mut r, [&stream[..end]]).unwrap();
            let want = if [4, 17, 89, 93].contains(&end) {
                Ok(())
            } else {
                Err(RoqError::TruncatedStream)
            };
            assert_eq!(r.finish(), want, "FIN after {end} bytes");
        }
        assert_eq!(RoqError::TruncatedStream.code(), RoqErrorCode::PacketError);
    }

    #[test]
    fn stream_length_above_the_limit_is_refused() {
        // Flow 0, a packet of exactly 100 bytes (0x4064), then one of 101
        // (0x4065).
        let mut stream = vec![0x00, 0x40, 0x64];
        stream.extend([0x80; 100]);
        stream.extend([0x40, 0x65]);
        let mut r = StreamReader::new(100);
        let err = RoqError::PacketTooLarge { len: 101, max: 100 };
        assert_eq!(read_chunks(&mut r, [&stream[..]]), Err(err.clone()));
        assert_eq!(err.code(), RoqErrorCode::PacketError);
        // The reader is spent: more input and FIN report the same error.
        let mut more: &[u8] = &[0x01, 0x80];
        assert_eq!(r.read(&mut more), Err(err.clone()));
        assert_eq!(r.finish(), Err(err));
        assert_eq!(r.buffered(), 0);

        // The largest length there is fails before anything is buffered.
        let mut r = StreamReader::new(100);
        let mut stream: &[u8] = &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80];
        assert_eq!(r.read(&mut stream), Ok(Some(StreamEvent::Flow(FlowId(0)))));
        assert_eq!(
            r.read(&mut stream),
            Err(RoqError::PacketTooLarge {
                len: (1 << 62) - 1,
                max: 100
            })
        );
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn stream_zero_length_is_refused() {
        for stream in [&[0x00, 0x00][..], &[0x07, 0x01, 0x80, 0x40, 0x00]] {
            let mut r = StreamReader::new(100);
            assert_eq!(
                read_chunks(&mut r, [stream]),
                Err(RoqError::EmptyPacket),
                "{stream:02x?}"
            );
            assert_eq!(r.finish(), Err(RoqError::EmptyPacket));
        }
    }

    /// A packet split across chunks is buffered, and never more than the
    /// packet and a varint.
    #[test]
    fn stream_buffers_at_most_one_packet_and_a_varint() {
        let mut stream = vec![0x00, 0x40, 0x64];
        stream.extend([0x80; 100]);
        // Half of a 2-byte length.
        stream.push(0x40);
        let mut r = StreamReader::new(100);
        let mut input = &stream[..];
        assert_eq!(r.read(&mut input), Ok(Some(StreamEvent::Flow(FlowId(0)))));
        // All but the last byte of the packet: buffered.
        let mut first = &input[..101];
        assert_eq!(r.read(&mut first), Ok(None));
        assert_eq!(r.buffered(), 99);
        let mut rest = &input[101..];
        assert_eq!(
            r.read(&mut rest),
            Ok(Some(StreamEvent::Packet(&[0x80; 100])))
        );
        assert_eq!(r.read(&mut rest), Ok(None));
        // The handed-out packet is dropped; the half length is kept.
        assert_eq!(r.buffered(), 1);
        assert_eq!(r.finish(), Err(RoqError::TruncatedStream));
    }

    #[test]
    fn stream_without_flow_id_is_truncated() {
        let r = StreamReader::new(100);
        assert_eq!(r.finish(), Err(RoqError::TruncatedStream));
        let mut r = StreamReader::new(100);
        let mut input: &[u8] = &[0x40];
        assert_eq!(r.read(&mut input), Ok(None));
        assert_eq!(r.flow(), None);
        assert_eq!(r.finish(), Err(RoqError::TruncatedStream));
    }

    /// The values and names of §7.
    #[test]
    fn error_codes() {
        let table = [
            (0x00, "ROQ_NO_ERROR"),
            (0x01, "ROQ_GENERAL_ERROR"),
            (0x02, "ROQ_INTERNAL_ERROR"),
            (0x03, "ROQ_PACKET_ERROR"),
            (0x04, "ROQ_STREAM_CREATION_ERROR"),
            (0x05, "ROQ_FRAME_CANCELLED"),
            (0x06, "ROQ_UNKNOWN_FLOW_ID"),
            (0x07, "ROQ_EXPECTATION_UNMET"),
        ];
        for (code, (value, name)) in RoqErrorCode::ALL.into_iter().zip(table) {
            assert_eq!(code.code(), value);
            assert_eq!(code.to_string(), name);
            assert_eq!(RoqErrorCode::from_code(value), Some(code));
        }
        assert_eq!(RoqErrorCode::from_code(0x08), None);
        assert_eq!(RoqErrorCode::PacketError.code(), 3);
        assert_eq!(
            RoqError::VarintOutOfRange(1 << 62).code(),
            RoqErrorCode::InternalError
        );
    }

    /// §4.1: "roq", a dash and the draft number.
    #[test]
    fn alpn_names_draft_14() {
        assert_eq!(ALPN, b"roq-14");
    }

    #[test]
    fn flow_id_display() {
        assert_eq!(FlowId(16_384).to_string(), "16384");
    }
}
