//! Containerized audio: an Ogg Opus stream sent without `encoding`, as
//! Deepgram accepts it. The fake demuxes the pages as they arrive (across
//! websocket messages), checks each page's CRC, and decodes the packets to
//! 16 kHz mono `linear16`, which the transcriber then hears like any other
//! stream.
//!
//! Hand-written because the `ogg` crate's reader wants a `Read + Seek` source
//! holding the whole stream, and this one arrives in pieces.

/// Why a container stream cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OggError {
    /// The bytes are not an Ogg page.
    #[error("not an Ogg stream (no OggS capture pattern)")]
    NotOgg,
    /// A page failed its CRC.
    #[error("Ogg page {0} failed its CRC")]
    BadCrc(u32),
    /// The first packet is not an OpusHead.
    #[error("the Ogg stream does not start with OpusHead")]
    NotOpus,
    /// libopus refused a packet.
    #[error("undecodable Opus packet: {0}")]
    Decode(String),
}

/// Sample rate the decoded audio is handed on at.
pub const DECODED_RATE: u32 = 16_000;

/// Demuxes and decodes one Ogg Opus stream.
pub struct OggOpusDecoder {
    /// Bytes not yet forming a whole page.
    buffer: Vec<u8>,
    /// A packet continued on the next page.
    partial: Vec<u8>,
    packets_seen: u64,
    decoder: opus::Decoder,
    pcm: Vec<i16>,
}

impl std::fmt::Debug for OggOpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusDecoder")
            .field("buffered", &self.buffer.len())
            .field("packets_seen", &self.packets_seen)
            .finish()
    }
}

impl OggOpusDecoder {
    /// A decoder for a new stream.
    pub fn new() -> Result<Self, OggError> {
        Ok(Self {
            buffer: Vec::new(),
            partial: Vec::new(),
            packets_seen: 0,
            decoder: opus::Decoder::new(DECODED_RATE, opus::Channels::Mono)
                .map_err(|e| OggError::Decode(e.to_string()))?,
            // 120 ms at 16 kHz: the longest Opus packet.
            pcm: vec![0; 1920],
        })
    }

    /// Takes the next bytes of the stream; returns the `linear16` audio of
    /// the pages they completed.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<Vec<u8>, OggError> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(len) = page_length(&self.buffer)? {
            let page: Vec<u8> = self.buffer.drain(..len).collect();
            self.handle_page(&page, &mut out)?;
        }
        Ok(out)
    }

    fn handle_page(&mut self, page: &[u8], out: &mut Vec<u8>) -> Result<(), OggError> {
        let sequence = u32::from_le_bytes([page[18], page[19], page[20], page[21]]);
        let mut check = page.to_vec();
        check[22..26].fill(0);
        if crc32(&check) != u32::from_le_bytes([page[22], page[23], page[24], page[25]]) {
            return Err(OggError::BadCrc(sequence));
        }
        let segments = usize::from(page[26]);
        let lacing = &page[27..27 + segments];
        let mut body = &page[27 + segments..];
        for &lace in lacing {
            let (part, rest) = body.split_at(usize::from(lace));
            self.partial.extend_from_slice(part);
            body = rest;
            if lace < 255 {
                let packet = std::mem::take(&mut self.partial);
                self.handle_packet(&packet, out)?;
            }
        }
        Ok(())
    }

    fn handle_packet(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), OggError> {
        self.packets_seen += 1;
        match self.packets_seen {
            1 if packet.starts_with(b"OpusHead") => Ok(()),
            1 => Err(OggError::NotOpus),
            // OpusTags.
            2 => Ok(()),
            _ => {
                let n = self
                    .decoder
                    .decode(packet, &mut self.pcm, false)
                    .map_err(|e| OggError::Decode(e.to_string()))?;
                out.extend(self.pcm[..n].iter().flat_map(|s| s.to_le_bytes()));
                Ok(())
            }
        }
    }
}

/// The length of the whole page at the start of `buffer`, once it is all
/// there.
fn page_length(buffer: &[u8]) -> Result<Option<usize>, OggError> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    if &buffer[..4] != b"OggS" {
        return Err(OggError::NotOgg);
    }
    if buffer.len() < 27 {
        return Ok(None);
    }
    let segments = usize::from(buffer[26]);
    if buffer.len() < 27 + segments {
        return Ok(None);
    }
    let body: usize = buffer[27..27 + segments]
        .iter()
        .map(|&l| usize::from(l))
        .sum();
    let len = 27 + segments + body;
    Ok((buffer.len() >= len).then_some(len))
}

/// The Ogg CRC-32 (polynomial 0x04c11db7, no reflection, zero start).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in bytes {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_ogg_are_refused() {
        let mut d = OggOpusDecoder::new().expect("decoder");
        assert_eq!(d.handle_bytes(b"RIFF....WAVE"), Err(OggError::NotOgg));
    }

    /// A stream written by the `ogg` crate (an independent muxer), fed in
    /// awkward pieces, decodes to the right amount of audio.
    #[test]
    fn a_stream_from_another_muxer_decodes_across_message_boundaries() {
        use ogg::writing::{PacketWriteEndInfo, PacketWriter};
        let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .expect("encoder");
        let tone: Vec<i16> = (0..960)
            .map(|i| ((i as f64 * 0.05).sin() * 8000.0) as i16)
            .collect();
        let mut bytes = Vec::new();
        {
            let mut w = PacketWriter::new(&mut bytes);
            let mut head = b"OpusHead".to_vec();
            head.extend_from_slice(&[1, 1, 0, 0, 0x80, 0xbb, 0, 0, 0, 0, 0]);
            w.write_packet(head, 7, PacketWriteEndInfo::EndPage, 0)
                .expect("head");
            w.write_packet(
                b"OpusTags\0\0\0\0\0\0\0\0".to_vec(),
                7,
                PacketWriteEndInfo::EndPage,
                0,
            )
            .expect("tags");
            for i in 1..=50u64 {
                let packet = encoder.encode_vec(&tone, 400).expect("encode");
                let end = if i % 10 == 0 {
                    PacketWriteEndInfo::EndPage
                } else {
                    PacketWriteEndInfo::NormalPacket
                };
                w.write_packet(packet, 7, end, i * 960).expect("packet");
            }
        }
        let mut d = OggOpusDecoder::new().expect("decoder");
        let mut pcm = Vec::new();
        for piece in bytes.chunks(37) {
            pcm.extend(d.handle_bytes(piece).expect("valid stream"));
        }
        // 50 packets of 20 ms at 16 kHz, two bytes a sample.
        assert_eq!(pcm.len(), 50 * 320 * 2);
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let mut d = OggOpusDecoder::new().expect("decoder");
        assert!(matches!(d.handle_bytes(&corrupt), Err(OggError::BadCrc(_))));
    }
}
