//! The private NATS and PostgreSQL servers start, answer, keep their data
//! over a restart on the same port, and run side by side. Each test is
//! skipped (a failure in CI) when the Debian packages are missing:
//! `tests/peers/install.sh cluster`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hearken_testkit::services::{PrivateNats, PrivatePostgres, start_or_skip};

/// A plain NATS client connection: the text protocol over TCP.
struct NatsConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    info: String,
}

impl NatsConn {
    /// Connects and reads the server's `INFO` line.
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to NATS");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        let mut info = String::new();
        reader.read_line(&mut info).expect("INFO line");
        let mut conn = Self {
            reader,
            writer,
            info,
        };
        conn.send("CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.test 1\r\n");
        conn
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("write");
    }

    /// Publishes `payload` on `subject` and returns the first reply.
    fn request(&mut self, subject: &str, payload: &str) -> String {
        self.send(&format!(
            "PUB {subject} _INBOX.test {}\r\n{payload}\r\n",
            payload.len()
        ));
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read");
            assert!(n > 0, "NATS closed the connection");
            let line = line.trim_end();
            if line == "PING" {
                self.send("PONG\r\n");
            } else if let Some(header) = line.strip_prefix("MSG ") {
                let len: usize = header
                    .rsplit(' ')
                    .next()
                    .and_then(|l| l.parse().ok())
                    .expect("MSG length");
                let mut body = vec![0; len + 2];
                self.reader.read_exact(&mut body).expect("MSG body");
                body.truncate(len);
                return String::from_utf8(body).expect("utf-8");
            } else {
                assert!(!line.starts_with("-ERR"), "{line}");
            }
        }
    }
}

#[test]
fn nats_has_jetstream_and_keeps_its_streams_over_a_restart() {
    let Some(mut nats) = start_or_skip(PrivateNats::start()) else {
        return;
    };
    let port = nats.port();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));
    let mut conn = NatsConn::connect(port);
    assert!(conn.info.starts_with("INFO {"), "{}", conn.info);
    assert!(conn.info.contains("\"jetstream\":true"), "{}", conn.info);

    let created = conn.request(
        "$JS.API.STREAM.CREATE.HKTEST",
        r#"{"name":"HKTEST","subjects":["hktest.>"],"storage":"file"}"#,
    );
    assert!(!created.contains("\"error\""), "{created}");
    let ack = conn.request("hktest.a", "hello");
    assert!(ack.contains("\"seq\":1"), "{ack}");

    nats.stop().expect("stop");
    assert!(!nats.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    nats.restart().expect("restart");
    assert_eq!(nats.port(), port);

    let mut conn = NatsConn::connect(port);
    assert!(conn.info.starts_with("INFO {"), "{}", conn.info);
    let info = conn.request("$JS.API.STREAM.INFO.HKTEST", "");
    assert!(info.contains("\"messages\":1"), "{info}");
    assert!(nats.store_dir().is_dir());
}

/// `pg_isready` against the server's port.
fn pg_isready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn postgres_answers_and_keeps_its_rows_over_a_restart() {
    let Some(mut pg) = start_or_skip(PrivatePostgres::start()) else {
        return;
    };
    let port = pg.port();
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{port}/hearken")
    );
    assert!(pg_isready(pg.bin_dir(), port));
    assert_eq!(pg.psql("select 1").expect("select 1"), "1");
    assert_eq!(pg.psql("select current_database()").expect("db"), "hearken");
    pg.psql("create table t (x int); insert into t values (7)")
        .expect("create");

    pg.stop().expect("stop");
    assert!(!pg.is_running());
    assert!(!pg_isready(pg.bin_dir(), port));
    pg.restart().expect("restart");
    assert_eq!(pg.port(), port);
    assert!(pg_isready(pg.bin_dir(), port));
    assert_eq!(pg.psql("select sum(x) from t").expect("select"), "7");

    let err = pg.psql("select * from missing").expect_err("no such table");
    assert!(err.to_string().contains("missing"), "{err}");
    let data = pg.data_dir();
    drop(pg);
    assert!(!data.exists(), "the directory is removed on drop");
}

#[test]
fn several_instances_run_side_by_side() {
    let started: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| (PrivateNats::start(), PrivatePostgres::start())))
        .map(|t| t.join().expect("thread"))
        .collect();
    let mut ports = Vec::new();
    let mut keep = Vec::new();
    for (nats, pg) in started {
        let Some(nats) = start_or_skip(nats) else {
            return;
        };
        assert!(NatsConn::connect(nats.port()).info.starts_with("INFO {"));
        ports.push(nats.port());
        keep.push(nats);
        if let Some(pg) = start_or_skip(pg) {
            assert_eq!(pg.psql("select 1").expect("select 1"), "1");
            ports.push(pg.port());
            drop(pg);
        }
    }
    ports.sort_unstable();
    ports.dedup();
    assert!(ports.len() >= 2, "distinct ports: {ports:?}");
}
