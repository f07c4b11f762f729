//! A private PostgreSQL server for one test, which the test may stop and start
//! again: outages of the database itself, without touching the machine's shared
//! server.
//!
//! The server's data and socket live in a fresh directory under `/tmp`, it listens on
//! `127.0.0.1:<free port>` with `trust` authentication and `fsync=off`, and it is
//! stopped and removed when the [`PgInstance`] drops. PostgreSQL refuses to run as
//! root, so as root the commands run as the `postgres` user (`runuser`), which then
//! owns the directory.
//!
//! The binaries are looked up as `/usr/lib/postgresql/<version>/bin/{initdb,pg_ctl}`
//! (the newest version), or in `pg_config --bindir`. [`PgInstance::start`] returns
//! `None` when they are missing, so a test can skip with a message.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use crate::scratch::free_port;

/// A running (or stopped) private PostgreSQL server.
pub struct PgInstance {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The directory holding `initdb` and `pg_ctl`, if PostgreSQL's server binaries are
/// installed.
pub fn server_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let output = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()?;
    let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    has_tools(&bin).then_some(bin)
}

/// Whether this process runs as root (the owner of `/proc/self` is its user).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl PgInstance {
    /// Initialises and starts a server on a free port; `None` (after saying why on
    /// stderr) when PostgreSQL's server binaries are not installed.
    pub async fn start() -> Option<Self> {
        let Some(bin) = server_bin_dir() else {
            eprintln!(
                "SKIPPED: PostgreSQL server binaries (initdb, pg_ctl) not found under \
                 /usr/lib/postgresql/*/bin or `pg_config --bindir`; install the server \
                 package (e.g. `apt-get install postgresql`) to run this test"
            );
            return None;
        };
        let dir = PathBuf::from(format!("/tmp/meridian-pg-{:016x}", rand::random::<u64>()));
        let as_postgres = running_as_root();
        if as_postgres {
            let status = std::process::Command::new("install")
                .args(["-d", "-o", "postgres", "-g", "postgres"])
                .arg(&dir)
                .status()
                .expect("run install(1)");
            assert!(status.success(), "creating {} for postgres", dir.display());
        } else {
            std::fs::create_dir_all(&dir).expect("create the PostgreSQL directory");
        }
        let instance = PgInstance {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = instance.data_dir();
        let output = instance
            .run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            )
            .await;
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        instance.start_again().await;
        Some(instance)
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// The URL of the `postgres` database as the `postgres` user.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The TCP port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the (stopped) server on its port and waits until it accepts
    /// connections.
    pub async fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").to_string_lossy().into_owned();
        let output = self
            .run(
                "pg_ctl",
                &[
                    "-D",
                    &self.data_dir(),
                    "-l",
                    &log,
                    "-o",
                    &options,
                    "-w",
                    "start",
                ],
            )
            .await;
        assert!(
            output.status.success(),
            "pg_ctl start failed: {}{}\nlog: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server with `pg_ctl stop -m fast`: clients are disconnected, and new
    /// connections are refused until [`PgInstance::start_again`].
    pub async fn stop(&self) {
        let output = self
            .run(
                "pg_ctl",
                &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
            )
            .await;
        assert!(
            output.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn run(&self, tool: &str, args: &[&str]) -> Output {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command.args(args).current_dir(&self.dir).kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .unwrap_or_else(|_| panic!("{tool} did not finish within 60 s"))
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if self.as_postgres {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&pg_ctl)
                .args(args)
                .output()
        } else {
            std::process::Command::new(&pg_ctl).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
