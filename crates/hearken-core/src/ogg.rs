//! Ogg Opus muxing into an in-memory buffer (RFC 3533 pages, RFC 7845 headers).
//!
//! Hand-written rather than built on the `ogg` crate: its writer closes a page
//! only when a packet is written with `EndPage`/`EndStream`, so it cannot close
//! a page on a timer after the fact. Recordings must be flushed at least once a
//! second even when packets stop (DTX), so we assemble pages ourselves. The
//! shell appends [`OggOpusWriter::poll_output`] to a file.

use thiserror::Error;

/// Most lacing values (segments) one page may carry.
const MAX_SEGMENTS: usize = 255;

/// Body size at which an open page is closed, so pages (and what a crash can
/// lose) stay small.
const PAGE_BODY_TARGET: usize = 4096;

/// Page header flag: the page begins with the rest of a packet.
const FLAG_CONTINUED: u8 = 0x01;
/// Page header flag: first page of the logical stream.
const FLAG_BOS: u8 = 0x02;
/// Page header flag: last page of the logical stream.
const FLAG_EOS: u8 = 0x04;

/// Granule position of a page on which no packet completes (-1).
const NO_GRANULE: u64 = u64::MAX;

/// The Opus identification header (RFC 7845 §5.1), channel mapping family 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channels: 1 or 2 for mapping family 0.
    pub channels: u8,
    /// Samples at 48 kHz to decode and discard at the start.
    pub pre_skip: u16,
    /// Sample rate of the original input, informational only.
    pub input_sample_rate: u32,
    /// Gain to apply on output, Q7.8 dB.
    pub output_gain: i16,
}

impl OpusHead {
    /// Length of a family 0 header.
    pub const LEN: usize = 19;

    /// Mono with no pre-skip: the decoded length of the stream is exactly
    /// the sum of its packets' lengths, so a transcription backend's stream
    /// time counts precisely the samples sent to it.
    pub const EXACT_MONO: Self = Self {
        channels: 1,
        pre_skip: 0,
        input_sample_rate: 48_000,
        output_gain: 0,
    };

    /// Serializes the header packet.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(b"OpusHead");
        out[8] = 1; // version
        out[9] = self.channels;
        out[10..12].copy_from_slice(&self.pre_skip.to_le_bytes());
        out[12..16].copy_from_slice(&self.input_sample_rate.to_le_bytes());
        out[16..18].copy_from_slice(&self.output_gain.to_le_bytes());
        out[18] = 0; // mapping family
        out
    }
}

/// Why the writer refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OggWriteError {
    /// The stream was already closed with [`OggOpusWriter::finish`].
    #[error("Ogg stream already finished")]
    Finished,
}

/// Writes one Ogg Opus logical stream into an in-memory buffer.
///
/// Granule positions follow RFC 7845 §4: a page's granule is the count of
/// samples of all packets completed on it and before, pre-skip included
/// (the pre-skip samples are the first samples of the pushed audio).
#[derive(Debug)]
pub struct OggOpusWriter {
    serial: u32,
    /// Sequence number of the next page; also the count of pages written.
    sequence: u32,
    /// Finished pages not yet taken by the shell.
    out: Vec<u8>,
    /// Lacing values of the open page.
    lacing: Vec<u8>,
    /// Body of the open page.
    body: Vec<u8>,
    /// Whether the open page begins with the rest of a packet.
    continued: bool,
    /// Whether some packet completes on the open page.
    completes: bool,
    /// Samples of all packets pushed so far.
    granule: u64,
    /// Samples of the packets completed on the open page.
    unflushed: u64,
    finished: bool,
}

impl OggOpusWriter {
    /// Starts a stream: emits the BOS page holding `head` alone and the
    /// OpusTags page(s), both with granule 0.
    pub fn new(serial: u32, head: &OpusHead, vendor: &str, comments: &[(&str, &str)]) -> Self {
        let mut writer = Self {
            serial,
            sequence: 0,
            out: Vec::new(),
            lacing: Vec::new(),
            body: Vec::new(),
            continued: false,
            completes: false,
            granule: 0,
            unflushed: 0,
            finished: false,
        };
        writer.write_packet(&head.to_bytes(), 0);
        writer.close_page(false);
        writer.write_packet(&opus_tags(vendor, comments), 0);
        writer.close_page(false);
        writer
    }

