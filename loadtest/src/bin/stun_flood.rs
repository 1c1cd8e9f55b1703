//! `hearken-stun-flood`: forged STUN binding requests at a steady rate, for
//! measuring what a flood of them costs a server (issue: routing by ICE
//! ufrag). Each request is well formed (USERNAME, a MESSAGE-INTEGRITY of
//! random bytes, a correct FINGERPRINT) so it passes parsing and reaches the
//! server's ufrag lookup; its ufrag is random, so no session owns it. The
//! source port rotates over 256 sockets: every request comes from an
//! address the server has not seen.
//!
//!   hearken-stun-flood --to 127.0.0.1:41000 --pps 50000 --seconds 60
//!
//! Loopback only. Prints one JSON object: what was sent, and how late.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use clap::Parser;

/// Forged STUN binding requests at a steady rate.
#[derive(Debug, Parser)]
struct Args {
    /// Where to send (a server's media port); must be loopback.
    #[arg(long)]
    to: SocketAddr,
    /// Requests per second.
    #[arg(long, default_value_t = 50_000)]
    pps: u64,
    /// How long.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

/// STUN's magic cookie (RFC 8489 §5).
const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// A binding request with USERNAME `{ufrag}:{remote}`, a random
/// MESSAGE-INTEGRITY and a correct FINGERPRINT.
fn forged_request(ufrag: &str, remote: &str) -> Vec<u8> {
    let username = format!("{ufrag}:{remote}");
    let mut attrs = Vec::new();
    let mut attr = |kind: u16, value: &[u8]| {
        attrs.extend_from_slice(&kind.to_be_bytes());
        attrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
        attrs.extend_from_slice(value);
        attrs.resize(attrs.len().div_ceil(4) * 4, 0);
    };
    attr(0x0006, username.as_bytes());
    attr(0x0024, &0x6e00_01ffu32.to_be_bytes()); // PRIORITY
    attr(0x0008, &rand::random::<[u8; 20]>()); // MESSAGE-INTEGRITY (forged)
    let mut msg = Vec::with_capacity(20 + attrs.len() + 8);
    msg.extend_from_slice(&0x0001u16.to_be_bytes()); // binding request
    msg.extend_from_slice(&((attrs.len() + 8) as u16).to_be_bytes());
    msg.extend_from_slice(&MAGIC);
    msg.extend_from_slice(&rand::random::<[u8; 12]>());
    msg.extend_from_slice(&attrs);
    // FINGERPRINT: CRC-32 of everything before it, XOR 0x5354554e.
    let crc = crc32(&msg) ^ 0x5354_554e;
    msg.extend_from_slice(&0x8028u16.to_be_bytes());
    msg.extend_from_slice(&4u16.to_be_bytes());
    msg.extend_from_slice(&crc.to_be_bytes());
    msg
}

/// CRC-32 (IEEE 802.3, reflected), as STUN's FINGERPRINT uses. Eight
/// lines; not worth a dependency.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn random_ufrag() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.to.ip().is_loopback(),
        "--to: {} is not a loopback address",
        args.to
    );
    anyhow::ensure!(args.pps > 0, "--pps: must be at least 1");
    let sockets: Vec<UdpSocket> = (0..256)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    // A pool of distinct requests, so building them is not what is measured.
    let pool: Vec<Vec<u8>> = (0..4096)
        .map(|_| forged_request(&random_ufrag(), &random_ufrag()))
        .collect();
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let mut sent: u64 = 0;
    let mut errors: u64 = 0;
    let mut max_behind = Duration::ZERO;
    while Instant::now() < end {
        // Due by now at the steady rate.
        let due = (start.elapsed().as_secs_f64() * args.pps as f64) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        let behind = Duration::from_secs_f64((due - sent) as f64 / args.pps as f64);
        max_behind = max_behind.max(behind);
        while sent < due {
            let i = sent as usize;
            if sockets[i % sockets.len()]
                .send_to(&pool[i % pool.len()], args.to)
                .is_err()
            {
                errors += 1;
            }
            sent += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "to": args.to.to_string(),
            "sent": sent,
            "send_errors": errors,
            "seconds": elapsed,
            "rate_pps": sent as f64 / elapsed,
            "max_behind_ms": max_behind.as_secs_f64() * 1000.0,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The CRC-32 check value of "123456789" (the catalogue's `check`).
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn a_forged_request_parses_as_stun_with_its_username() {
        let msg = forged_request("abcd1234", "wxyz");
        let stun = str0m::ice::StunMessage::parse(&msg).expect("valid STUN");
        assert!(stun.is_binding_request());
        assert_eq!(stun.split_username(), Some(("abcd1234", "wxyz")));
    }
}
