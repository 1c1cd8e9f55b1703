//! CPU time and resident memory of a process, read from Linux's `/proc`:
//! the generator's own (to tell whether it was the bottleneck) and, with
//! `--server-pid`, the server's.

use std::path::PathBuf;

/// Clock ticks per second of `/proc/PID/stat` times (`sysconf(_SC_CLK_TCK)`,
/// which is 100 on every Linux architecture in practice).
pub const CLOCK_TICKS_PER_S: f64 = 100.0;

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// The generator itself.
    Current,
    /// Another process.
    Other(u32),
}

impl Pid {
    fn dir(self) -> PathBuf {
        match self {
            Pid::Current => PathBuf::from("/proc/self"),
            Pid::Other(pid) => PathBuf::from(format!("/proc/{pid}")),
        }
    }

    /// User plus system CPU seconds so far.
    pub fn cpu_seconds(self) -> std::io::Result<f64> {
        let text = std::fs::read_to_string(self.dir().join("stat"))?;
        parse_stat_cpu_ticks(&text)
            .map(|ticks| ticks as f64 / CLOCK_TICKS_PER_S)
            .ok_or_else(|| invalid("unexpected /proc/PID/stat format"))
    }

    /// Resident set size in bytes (`VmRSS`).
    pub fn rss_bytes(self) -> std::io::Result<u64> {
        let text = std::fs::read_to_string(self.dir().join("status"))?;
        parse_status_rss_bytes(&text).ok_or_else(|| invalid("no VmRSS in /proc/PID/status"))
    }

    /// The soft limit on open files (`Max open files`), if readable.
    pub fn open_files_limit(self) -> Option<u64> {
        let text = std::fs::read_to_string(self.dir().join("limits")).ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

/// The process listening on TCP `port` on this machine, if it can be
/// found: the listening socket's inode from `/proc/net/tcp{,6}`, then the
/// process holding that inode among every readable `/proc/PID/fd`. `None`
/// when nothing listens there or the server runs in another PID namespace
/// or as a user whose file descriptors cannot be read.
pub fn find_tcp_listener(port: u16) -> Option<u32> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| listening_inodes(&text, port))
        .filter(|&inode| inode != 0)
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let own = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .find(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .any(|target| {
                    target
                        .to_str()
                        .and_then(|t| t.strip_prefix("socket:["))
                        .and_then(|t| t.strip_suffix(']'))
                        .and_then(|t| t.parse::<u64>().ok())
                        .is_some_and(|inode| inodes.contains(&inode))
                })
        })
}

/// Inodes of the sockets in `/proc/net/tcp`-format `table` listening
/// (state `0A`) on local port `port`.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let listening = *fields.get(3)? == "0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The
/// command name (field 2) may contain spaces and parentheses, so fields are
/// counted from after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // `after_comm` starts at field 3 (state): utime is field 14.
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of `/proc/PID/status`, in bytes.
pub fn parse_status_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_utime_plus_stime_after_the_command_name() {
        let stat = "4242 (hear ken) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 5000 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_rss_is_in_bytes() {
        let status = "Name:\thearken\nVmPeak:\t  999 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        assert_eq!(parse_status_rss_bytes(status), Some(20_480 * 1024));
        assert_eq!(parse_status_rss_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn listening_sockets_are_found_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 377483 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9B8C 0100007F:1F90 06 00000000:00000000 03:0000061C 00000000     0        0 0 3 0000000000000000
   2: 0100007F:1F90 0100007F:9B9A 01 00000000:00000000 00:00000000 00000000     0        0 377999 1 0000000000000000 20 4 30 10 -1
   3: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1594 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_inodes(table, 8080), vec![377_483]);
        assert_eq!(listening_inodes(table, 2024), vec![1_594]);
        assert!(listening_inodes(table, 9).is_empty());
    }

    #[test]
    fn a_listener_of_this_machine_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // This process is skipped (the generator never measures itself),
        // so a child holding the socket would be needed to find one; the
        // lookup must at least not find an unrelated process.
        assert_eq!(find_tcp_listener(port), None);
    }

    #[test]
    fn this_process_is_readable() {
        assert!(Pid::Current.cpu_seconds().expect("stat") >= 0.0);
        assert!(Pid::Current.rss_bytes().expect("status") > 0);
        assert!(Pid::Current.open_files_limit().is_some());
    }
}
