//! Private NATS (with JetStream) and PostgreSQL servers for the tests of a
//! Hearken cluster (issue 13).
//!
//! The tests run inside a private network namespace where the machine's own
//! NATS (4222) and PostgreSQL (5432) cannot be reached, so each test starts
//! its own instances from the Debian packages `nats-server` and
//! `postgresql` (`tests/peers/install.sh cluster` installs them):
//!
//! - [`PrivateNats::start`]: `nats-server -js` on a free loopback port,
//!   its JetStream store in a temporary directory;
//! - [`PrivatePostgres::start`]: a fresh cluster (`initdb`, trust
//!   authentication) on a free loopback port, with a database `hearken`.
//!
//! Each listens on its own port picked by binding `127.0.0.1:0`, so several
//! run side by side (tests in parallel). `stop` and `restart` keep the port
//! and the data (JetStream streams and buckets, tables), so a test can take
//! a service away and bring it back; dropping one kills it and removes its
//! directory. [`start_or_skip`] turns a missing package into a skipped test
//! (a failure in CI).
//!
//! PostgreSQL refuses to run as root: as root, its directory is handed to
//! the user `postgres` (which Debian's package creates) and `initdb` and
//! `postgres` run as that user; otherwise they run as the current user.
//! Root inside a user namespace (`unshare -r`) has no other user to become,
//! so PostgreSQL cannot run there ([`ServiceError::Unsupported`]).

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Longest a server may take to accept connections after it was started.
/// Generous: the tests share a small machine with builds.
pub const READY_LIMIT: Duration = Duration::from_secs(20);

/// Longest a server may take to exit after it was asked to stop, before it
/// is killed.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// Starts tried on fresh ports when another process took the free port
/// between its pick and the server's bind.
const START_ATTEMPTS: usize = 3;

/// How much of a server's log an error quotes (its end).
const LOG_TAIL: u64 = 4_000;

/// Why a service cannot be started, stopped or restarted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A binary is not installed.
    #[error(
        "{binary} is not installed (Debian package {package}; tests/peers/install.sh cluster installs it); looked in {looked}"
    )]
    NotInstalled {
        /// The binary.
        binary: &'static str,
        /// The Debian package that has it.
        package: &'static str,
        /// Where it was looked for.
        looked: String,
    },
    /// The service cannot run on this machine as this user.
    #[error("{0}")]
    Unsupported(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A helper command (`initdb`, `createdb`, `psql`, …) failed.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// Its stdout and stderr.
        output: String,
    },
    /// The server exited before it accepted connections.
    #[error(
        "{binary} exited ({status}) before accepting connections on port {port}; its log ends: {log}"
    )]
    Exited {
        /// The server binary.
        binary: String,
        /// Its port.
        port: u16,
        /// How it exited.
        status: String,
        /// The end of its log (stdout and stderr).
        log: String,
    },
    /// The server did not accept connections in time (it was killed).
    #[error(
        "{binary} did not accept connections on port {port} within {waited:?}; its log ends: {log}"
    )]
    NotReady {
        /// The server binary.
        binary: String,
        /// Its port.
        port: u16,
        /// How long it was given.
        waited: Duration,
        /// The end of its log.
        log: String,
    },
}

impl ServiceError {
    /// Whether the service cannot run here at all (not installed, or not
    /// as this user), as opposed to having failed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::NotInstalled { .. } | Self::Unsupported(_))
    }

    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// A started service, or `None` when it cannot run here
