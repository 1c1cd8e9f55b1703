//! A socket filter that drops, in the kernel, STUN binding requests that
//! name none of this worker's sessions, before they cost the worker a
//! receive.
//!
//! Every local ICE ufrag a worker hands out starts with the worker's own
//! random prefix ([`UfragPrefix`]), and a binding request to a session
//! names that ufrag first in its USERNAME. A classic BPF program on the
//! worker's socket reads the USERNAME attribute of every binding request
//! and drops those whose value does not start with the prefix: a blind
//! flood of forged checks never reaches the process. Everything else
//! (RTP, RTCP, DTLS, other STUN, requests whose USERNAME comes after the
//! first [`ATTRIBUTES_SCANNED`] attributes) passes untouched, and the
//! engine still authenticates every request it gets (ufrag lookup, then
//! MESSAGE-INTEGRITY). Someone who read one of our answers knows the prefix
//! and gets past the filter, to the engine's one-lookup rejection.
//!
//! Offsets are from the UDP header, which is where a UDP socket's filter
//! starts reading.

use std::io;

use libc::sock_filter;

/// How many STUN attributes are looked at for USERNAME (browsers and the
/// common stacks put it among the first few).
pub const ATTRIBUTES_SCANNED: usize = 12;

/// The first four characters of every local ICE ufrag of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UfragPrefix([u8; 4]);

impl UfragPrefix {
    /// A random prefix of ICE characters (RFC 8839 `ice-char`; letters and
    /// digits only).
    pub fn random() -> Self {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        Self(std::array::from_fn(|_| {
            CHARS[rand::random_range(0..CHARS.len())]
        }))
    }

    /// `ufrag` with its first four characters replaced by the prefix (it
    /// keeps the rest of its randomness).
    pub fn apply(self, ufrag: &str) -> String {
        let rest = ufrag.get(4..).unwrap_or("");
        let mut out = String::with_capacity(4 + rest.len());
        out.extend(self.0.iter().map(|&b| char::from(b)));
        out.push_str(rest);
        out
    }

    fn as_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }
}

// Classic BPF opcodes (linux/filter.h).
const LD_H_ABS: u16 = 0x28; // A = u16 at k
const LD_H_IND: u16 = 0x48; // A = u16 at X + k
const LD_W_IND: u16 = 0x40; // A = u32 at X + k
const LDX_IMM: u16 = 0x01; // X = k
const ADD_K: u16 = 0x04; // A += k
const AND_K: u16 = 0x54; // A &= k
const ADD_X: u16 = 0x0c; // A += X
const TAX: u16 = 0x07; // X = A
const JEQ_K: u16 = 0x15; // pc += (A == k) ? jt : jf
const RET_K: u16 = 0x06; // return k

/// UDP header, then the 20-byte STUN header.
const FIRST_ATTRIBUTE: u32 = 8 + 20;
const BINDING_REQUEST: u32 = 0x0001;
const USERNAME: u32 = 0x0006;
const ACCEPT: u32 = u32::MAX;
const DROP: u32 = 0;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The filter program for `prefix`.
pub fn program(prefix: UfragPrefix) -> Vec<sock_filter> {
    // Each scanned attribute is 8 instructions; the tail is 4.
    const STEP: usize = 8;
    let mut p = vec![
        // Not a binding request: accept.
        op(LD_H_ABS, 0, 0, 8),
        op(JEQ_K, 1, 0, BINDING_REQUEST),
        op(RET_K, 0, 0, ACCEPT),
        op(LDX_IMM, 0, 0, FIRST_ATTRIBUTE),
    ];
    for i in 0..ATTRIBUTES_SCANNED {
        // From the jeq of attribute i to the USERNAME check after all of
        // them: the rest of this step, the other steps, the "accept".
        let to_username = (STEP - 2) + (ATTRIBUTES_SCANNED - 1 - i) * STEP + 1;
        let to_username = u8::try_from(to_username).unwrap_or(u8::MAX);
        p.extend([
            op(LD_H_IND, 0, 0, 0),
            op(JEQ_K, to_username, 0, USERNAME),
            // Next attribute: X += 4 + length rounded up to 4.
            op(LD_H_IND, 0, 0, 2),
            op(ADD_K, 0, 0, 3),
            op(AND_K, 0, 0, 0xfffc),
            op(ADD_K, 0, 0, 4),
            op(ADD_X, 0, 0, 0),
            op(TAX, 0, 0, 0),
        ]);
    }
    p.extend([
        // No USERNAME among the first attributes: let the engine decide.
        op(RET_K, 0, 0, ACCEPT),
        // USERNAME at X: its value starts 4 bytes in.
        op(LD_W_IND, 0, 0, 4),
        op(JEQ_K, 0, 1, prefix.as_u32()),
        op(RET_K, 0, 0, ACCEPT),
        op(RET_K, 0, 0, DROP),
    ]);
    p
}

