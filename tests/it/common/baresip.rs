//! baresip (Debian's package) as a real telephone: a headless user agent
//! with its own config directory, driven over its `ctrl_tcp` control
//! socket (JSON commands in netstrings), playing a WAV file as its
//! microphone (`aufile`) and dumping what it hears to WAV (`sndfile`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether baresip is installed. Missing, the test is skipped with a
/// message, except in CI (`CI` set), where it is a failure.
pub fn baresip_available() -> bool {
    let ok = Command::new("baresip").arg("-h").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout).contains("baresip") || !o.stderr.is_empty()
    });
    if ok {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the SIP tests need baresip (Debian package baresip-core); scripts/test.sh installs it"
    );
    eprintln!("SKIPPED: baresip is not installed (tests/peers/install.sh sip)");
    false
}

/// A running baresip.
pub struct Baresip {
    pub dir: tempfile::TempDir,
    child: Child,
    control: SocketAddr,
}

/// A free TCP port on loopback (for baresip's listeners).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Baresip {
    /// Starts baresip with `codecs` (module names: `g711`, `g722`,
    /// `opus`) offering them in that order, its microphone playing
    /// `source` (a WAV whose rate and channels match the first codec).
    pub fn start(codecs: &[&str], source: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sip_port = free_port();
        let control_port = free_port();
        let dumps = dir.path().join("dump");
        std::fs::create_dir_all(&dumps).expect("dump dir");
        let mut config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             net_interface 127.0.0.1\n\
             audio_player aufile,/dev/null\n\
             audio_source aufile,{source}\n\
             audio_alert aufile,/dev/null\n\
             module_path /usr/lib/baresip/modules\n\
             ctrl_tcp_listen 127.0.0.1:{control_port}\n\
             snd_path {dumps}/\n",
            source = source.display(),
            dumps = dumps.display(),
        );
        for codec in codecs {
            config.push_str(&format!("module {codec}.so\n"));
        }
        config.push_str(
            "module aufile.so\n\
             module sndfile.so\n\
             module_tmp uuid.so\n\
             module_tmp account.so\n\
             module_app menu.so\n\
             module_app ctrl_tcp.so\n",
        );
        std::fs::write(dir.path().join("config"), config).expect("config");
        std::fs::write(
            dir.path().join("accounts"),
            format!("<sip:caller@127.0.0.1:{sip_port}>;regint=0\n"),
        )
        .expect("accounts");
        let log = std::fs::File::create(dir.path().join("baresip.log")).expect("log");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("baresip starts");
        let control = SocketAddr::from(([127, 0, 0, 1], control_port));
        let me = Self {
            dir,
            child,
            control,
        };
        // Up when its control socket takes connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(control).is_err() {
            assert!(
                Instant::now() < deadline,
                "baresip did not start: {}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        me
    }

    /// Runs one long command (`dial`, `sndcode`, `hangup`) and returns
    /// baresip's JSON answer.
    pub fn command(&self, command: &str, params: &str) -> serde_json::Value {
        let body =
            serde_json::json!({"command": command, "params": params, "token": command}).to_string();
        let mut stream = TcpStream::connect(self.control).expect("control socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .write_all(format!("{}:{},", body.len(), body).as_bytes())
            .expect("send command");
        // Netstrings come back: events and the response; find ours.
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
            for message in netstrings(&buf) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&message)
                    && v["response"] == true
                {
                    return v;
                }
            }
            if Instant::now() > deadline {
                break;
            }
        }
        panic!(
            "no answer to {command}: {}; log: {}",
            String::from_utf8_lossy(&buf),
            self.log()
        );
    }

    /// What baresip printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    /// The WAV files of what baresip decoded (heard), newest last.
    pub fn heard(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("dump"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.to_string_lossy().ends_with("-dec.wav"));
        files.sort();
        files
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The complete netstrings in `buf` (`len:bytes,`).
fn netstrings(buf: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(colon) = buf[at..].iter().position(|&b| b == b':') {
        let Ok(len) = std::str::from_utf8(&buf[at..at + colon])
            .unwrap_or("")
            .parse::<usize>()
        else {
            break;
        };
        let start = at + colon + 1;
        if buf.len() < start + len + 1 {
            break;
        }
        out.push(buf[start..start + len].to_vec());
        at = start + len + 1;
    }
    out
}

/// Reads a 16-bit PCM WAV: (sample rate, channels, samples).
pub fn read_wav(path: &Path) -> (u32, u16, Vec<i16>) {
    let mut reader = hound::WavReader::open(path).expect("wav");
    let spec = reader.spec();
    let samples = reader.samples::<i16>().map(|s| s.unwrap_or(0)).collect();
    (spec.sample_rate, spec.channels, samples)
}

/// Speech at 8 kHz mono (what a G.711 phone sends), `seconds` long.
pub fn phone_speech(dir: &std::path::Path, seconds: u32) -> std::path::PathBuf {
    let text = "This is the caller speaking from Berlin. The quarterly numbers look good, \
                and the launch is on track for March. Let us talk about the budget next.";
    let spoken = dir.join("spoken.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&spoken)
        .arg(text)
        .status()
        .expect("espeak-ng");
    assert!(status.success());
    let out = dir.join("phone.wav");
    // Repeated to `seconds`, 8 kHz, mono, 16 bit.
    let status = std::process::Command::new("sox")
        .arg("-D")
        .arg(&spoken)
        .args(["-r", "8000", "-c", "1", "-b", "16"])
        .arg(&out)
        .args(["repeat", "5", "trim", "0", &seconds.to_string()])
        .status()
        .expect("sox");
    assert!(status.success());
    out
}