/// ([`ServiceError::is_unavailable`]): the test is then skipped with a
/// `SKIPPED:` line on stderr, except in CI (`CI` set), where the test script
/// installs the packages.
///
/// # Panics
///
/// On any other error, and on an unavailable service in CI: it is a test
/// helper.
///
/// ```no_run
/// # use hearken_testkit::services::{PrivateNats, start_or_skip};
/// let Some(nats) = start_or_skip(PrivateNats::start()) else { return };
/// println!("{}", nats.url());
/// ```
pub fn start_or_skip<T>(started: Result<T, ServiceError>) -> Option<T> {
    match started {
        Ok(service) => Some(service),
        Err(e) if e.is_unavailable() && std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A free TCP port on 127.0.0.1: bound to port 0 and released, for a
/// server to bind next.
pub fn free_port() -> Result<u16, ServiceError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(ServiceError::io("binding 127.0.0.1:0 for a free port"))
}

/// A NATS server with JetStream, private to a test: `nats-server -js -a
/// 127.0.0.1 -p PORT -sd DIR/js`. Killed, and its directory removed, when
/// dropped.
#[derive(Debug)]
pub struct PrivateNats {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateNats {
    /// Where `nats-server` is: on `$PATH`, else `/usr/sbin` (Debian's
    /// place, often not on a user's `$PATH`) or `/usr/bin`.
    pub fn binary() -> Result<PathBuf, ServiceError> {
        let fixed = [Path::new("/usr/sbin"), Path::new("/usr/bin")];
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(fixed.iter().map(|d| d.to_path_buf()));
        dirs.iter()
            .map(|d| d.join("nats-server"))
            .find(|p| is_executable(p))
            .ok_or_else(|| ServiceError::NotInstalled {
                binary: "nats-server",
                package: "nats-server",
                looked: "$PATH, /usr/sbin and /usr/bin".to_owned(),
            })
    }

    /// Starts a server on a free port with an empty JetStream store, and
    /// waits until it accepts clients (its `INFO` says JetStream is on).
    pub fn start() -> Result<Self, ServiceError> {
        let binary = Self::binary()?;
        let dir = tempfile::Builder::new()
            .prefix("hearken-nats-")
            .tempdir()
            .map_err(ServiceError::io("creating the NATS directory"))?;
        let mut nats = Self {
            binary,
            port: 0,
            dir,
            child: None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            nats.port = free_port()?;
            match nats.launch() {
                Err(e) if attempt < START_ATTEMPTS && lost_port_race(&e) => {}
                result => return result.map(|()| nats),
            }
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port (kept over restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept over restarts).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("js")
    }

    /// Everything the server wrote to stdout and stderr, over all its
    /// starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the server (SIGTERM, then SIGKILL after 15 s) and waits for
    /// it to exit. Clients see their connections close; the port stops
    /// accepting until [`Self::restart`]. Stopping a stopped server does
    /// nothing.
    pub fn stop(&mut self) -> Result<(), ServiceError> {
        match self.child.take() {
            Some(mut child) => stop_child(&mut child, Signal::TERM, "nats-server"),
            None => Ok(()),
        }
    }

    /// Starts the server again on the same port with the same JetStream
    /// store (its streams and key-value buckets survive), stopping it first
    /// if it runs, and waits until it accepts clients.
    pub fn restart(&mut self) -> Result<(), ServiceError> {
        self.stop()?;
        relaunch_on_same_port(|| self.launch())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// Spawns the server on `self.port` and waits until it is ready.
    fn launch(&mut self) -> Result<(), ServiceError> {
        let store = self.store_dir();
        let port = self.port;
        let mut command = Command::new(&self.binary);
        command
            .arg("-js")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(&store)
            .current_dir(self.dir.path());
        let log = self.log_path();
        let mut child = spawn_logged(command, &log, "nats-server")?;
        wait_ready(&mut child, "nats-server", port, &log, || {
            nats_info(port).is_ok_and(|info| info.contains("\"jetstream\":true"))
        })?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `INFO {…}` line a NATS server sends a client on connect.
fn nats_info(port: u16) -> std::io::Result<String> {
    let stream = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_millis(500),
    )?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.starts_with("INFO {") {
        Ok(line)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a NATS INFO line: {line:?}"),
        ))
    }
}

/// The PostgreSQL binaries: `initdb`, `postgres` and the clients.
#[derive(Debug, Clone)]
struct PgBin {
    dir: PathBuf,
}

impl PgBin {
    /// `pg_config --bindir` when it names a directory with `initdb` and
    /// `postgres`, else the newest `/usr/lib/postgresql/VERSION/bin`
    /// (Debian's layout).
    fn find() -> Result<Self, ServiceError> {
        let has_server =
            |dir: &Path| is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"));
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server(&dir) {
                return Ok(Self { dir });
            }
        }
        let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let version = version_key(&e.file_name().to_string_lossy())?;
                        Some((version, e.path().join("bin")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        versions.sort();
        versions
            .into_iter()
            .rev()
            .map(|(_, dir)| dir)
            .find(|dir| has_server(dir))
            .map(|dir| Self { dir })
            .ok_or_else(|| ServiceError::NotInstalled {
                binary: "initdb and postgres",
                package: "postgresql",
                looked: "`pg_config --bindir` and /usr/lib/postgresql/*/bin".to_owned(),
            })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A client binary (`pg_isready`, `createdb`, `psql`), if present.
    fn client(&self, name: &str) -> Option<PathBuf> {
        Some(self.path(name)).filter(|p| is_executable(p))
    }
}

/// `"15"` → `[15]`, `"9.6"` → `[9, 6]`; `None` for anything else.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The uid and gid of `user`, from `/etc/passwd`, else from `getent
/// passwd` (users from other name services).
fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let from_passwd = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| passwd_entry(&text, user));
    from_passwd.or_else(|| {
        let out = Command::new("getent")
            .args(["passwd", user])
            .output()
            .ok()?;
        passwd_entry(&String::from_utf8_lossy(&out.stdout), user)
    })
}

/// The uid and gid of `user` in passwd-format `text`.
fn passwd_entry(text: &str, user: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != user {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// A PostgreSQL cluster private to a test, with a database `hearken` whose
/// superuser `postgres` needs no password: `postgres -D DIR/data -p PORT
/// -k DIR -c listen_addresses=127.0.0.1 -c fsync=off`. Killed, and its
/// directory removed, when dropped.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PgBin,
    /// `Some((uid, gid))` of `postgres` when running as root.
    run_as: Option<(u32, u32)>,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// The database created at start.
    pub const DATABASE: &'static str = "hearken";
    /// The superuser (trust authentication: no password).
    pub const USER: &'static str = "postgres";

    /// Makes a cluster (`initdb`), starts it on a free port, waits until it
    /// accepts connections and creates the database `hearken`.
    pub fn start() -> Result<Self, ServiceError> {
        let bin = PgBin::find()?;
        let run_as = if rustix::process::geteuid().is_root() {
            Some(lookup_user(Self::USER).ok_or_else(|| {
                ServiceError::Unsupported(
                    "PostgreSQL refuses to run as root and there is no user `postgres` to run it \
                     as (Debian's package postgresql creates it)"
                        .to_owned(),
                )
            })?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("hearken-pg-")
            .tempdir_in(traversable_temp_dir())
            .map_err(ServiceError::io("creating the PostgreSQL directory"))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| {
                ServiceError::Unsupported(format!(
                    "cannot give {} to user postgres (uid {uid}): {e}; PostgreSQL refuses to run \
                     as root, and root in a user namespace (unshare -r) has no other user to \
                     run it as",
                    dir.path().display()
                ))
            })?;
        }
        let mut pg = Self {
            bin,
            run_as,
            port: 0,
            dir,
            child: None,
        };
        pg.initdb()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            pg.port = free_port()?;
            match pg.launch() {
                Err(e) if attempt < START_ATTEMPTS && lost_port_race(&e) => {}
                Err(e) => return Err(e),
                Ok(()) => break,
            }
        }
        pg.createdb()?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/hearken`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            Self::USER,
            self.port,
            Self::DATABASE
        )
    }

    /// The port (kept over restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (kept over restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory of the PostgreSQL binaries used.
    pub fn bin_dir(&self) -> &Path {
        &self.bin.dir
    }

    /// Everything the server wrote to stdout and stderr, over all its
    /// starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Runs `sql` in the database `hearken` with `psql` (unaligned, tuples
    /// only, stopping at the first error) and returns its output, trimmed:
    /// `select 1` gives `"1"`.
    pub fn psql(&self, sql: &str) -> Result<String, ServiceError> {
        let psql = self
            .bin
            .client("psql")
            .ok_or_else(|| ServiceError::NotInstalled {
                binary: "psql",
                package: "postgresql-client",
                looked: self.bin.dir.display().to_string(),
            })?;
        let mut command = Command::new(psql);
        command
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args(self.client_args())
            .args(["-d", Self::DATABASE, "-c", sql]);
        run(command).map(|out| out.trim().to_owned())
    }

    /// Stops the server (fast shutdown: SIGINT, which ends its sessions
    /// rather than waiting for them; SIGKILL after 15 s) and waits for it
    /// to exit. Stopping a stopped server does nothing.
    pub fn stop(&mut self) -> Result<(), ServiceError> {
        match self.child.take() {
            Some(mut child) => stop_child(&mut child, Signal::INT, "postgres"),
            None => Ok(()),
        }
    }

    /// Starts the server again on the same port with the same data
    /// directory (every table and row survives), stopping it first if it
    /// runs, and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<(), ServiceError> {
        self.stop()?;
        relaunch_on_same_port(|| self.launch())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// A command that runs as `postgres` when this process is root, in the
    /// cluster's directory (a root-only working directory would be out of
    /// its reach).
    fn server_command(&self, binary: &str) -> Command {
        let mut command = Command::new(self.bin.path(binary));
        command.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.run_as {
            // std drops root's supplementary groups before switching.
            command.uid(uid).gid(gid);
        }
        command
    }

    /// `-h 127.0.0.1 -p PORT -U postgres`.
    fn client_args(&self) -> [String; 6] {
        [
            "-h".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
            "-U".to_owned(),
            Self::USER.to_owned(),
        ]
    }

    fn initdb(&self) -> Result<(), ServiceError> {
        let mut command = self.server_command("initdb");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", Self::USER, "--auth=trust", "-E", "UTF8", "--locale=C"])
            // A throwaway cluster: no fsync of its files.
            .args(["--no-sync", "--no-instructions"]);
        run(command).map(drop)
    }

    fn createdb(&self) -> Result<(), ServiceError> {
        let createdb = self
            .bin
            .client("createdb")
            .ok_or_else(|| ServiceError::NotInstalled {
                binary: "createdb",
                package: "postgresql-client",
                looked: self.bin.dir.display().to_string(),
            })?;
        let mut command = Command::new(createdb);
        command.args(self.client_args()).arg(Self::DATABASE);
        run(command).map(drop)
    }

    /// Spawns the server on `self.port` and waits until it accepts
    /// connections.
    fn launch(&mut self) -> Result<(), ServiceError> {
        let port = self.port;
        let mut command = self.server_command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "synchronous_commit=off"]);
        let log = self.log_path();
        let mut child = spawn_logged(command, &log, "postgres")?;
        let isready = self.bin.client("pg_isready");
        let client_args = self.client_args();
        wait_ready(&mut child, "postgres", port, &log, || {
            let accepts = TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_millis(500),
            )
            .is_ok();
            accepts
                && isready.as_ref().is_none_or(|isready| {
                    Command::new(isready)
                        .arg("-q")
                        .args(&client_args)
                        .args(["-t", "2"])
                        .stdin(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                })
        })?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the postmaster ends its children and
            // exits, so none outlives the directory.
            let _ = stop_child_within(&mut child, Signal::QUIT, "postgres", Duration::from_secs(5));
        }
    }
}

/// The system's temporary directory when every user may pass through it
/// (so `postgres` reaches its directory in it), else `/tmp`.
fn traversable_temp_dir() -> PathBuf {
    let dir = std::env::temp_dir();
    let open = dir
        .ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if open { dir } else { PathBuf::from("/tmp") }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Spawns `command` with stdout and stderr appended to `log`.
fn spawn_logged(mut command: Command, log: &Path, binary: &str) -> Result<Child, ServiceError> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(ServiceError::io(format!("opening {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(ServiceError::io(format!("opening {}", log.display())))?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(ServiceError::io(format!("starting {binary}")))
}

/// Waits until `ready()` or the child exits or [`READY_LIMIT`] passes (the
/// child is then killed).
fn wait_ready(
    child: &mut Child,
    binary: &str,
    port: u16,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), ServiceError> {
    let started = Instant::now();
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(ServiceError::io(format!("waiting for {binary}")))?
        {
            return Err(ServiceError::Exited {
                binary: binary.to_owned(),
                port,
                status: status.to_string(),
                log: log_tail(log),
            });
        }
        if ready() {
            return Ok(());
        }
        if started.elapsed() > READY_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ServiceError::NotReady {
                binary: binary.to_owned(),
                port,
                waited: READY_LIMIT,
                log: log_tail(log),
            });
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Whether a start failed because the port was taken (by another process,
/// between our pick and the server's bind, or not yet released).
fn lost_port_race(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Exited { log, .. } if log.to_ascii_lowercase().contains("address already in use"))
}

/// Starts a server again on the port it had: retried while the port is
/// still taken (a client's connection lingering), up to [`READY_LIMIT`].
fn relaunch_on_same_port(
    mut launch: impl FnMut() -> Result<(), ServiceError>,
) -> Result<(), ServiceError> {
    let started = Instant::now();
    loop {
        match launch() {
            Err(e) if lost_port_race(&e) && started.elapsed() < READY_LIMIT => {
                std::thread::sleep(Duration::from_millis(200));
            }
            result => return result,
        }
    }
}

/// Signals `child` and waits for it, killing it after [`STOP_LIMIT`].
fn stop_child(child: &mut Child, signal: Signal, binary: &str) -> Result<(), ServiceError> {
    stop_child_within(child, signal, binary, STOP_LIMIT).map(drop)
}

/// Signals `child` and waits up to `limit` for it to exit, then kills it.
fn stop_child_within(
    child: &mut Child,
    signal: Signal,
    binary: &str,
    limit: Duration,
) -> Result<ExitStatus, ServiceError> {
    let waiting = ServiceError::io(format!("waiting for {binary} to exit"));
    if let Some(status) = child
        .try_wait()
        .map_err(ServiceError::io(format!("waiting for {binary}")))?
    {
        return Ok(status);
    }
    // It may exit in between; a failed signal is then harmless.
    let _ = kill_process(Pid::from_child(child), signal);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(waiting(e)),
        }
    }
    let _ = child.kill();
    child.wait().map_err(waiting)
}

/// Runs a helper command to completion; its output, or an error quoting it.
fn run(mut command: Command) -> Result<String, ServiceError> {
    let line = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(ServiceError::io(format!("running {line}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(ServiceError::Command {
            command: line,
            status: out.status.to_string(),
            output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
        })
    }
}

/// The last [`LOG_TAIL`] bytes of a log.
fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_entries_give_uid_and_gid() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(passwd_entry(text, "postgres"), Some((101, 104)));
        assert_eq!(passwd_entry(text, "root"), Some((0, 0)));
        assert_eq!(passwd_entry(text, "post"), None);
        assert_eq!(passwd_entry("postgres:x:abc:1:", "postgres"), None);
    }

    #[test]
    fn newest_postgres_version_sorts_last() {
        let mut versions: Vec<Vec<u32>> = ["9.6", "15", "13", "16"]
            .iter()
            .filter_map(|v| version_key(v))
            .collect();
        versions.sort();
        assert_eq!(versions.last(), Some(&vec![16]));
        assert_eq!(versions.first(), Some(&vec![9, 6]));
        assert_eq!(version_key("lib"), None);
    }

    #[test]
    fn a_taken_port_is_told_apart_from_other_exits() {
        let exited = |log: &str| ServiceError::Exited {
            binary: "nats-server".to_owned(),
            port: 1,
            status: "exit status: 1".to_owned(),
            log: log.to_owned(),
        };
        assert!(lost_port_race(&exited(
            "[FTL] Error listening on port: 127.0.0.1:4222, \"listen tcp 127.0.0.1:4222: bind: address already in use\""
        )));
        assert!(lost_port_race(&exited(
            "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use"
        )));
        assert!(!lost_port_race(&exited(
            "FATAL:  data directory has wrong ownership"
        )));
        assert!(
            ServiceError::Unsupported("x".to_owned()).is_unavailable()
                && !exited("").is_unavailable()
        );
    }
}
