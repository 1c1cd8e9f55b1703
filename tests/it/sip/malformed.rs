//! Bad input: it is answered (400, 405, 415, 404) when it names enough to
//! be answered, dropped and counted when not, and the server goes on.

use std::net::SocketAddr;
use std::time::Duration;

use hearken::metrics::IngestError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{SipTransport, sip_addr, sip_errors, sip_server, sipp};

fn options(branch: &str) -> String {
    format!(
        "OPTIONS sip:probe@hearken SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{branch};rport\r\n\
         From: <sip:probe@127.0.0.1>;tag=1\r\n\
         To: <sip:probe@hearken>\r\n\
         Call-ID: {branch}@raw\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends `bytes` and returns the first answer within `wait`, if any.
async fn exchange(
    socket: &UdpSocket,
    to: SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> Option<String> {
    socket.send_to(bytes, to).await.expect("send");
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_malformed_requests_are_answered_and_options_still_works() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    sipp(addr, "malformed.xml", "call-m", SipTransport::Udp, &[]).await;
    sipp(addr, "malformed.xml", "call-m", SipTransport::Tcp, &[]).await;
    assert_eq!(sip_errors(&server, IngestError::UnsupportedMediaType), 2);
    assert_eq!(sip_errors(&server, IngestError::BadTarget), 2);
    // FROBNICATE and the unreadable SDP, twice each.
    assert_eq!(sip_errors(&server, IngestError::MalformedMessage), 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_garbage_over_udp_is_counted_and_the_server_goes_on() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let quiet = Duration::from_millis(300);

    // Binary junk, a start line alone, a response nobody asked for, a
    // request with no Call-ID: nothing names enough to answer.
    let huge = format!(
        "INVITE sip:c@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKhuge\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(60_000)
    );
    let dropped: Vec<Vec<u8>> = vec![
        (0u8..=255).cycle().take(1200).collect(),
        b"INVITE\r\n\r\n".to_vec(),
        b"\xff\xfe INVITE sip:x SIP/2.0\r\n\r\n".to_vec(),
        huge.into_bytes(),
        options("nocallid")
            .replace("Call-ID: nocallid@raw\r\n", "")
            .into_bytes(),
    ];
    for bytes in &dropped {
        assert_eq!(
            exchange(&socket, addr, bytes, quiet).await,
            None,
            "{:?}",
            &bytes[..40.min(bytes.len())]
        );
    }

    // Answerable: Content-Length longer than the datagram (RFC 3261 §18.3).
    let short = options("short").replace("Content-Length: 0", "Content-Length: 500");
    let answer = exchange(&socket, addr, short.as_bytes(), Duration::from_secs(2))
        .await
        .expect("an answer");
    assert!(answer.starts_with("SIP/2.0 400"), "{answer}");
    assert!(answer.contains("Warning: 399 hearken"), "{answer}");

    // An unknown method is 405 with Allow.
    let frob = options("frob")
        .replace("OPTIONS sip", "FROB sip")
        .replace("1 OPTIONS", "1 FROB");
    let answer = exchange(&socket, addr, frob.as_bytes(), Duration::from_secs(2))
        .await
        .expect("an answer");
    assert!(answer.starts_with("SIP/2.0 405"), "{answer}");
    assert!(
        answer.contains("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"),
        "{answer}"
    );

    assert_eq!(
        sip_errors(&server, IngestError::MalformedMessage),
        dropped.len() as u64 + 2
    );

    // And the server answers as before.
    let answer = exchange(
        &socket,
        addr,
        options("after").as_bytes(),
        Duration::from_secs(2),
    )
    .await
    .expect("an answer");
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    // RFC 5626 keepalive.
    assert_eq!(
        exchange(&socket, addr, b"\r\n\r\n", Duration::from_secs(2))
            .await
            .as_deref(),
        Some("\r\n")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_stream_that_cannot_be_framed_is_closed_and_others_go_on() {
    let server = sip_server().await;
    let addr = sip_addr(&server);
    // A header section that never ends.
    let mut bad = TcpStream::connect(addr).await.expect("connect");
    let junk = vec![b'x'; 70_000];
    let _ = bad.write_all(&junk).await;
    let mut buf = vec![0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match bad.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the unframeable stream was not closed");
    assert_eq!(sip_errors(&server, IngestError::MalformedMessage), 1);

    // Two messages in one write, then one split across writes, on a good
    // connection.
    let mut good = TcpStream::connect(addr).await.expect("connect");
    let two = format!("{}{}", options("t1"), options("t2")).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    good.write_all(two.as_bytes()).await.expect("write");
    let third = options("t3").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let (a, b) = third.split_at(40);
    good.write_all(a.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    good.write_all(b.as_bytes()).await.expect("write");
    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        while seen.matches("SIP/2.0 200").count() < 3 {
            let n = good.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(got.is_ok(), "three 200s over TCP: {seen}");
    for call in ["t1@raw", "t2@raw", "t3@raw"] {
        assert!(seen.contains(call), "{call}: {seen}");
    }
    server.shutdown().await;
}