    /// Appends a packet of `samples` samples to the open page.
    ///
    /// The open page is closed first if the packet would not fit; a packet
    /// longer than a page continues on the next ones.
    pub fn push_packet(&mut self, packet: &[u8], samples: u32) -> Result<(), OggWriteError> {
        if self.finished {
            return Err(OggWriteError::Finished);
        }
        self.write_packet(packet, samples);
        Ok(())
    }

    /// Closes the open page if it holds any packet; no-op otherwise.
    pub fn flush(&mut self) {
        if !self.finished && !self.lacing.is_empty() {
            self.close_page(false);
        }
    }

    /// Ends the stream: the last page carries the EOS flag. Without an open
    /// packet an empty EOS page is written. Later calls do nothing.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        // An empty page completes no packet but keeps the current granule,
        // so the stream's last granule stays the true length.
        self.completes = true;
        self.close_page(true);
        self.finished = true;
    }

    /// Drains the bytes of the pages closed so far.
    pub fn poll_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Samples of all packets pushed so far, pre-skip included: the granule
    /// the open page will carry when it closes.
    pub fn granule_position(&self) -> u64 {
        self.granule
    }

    /// Samples of the packets on the open page, which a crash would lose.
    pub fn unflushed_samples(&self) -> u64 {
        self.unflushed
    }

    /// Pages closed so far, headers included.
    pub fn pages_written(&self) -> u32 {
        self.sequence
    }

    /// Whether [`finish`](Self::finish) was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn write_packet(&mut self, packet: &[u8], samples: u32) {
        // A packet of n bytes takes n / 255 + 1 lacing values; the last is < 255.
        let segments = packet.len() / 255 + 1;
        if !self.lacing.is_empty() && self.lacing.len() + segments > MAX_SEGMENTS {
            self.close_page(false);
        }
        for i in 0..segments {
            if self.lacing.len() == MAX_SEGMENTS {
                // The next page starts with the continued flag (see close_page).
                self.close_page(false);
            }
            // Segment i is bytes [255 i, 255 (i + 1)) clipped to the packet;
            // the last one is shorter than 255, possibly empty.
            let start = (i * 255).min(packet.len());
            let end = (start + 255).min(packet.len());
            let chunk = packet.get(start..end).unwrap_or_default();
            // chunk.len() <= 255 by construction.
            self.lacing.push(chunk.len() as u8);
            self.body.extend_from_slice(chunk);
        }
        self.granule = self.granule.saturating_add(u64::from(samples));
        self.unflushed = self.unflushed.saturating_add(u64::from(samples));
        self.completes = true;
        if self.body.len() >= PAGE_BODY_TARGET {
            self.close_page(false);
        }
    }

    /// Serializes the open page into the output and starts a new one.
    fn close_page(&mut self, eos: bool) {
        let mut flags = 0;
        if self.continued {
            flags |= FLAG_CONTINUED;
        }
        if self.sequence == 0 {
            flags |= FLAG_BOS;
        }
        if eos {
            flags |= FLAG_EOS;
        }
        let granule = if self.completes {
            self.granule
        } else {
            NO_GRANULE
        };
        let start = self.out.len();
        self.out.extend_from_slice(b"OggS");
        self.out.push(0); // stream structure version
        self.out.push(flags);
        self.out.extend_from_slice(&granule.to_le_bytes());
        self.out.extend_from_slice(&self.serial.to_le_bytes());
        self.out.extend_from_slice(&self.sequence.to_le_bytes());
        self.out.extend_from_slice(&[0; 4]); // CRC, patched below
        // write_packet keeps lacing.len() <= MAX_SEGMENTS = 255.
        self.out.push(self.lacing.len() as u8);
        self.out.extend_from_slice(&self.lacing);
        self.out.extend_from_slice(&self.body);
        let crc = crc32(&self.out[start..]);
        self.out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());

        self.sequence = self.sequence.wrapping_add(1);
        // A page ending in a 255 lacing value leaves its packet unfinished.
        self.continued = self.lacing.last() == Some(&255);
        self.lacing.clear();
        self.body.clear();
        self.completes = false;
        self.unflushed = 0;
    }
}