/// Attaches the filter for `prefix` to `socket`.
pub fn attach(socket: &socket2::Socket, prefix: UfragPrefix) -> io::Result<()> {
    socket.attach_filter(&program(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// A STUN message of `kind` with these attributes (type, value).
    fn stun(kind: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attributes {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    /// Sends each datagram to a filtered socket and says which arrived.
    fn delivered(prefix: UfragPrefix, datagrams: &[Vec<u8>]) -> Vec<bool> {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        socket
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        attach(&socket, prefix).unwrap();
        let receiver: UdpSocket = socket.into();
        receiver
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let to = receiver.local_addr().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 2048];
        datagrams
            .iter()
            .map(|d| {
                sender.send_to(d, to).unwrap();
                match receiver.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        assert_eq!(&buf[..n], &d[..], "delivered whole");
                        true
                    }
                    Err(_) => false,
                }
            })
            .collect()
    }

    #[test]
    fn only_binding_requests_for_another_prefix_are_dropped() {
        let prefix = UfragPrefix(*b"Hk7q");
        let ours = prefix.apply("xxxxABCDEFGHIJKL");
        assert_eq!(ours, "Hk7qABCDEFGHIJKL");
        let ours_user = format!("{ours}:remote1");
        let priority: &[u8] = &[0x6e, 0, 1, 0xff];
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                "ours, USERNAME first",
                stun(1, &[(6, ours_user.as_bytes())]),
                true,
            ),
            (
                "ours, USERNAME third (after PRIORITY and a 3-byte value)",
                stun(
                    1,
                    &[
                        (0x24, priority),
                        (0x8022, b"abc"),
                        (6, ours_user.as_bytes()),
                    ],
                ),
                true,
            ),
            (
                "a forged ufrag",
                stun(1, &[(6, b"Zz99ABCDEFGHIJKL:remote1")]),
                false,
            ),
            (
                "a forged ufrag, USERNAME second",
                stun(1, &[(0x24, priority), (6, b"hk7qABCDEFGHIJKL:x")]),
                false,
            ),
            ("a binding response", stun(0x0101, &[(0x20, &[0; 8])]), true),
            ("no USERNAME at all", stun(1, &[(0x24, priority)]), false),
            ("RTP", vec![0x80, 111, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4], true),
            (
                "DTLS",
                vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                true,
            ),
        ];
        let datagrams: Vec<Vec<u8>> = cases.iter().map(|(_, d, _)| d.clone()).collect();
        let got = delivered(prefix, &datagrams);
        for ((what, _, want), got) in cases.iter().zip(got) {
            assert_eq!(got, *want, "{what}");
        }
    }

    #[test]
    fn a_username_beyond_the_scanned_attributes_passes_to_the_engine() {
        let prefix = UfragPrefix(*b"Hk7q");
        let filler: Vec<(u16, &[u8])> = (0..ATTRIBUTES_SCANNED)
            .map(|_| (0x8022u16, &b"pad"[..]))
            .collect();
        let mut attributes = filler;
        attributes.push((6, b"Zz99whatever:x"));
        let got = delivered(prefix, &[stun(1, &attributes)]);
        assert_eq!(got, [true]);
    }
}
