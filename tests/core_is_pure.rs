//! Invariant 2 of ARCHITECTURE.md: nothing under `src/core/` does I/O or
//! reads a clock; time is an argument. Checked here on the source text
//! (test modules, which may take an arbitrary `Instant` as a base, excluded).

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::env",
    "std::process",
    "std::thread",
    "tokio",
    "mio",
    "Instant::now",
    "SystemTime::now",
    "Utc::now",
    "Local::now",
    "thread::sleep",
    "File::",
    "UdpSocket",
    "TcpStream",
    "rand::",
    "tracing::",
];

fn check(dir: &Path, offenders: &mut Vec<String>, files: &mut usize) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            check(&path, offenders, files);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        *files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let production = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in production.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for f in FORBIDDEN {
                if code.contains(f) {
                    offenders.push(format!("{}:{}: {f}: {line}", path.display(), n + 1));
                }
            }
        }
    }
}

#[test]
fn core_does_no_io_and_reads_no_clock() {
    let mut offenders = Vec::new();
    let mut files = 0;
    check(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core"),
        &mut offenders,
        &mut files,
    );
    assert!(files >= 7, "walked {files} files");
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}