/// Serializes the OpusTags header (RFC 7845 §5.2).
fn opus_tags(vendor: &str, comments: &[(&str, &str)]) -> Vec<u8> {
    // Lengths beyond u32 cannot occur for real tags; saturate rather than panic.
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(b"OpusTags");
    out.extend_from_slice(&len32(vendor.len()));
    out.extend_from_slice(vendor.as_bytes());
    out.extend_from_slice(&len32(comments.len()));
    for (key, value) in comments {
        out.extend_from_slice(&len32(key.len() + 1 + value.len()));
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// CRC-32 of the Ogg page checksum: poly 0x04C11DB7, init 0, unreflected,
/// no final xor.
const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04C1_1DB7
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
}

pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32_of(bytes.iter().copied())
}

fn crc32_of(bytes: impl Iterator<Item = u8>) -> u32 {
    bytes.fold(0u32, |crc, b| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

/// Length of an Ogg page header before its lacing values.
const PAGE_HEADER_LEN: usize = 27;

/// What [`scan_pages`] found: how much of a file is whole, valid pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageScan {
    /// Bytes from the start that are whole pages with a matching CRC.
    pub whole_len: usize,
    /// Whole pages.
    pub pages: usize,
    /// Where the last whole page starts.
    pub last_page_start: Option<usize>,
    /// The last granule position a whole page after the first gives (pages
    /// on which no packet completes give none).
    pub last_granule: Option<u64>,
    /// Whether the last whole page ends the stream.
    pub eos: bool,
    /// The Opus pre-skip, when the first page is an `OpusHead`.
    pub pre_skip: Option<u16>,
    /// The stream's serial number (of the first page).
    pub serial: u32,
    /// The sequence number of the last whole page.
    pub last_sequence: u32,
}

impl PageScan {
    /// Seconds of audio the whole pages hold (48 kHz granules less the
    /// pre-skip); zero without an `OpusHead`.
    pub fn opus_seconds(&self) -> f64 {
        match (self.pre_skip, self.last_granule) {
            (Some(pre_skip), Some(granule)) => {
                granule.saturating_sub(u64::from(pre_skip)) as f64 / 48_000.0
            }
            _ => 0.0,
        }
    }
}

/// Walks `bytes` page by page from the start and stops at the first that
/// is cut short or not a valid page (capture pattern, version 0, CRC): what
/// a crash in the middle of an append leaves at the end of a recording.
/// Hand-written because the `ogg` crate reads packets, not page bounds.
pub fn scan_pages(bytes: &[u8]) -> PageScan {
    let mut scan = PageScan::default();
    let mut at = 0;
    while let Some(page) = bytes.get(at..) {
        let Some(header) = page.get(..PAGE_HEADER_LEN) else {
            break;
        };
        if &header[..4] != b"OggS" || header[4] != 0 {
            break;
        }
        let segments = usize::from(header[26]);
        let Some(lacing) = page.get(PAGE_HEADER_LEN..PAGE_HEADER_LEN + segments) else {
            break;
        };
        let body: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let Some(page) = page.get(..PAGE_HEADER_LEN + segments + body) else {
            break;
        };
        let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
        if page_crc(page) != stored {
            break;
        }
        scan.last_sequence = u32::from_le_bytes([page[18], page[19], page[20], page[21]]);
        if scan.pages == 0 {
            scan.serial = u32::from_le_bytes([page[14], page[15], page[16], page[17]]);
            let first = &page[PAGE_HEADER_LEN + segments..];
            if first.len() >= 12 && first.starts_with(b"OpusHead") {
                scan.pre_skip = Some(u16::from_le_bytes([first[10], first[11]]));
            }
        }
        let granule = u64::from_le_bytes([
            page[6], page[7], page[8], page[9], page[10], page[11], page[12], page[13],
        ]);
        if granule != NO_GRANULE && scan.pages > 0 {
            scan.last_granule = Some(granule);
        }
        scan.eos = page[5] & FLAG_EOS != 0;
        scan.last_page_start = Some(at);
        scan.pages += 1;
        at += page.len();
        scan.whole_len = at;
    }
    scan
}

/// The page that ends a stream [`scan_pages`] found open: empty, with the
/// EOS flag, the stream's serial, the next sequence number and the last
/// granule, as [`OggOpusWriter::finish`] ends one. So a recording a crash
/// cut short ends the way a closed one does. `None` when the scan found no
/// page, or the stream has ended already.
pub fn end_of_stream_page(scan: &PageScan) -> Option<Vec<u8>> {
    if scan.pages == 0 || scan.eos {
        return None;
    }
    let mut page = Vec::with_capacity(PAGE_HEADER_LEN);
    page.extend_from_slice(b"OggS");
    page.push(0);
    page.push(FLAG_EOS);
    page.extend_from_slice(&scan.last_granule.unwrap_or(0).to_le_bytes());
    page.extend_from_slice(&scan.serial.to_le_bytes());
    page.extend_from_slice(&scan.last_sequence.wrapping_add(1).to_le_bytes());
    page.extend_from_slice(&[0; 4]);
    page.push(0);
    let crc = crc32(&page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    Some(page)
}

/// The CRC of a page, computed with its CRC field as zero.
fn page_crc(page: &[u8]) -> u32 {
    let zero = [0u8; 4];
    crc32_of(page[..22].iter().chain(&zero).chain(&page[26..]).copied())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    /// One page as laid out in the bytes, parsed independently of the writer.
    #[derive(Debug, Clone)]
    pub(crate) struct Page {
        pub end: usize,
        pub flags: u8,
        pub granule: u64,
        pub serial: u32,
        pub sequence: u32,
        pub lacing: Vec<u8>,
    }

    impl Page {
        /// Packets that complete on this page.
        pub fn completed(&self) -> usize {
            self.lacing.iter().filter(|&&l| l < 255).count()
        }
        pub fn body_len(&self) -> usize {
            self.lacing.iter().map(|&l| usize::from(l)).sum()
        }
    }

    /// Splits a stream into pages (no CRC check: the `ogg` crate does that).
    pub(crate) fn pages(bytes: &[u8]) -> Vec<Page> {
        let mut pages = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let h = &bytes[at..];
            assert_eq!(&h[..4], b"OggS");
            let nsegs = usize::from(h[26]);
            let lacing = h[27..27 + nsegs].to_vec();
            let body: usize = lacing.iter().map(|&l| usize::from(l)).sum();
            let end = at + 27 + nsegs + body;
            pages.push(Page {
                end,
                flags: h[5],
                granule: u64::from_le_bytes(h[6..14].try_into().unwrap()),
                serial: u32::from_le_bytes(h[14..18].try_into().unwrap()),
                sequence: u32::from_le_bytes(h[18..22].try_into().unwrap()),
                lacing,
            });
            at = end;
        }
        pages
    }

    /// Checks each audio page's granule: the samples of all packets completed
    /// on it and before, -1 where none completes (except an empty EOS page).
    pub(crate) fn check_granules(pages: &[Page], samples: &[u64]) {
        let mut completed = 0;
        for page in &pages[2..] {
            completed += page.completed();
            let expected = if page.completed() == 0 && !page.lacing.is_empty() {
                NO_GRANULE
            } else {
                samples[..completed].iter().sum()
            };
            assert_eq!(page.granule, expected, "page {}", page.sequence);
        }
        assert_eq!(completed, samples.len());
    }

    /// Reads every packet with the independent `ogg` crate (which verifies
    /// CRCs), stopping at the first error (e.g. a truncated page).
    pub(crate) fn read_packets(bytes: &[u8]) -> (Vec<::ogg::Packet>, bool) {
        let mut reader = ::ogg::PacketReader::new(Cursor::new(bytes));
        let mut packets = Vec::new();
        loop {
            match reader.read_packet() {
                Ok(Some(p)) => packets.push(p),
                Ok(None) => return (packets, true),
                Err(_) => return (packets, false),
            }
        }
    }

    fn head() -> OpusHead {
        OpusHead {
            channels: 2,
            pre_skip: 3840,
            input_sample_rate: 48000,
            output_gain: 0,
        }
    }

    fn writer() -> OggOpusWriter {
        OggOpusWriter::new(0x1234_5678, &head(), "hearken", &[("TITLE", "test")])
    }

    fn packet(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 7 + j) as u8).collect()
    }

    #[test]
    fn crc_matches_the_reference_check_value() {
        // CRC-32/CKSUM without its final xor.
        assert_eq!(crc32(b"123456789"), 0x765E_7680 ^ 0xFFFF_FFFF);
    }

    #[test]
    fn opus_head_bytes() {
        let bytes = head().to_bytes();
        assert_eq!(&bytes[..8], b"OpusHead");
        assert_eq!(bytes[8..], [1, 2, 0x00, 0x0F, 0x80, 0xBB, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn headers_are_two_pages_with_granule_zero() {
        let mut w = writer();
        assert_eq!(w.pages_written(), 2);
        let bytes = w.poll_output();
        let pages = pages(&bytes);
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].flags, FLAG_BOS);
        assert_eq!(pages[1].flags, 0);
        assert!(
            pages
                .iter()
                .all(|p| p.granule == 0 && p.serial == 0x1234_5678)
        );
        let (packets, _) = read_packets(&bytes);
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].data, head().to_bytes());
        let tags = &packets[1].data;
        assert_eq!(&tags[..8], b"OpusTags");
        assert_eq!(&tags[8..12], &7u32.to_le_bytes());
        assert_eq!(&tags[12..19], b"hearken");
        assert_eq!(&tags[19..23], &1u32.to_le_bytes());
        assert_eq!(&tags[23..27], &10u32.to_le_bytes());
        assert_eq!(&tags[27..], b"TITLE=test");
        assert!(w.poll_output().is_empty());
    }

    #[test]
    fn packets_and_granules_round_trip() {
        let mut w = writer();
        let mut sent = Vec::new();
        for i in 0..120 {
            let p = packet(i, 20 + i % 90);
            w.push_packet(&p, 960).unwrap();
            sent.push(p);
            if i % 50 == 49 {
                w.flush();
            }
        }
        w.finish();
        assert_eq!(w.granule_position(), 120 * 960);
        let bytes = w.poll_output();
        let (packets, clean_end) = read_packets(&bytes);
        assert!(clean_end);
        assert_eq!(packets.len(), 122);
        for (got, want) in packets[2..].iter().zip(&sent) {
            assert_eq!(&got.data, want);
        }
        // Every packet reports the granule of its page: samples up to the
        // last packet completed on that page.
        let pages = pages(&bytes);
        for (seq, page) in pages.iter().enumerate() {
            assert_eq!(page.sequence, seq as u32);
            assert_eq!(page.flags & FLAG_BOS != 0, seq == 0);
            assert_eq!(page.flags & FLAG_EOS != 0, seq == pages.len() - 1);
            assert_eq!(page.flags & FLAG_CONTINUED, 0);
        }
        check_granules(&pages, &[960; 120]);
        assert!(packets.last().unwrap().last_in_stream());
    }

    #[test]
    fn flush_makes_a_page_boundary() {
        let mut w = writer();
        w.poll_output();
        for i in 0..3 {
            w.push_packet(&packet(i, 50), 960).unwrap();
        }
        assert_eq!(w.unflushed_samples(), 2880);
        assert!(w.poll_output().is_empty());
        w.flush();
        assert_eq!(w.unflushed_samples(), 0);
        assert_eq!(w.pages_written(), 3);
        let page = w.poll_output();
        assert_eq!(pages(&page)[0].lacing, vec![50, 50, 50]);
        assert_eq!(pages(&page)[0].granule, 2880);
        // Nothing open: flush is a no-op.
        w.flush();
        assert_eq!(w.pages_written(), 3);
        assert!(w.poll_output().is_empty());
    }

    #[test]
    fn pages_close_at_about_4_kib() {
        let mut w = writer();
        for i in 0..100 {
            w.push_packet(&packet(i, 200), 960).unwrap();
        }
        w.finish();
        let bytes = w.poll_output();
        let pages = pages(&bytes);
        assert!(pages.len() >= 5);
        for page in &pages[2..pages.len() - 1] {
            assert!(page.body_len() >= PAGE_BODY_TARGET);
            assert!(page.body_len() < PAGE_BODY_TARGET + 200);
        }
        assert_eq!(read_packets(&bytes).0.len(), 102);
    }

    #[test]
    fn a_page_holds_at_most_255_segments() {
        let mut w = writer();
        for i in 0..300 {
            w.push_packet(&packet(i, 3), 120).unwrap();
        }
        w.finish();
        let bytes = w.poll_output();
        let pages = pages(&bytes);
        assert_eq!(pages[2].lacing.len(), 255);
        assert_eq!(pages[2].granule, 255 * 120);
        assert_eq!(pages[3].lacing.len(), 45);
        assert_eq!(pages[3].granule, 300 * 120);
    }

    #[test]
    fn a_packet_that_does_not_fit_starts_a_new_page() {
        let mut w = writer();
        w.push_packet(&packet(0, 10), 960).unwrap();
        // 254 lacing values: fits next to the first packet's one (255 in all).
        w.push_packet(&packet(1, 254 * 255 - 1), 960).unwrap();
        w.push_packet(&packet(2, 10), 960).unwrap();
        // 255 lacing values: does not fit next to one, so the page closes first.
        w.push_packet(&packet(3, 255 * 255 - 1), 960).unwrap();
        w.finish();
        let bytes = w.poll_output();
        let pages = pages(&bytes);
        let shape: Vec<_> = pages[2..]
            .iter()
            .map(|p| (p.lacing.len(), p.completed()))
            .collect();
        // The last page is the empty EOS page: the 4 KiB rule closed the one before.
        assert_eq!(shape, vec![(255, 2), (1, 1), (255, 1), (0, 0)]);
        assert!(pages.iter().all(|p| p.flags & FLAG_CONTINUED == 0));
        check_granules(&pages, &[960; 4]);
        assert_eq!(read_packets(&bytes).0.len(), 6);
    }

    #[test]
    fn large_packets_continue_across_pages() {
        for len in [255 * 255, 255 * 255 + 1, 70_000, 150_000, 3 * 255 * 255] {
            let mut w = writer();
            let small = packet(9, 30);
            let big = packet(1, len);
            w.push_packet(&small, 960).unwrap();
            w.push_packet(&big, 1920).unwrap();
            w.push_packet(&small, 960).unwrap();
            w.finish();
            let bytes = w.poll_output();
            let (packets, clean_end) = read_packets(&bytes);
            assert!(clean_end, "len {len}");
            assert_eq!(packets.len(), 5, "len {len}");
            assert_eq!(packets[2].data, small);
            assert_eq!(packets[3].data, big, "len {len}");
            assert_eq!(packets[4].data, small);

            let pages = pages(&bytes);
            let big_segments = len / 255 + 1;
            let mut segments = 0;
            for (i, page) in pages.iter().enumerate().skip(3) {
                // Pages after the small packet's page hold the big one.
                let prev_open = pages[i - 1].lacing.last() == Some(&255);
                assert_eq!(page.flags & FLAG_CONTINUED != 0, prev_open, "len {len}");
                segments += page.lacing.len();
            }
            check_granules(&pages, &[960, 1920, 960]);
            assert_eq!(pages[2].lacing, vec![30]);
            // The big packet starts on a fresh page and fills whole pages.
            assert_eq!(segments, big_segments + 1);
        }
    }

    #[test]
    fn finish_without_open_packet_writes_an_empty_eos_page() {
        let mut w = writer();
        w.push_packet(&packet(0, 40), 960).unwrap();
        w.flush();
        w.finish();
        let bytes = w.poll_output();
        let pages = pages(&bytes);
        let last = pages.last().unwrap();
        assert_eq!(last.flags, FLAG_EOS);
        assert!(last.lacing.is_empty());
        assert_eq!(last.granule, 960);
        let (packets, clean_end) = read_packets(&bytes);
        assert!(clean_end);
        assert_eq!(packets.len(), 3);
    }

    #[test]
    fn finish_with_open_packet_marks_its_page() {
        let mut w = writer();
        w.push_packet(&packet(0, 40), 960).unwrap();
        w.finish();
        w.finish();
        w.flush();
        assert_eq!(w.push_packet(&[1], 960), Err(OggWriteError::Finished));
        let bytes = w.poll_output();
        let pages = pages(&bytes);
        assert_eq!(pages.len(), 3);
        assert_eq!(pages[2].flags, FLAG_EOS);
        assert_eq!(pages[2].granule, 960);
        let (packets, _) = read_packets(&bytes);
        assert!(packets[2].last_in_stream());
    }

    #[test]
    fn finish_on_a_headers_only_stream() {
        let mut w = writer();
        w.finish();
        let bytes = w.poll_output();
        let pages = pages(&bytes);
        assert_eq!(pages.len(), 3);
        assert_eq!(pages[2].flags, FLAG_EOS);
        assert_eq!(pages[2].granule, 0);
        assert!(read_packets(&bytes).1);
    }

    /// Checks that `bytes` cut at each of `cuts` yields exactly the packets
    /// that complete on its whole pages.
    fn check_cuts(bytes: &[u8], cuts: impl Iterator<Item = usize>) {
        let (all, clean_end) = read_packets(bytes);
        assert!(clean_end);
        let pages = pages(bytes);
        for cut in cuts {
            let complete: usize = pages
                .iter()
                .filter(|p| p.end <= cut)
                .map(Page::completed)
                .sum();
            let (packets, _) = read_packets(&bytes[..cut]);
            assert_eq!(packets.len(), complete, "cut at {cut}");
            for (got, want) in packets.iter().zip(&all) {
                assert_eq!(got.data, want.data, "cut at {cut}");
            }
        }
    }

    #[test]
    fn a_cut_at_any_byte_keeps_every_packet_of_complete_pages() {
        let mut w = writer();
        for i in 0..60 {
            w.push_packet(&packet(i, 5 + i * 3), 960).unwrap();
            if i % 7 == 6 {
                w.flush();
            }
        }
        w.finish();
        let bytes = w.poll_output();
        assert!(pages(&bytes).len() > 10);
        check_cuts(&bytes, 0..=bytes.len());
    }

    #[test]
    fn a_cut_keeps_complete_pages_around_a_spanning_packet() {
        let mut w = writer();
        for i in 0..20 {
            let len = if i == 10 { 140_000 } else { 40 };
            w.push_packet(&packet(i, len), 960).unwrap();
        }
        w.finish();
        let bytes = w.poll_output();
        let pages = pages(&bytes);
        assert!(pages.len() >= 6);
        // Every byte near each page boundary, a stride elsewhere: parsing is
        // quadratic in the cut count and the stream is large.
        let near = |cut: usize| pages.iter().any(|p| p.end.abs_diff(cut) <= 300);
        check_cuts(
            &bytes,
            (0..=bytes.len()).filter(|&c| near(c) || c % 97 == 0),
        );
    }

    proptest! {
        #[test]
        fn any_packet_sequence_round_trips(
            ops in proptest::collection::vec((0usize..3000, 0u32..5761, any::<bool>()), 0..60)
        ) {
            let mut w = writer();
            let mut sent = Vec::new();
            let mut total = 0u64;
            for (i, &(len, samples, flush)) in ops.iter().enumerate() {
                // Opus packets are never empty; keep at least one byte.
                let p = packet(i, len.max(1));
                w.push_packet(&p, samples).unwrap();
                total += u64::from(samples);
                sent.push(p);
                if flush {
                    w.flush();
                    prop_assert_eq!(w.unflushed_samples(), 0);
                }
            }
            w.finish();
            prop_assert_eq!(w.granule_position(), total);
            let bytes = w.poll_output();
            let (packets, clean_end) = read_packets(&bytes);
            prop_assert!(clean_end);
            prop_assert_eq!(packets.len(), sent.len() + 2);
            for (got, want) in packets[2..].iter().zip(&sent) {
                prop_assert_eq!(&got.data, want);
            }
            let pages = pages(&bytes);
            let samples: Vec<u64> = ops.iter().map(|&(_, s, _)| u64::from(s)).collect();
            check_granules(&pages, &samples);
            prop_assert_eq!(pages.last().unwrap().granule, total);
            prop_assert_eq!(pages.last().unwrap().flags & FLAG_EOS, FLAG_EOS);
        }
    }

    #[test]
    fn a_scan_stops_at_the_page_a_crash_cut_short() {
        let mut w = writer();
        for i in 0..200 {
            w.push_packet(&packet(i, 160), 960).unwrap();
        }
        w.flush();
        let bytes = w.poll_output();
        let pages = pages(&bytes);
        // Whole: every page, the granule of the last, the pre-skip the
        // head gives (3840), and no EOS yet.
        let scan = scan_pages(&bytes);
        assert_eq!(scan.whole_len, bytes.len());
        assert_eq!(scan.pages, pages.len());
        assert_eq!(scan.last_granule, Some(200 * 960));
        assert_eq!(scan.pre_skip, Some(3840));
        assert!(!scan.eos);
        assert!((scan.opus_seconds() - (200.0 * 960.0 - 3840.0) / 48_000.0).abs() < 1e-9);
        // Cut anywhere inside the last page: the pages before it remain.
        let last_start = pages[pages.len() - 2].end;
        for cut in [last_start + 1, last_start + 27, bytes.len() - 1] {
            let scan = scan_pages(&bytes[..cut]);
            assert_eq!(scan.whole_len, last_start, "cut at {cut}");
            assert_eq!(scan.pages, pages.len() - 1);
        }
        // A flipped bit in a body fails that page's CRC.
        let mut bad = bytes.clone();
        bad[last_start + 40] ^= 1;
        assert_eq!(scan_pages(&bad).whole_len, last_start);
        assert_eq!(scan_pages(b"not ogg").whole_len, 0);
    }

    #[test]
    fn the_end_of_stream_page_matches_what_finish_writes() {
        let mut w = writer();
        for i in 0..20 {
            w.push_packet(&packet(i, 100), 960).unwrap();
        }
        w.flush();
        let open = w.poll_output();
        w.finish();
        let closing = w.poll_output();
        let scan = scan_pages(&open);
        assert_eq!(scan.serial, 0x1234_5678);
        let page = end_of_stream_page(&scan).unwrap();
        assert_eq!(page, closing, "byte for byte the writer's own last page");
        let mut ended = open.clone();
        ended.extend_from_slice(&page);
        let scan = scan_pages(&ended);
        assert_eq!(scan.whole_len, ended.len());
        assert!(scan.eos);
        assert_eq!(end_of_stream_page(&scan), None);
        let (packets, complete) = read_packets(&ended);
        assert!(complete);
        assert_eq!(packets.len(), 22);
        assert_eq!(end_of_stream_page(&scan_pages(b"")), None);
    }
}
