//! The real `meridian` binary as child processes of the benchmarks, and their CPU
//! time and peak memory read from `/proc`.
//!
//! Each child's stdout is piped (the benchmarks wait for the lines the commands
//! print when ready: addresses, "listening on", …) and kept open for the child's
//! life; its stderr goes to a log file shown when it fails. Children are killed
//! (SIGKILL) when dropped.

use crate::procfs::{clock_ticks, cpu_ticks, status_kib};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long a child may take to print the line it is waited for.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The `meridian` binary: `given`, or the one next to this benchmark's own
/// executable (`target/<profile>/meridian`, built by `cargo build -p meridian-cli`).
pub(crate) fn meridian_bin(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = match given {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()
            .context("locating meridian-bench")?
            .parent()
            .context("meridian-bench has no parent directory")?
            .join(format!("meridian{}", std::env::consts::EXE_SUFFIX)),
    };
    if !bin.is_file() {
        bail!(
            "{} is missing: build it with `cargo build -p meridian-cli` (same profile), or pass --meridian-bin",
            bin.display()
        );
    }
    Ok(bin)
}

/// A loopback address whose port is free right now (for flags that need a fixed
/// address before the process starts).
pub(crate) fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?)
}

/// CPU time and memory of one process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    /// User + system CPU seconds since the process started (all its threads).
    pub(crate) cpu_seconds: f64,
    /// Peak resident set (`VmHWM`), bytes.
    pub(crate) peak_rss_bytes: u64,
}

impl Usage {
    /// CPU seconds used between `self` (earlier) and `later`.
    pub(crate) fn cpu_until(self, later: Usage) -> f64 {
        (later.cpu_seconds - self.cpu_seconds).max(0.0)
    }
}

/// A running `meridian` child process.
pub(crate) struct Process {
    /// What it is, for messages (`zone-a egress`).
    pub(crate) label: String,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    /// What it printed on stdout so far (as far as it was read).
    printed: Vec<String>,
    log: PathBuf,
    clock_ticks: f64,
}

impl Process {
    /// Starts `bin args…`, stderr to `log` (with `RUST_LOG`, default `warn`).
    pub(crate) fn spawn(
        label: &str,
        bin: &Path,
        args: &[String],
        log: PathBuf,
    ) -> anyhow::Result<Process> {
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("MERIDIAN_BENCH_CHILD_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {label} ({})", bin.display()))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        Ok(Process {
            label: label.to_owned(),
            child,
            stdout: BufReader::new(stdout).lines(),
            printed: Vec::new(),
            log,
            clock_ticks: clock_ticks(),
        })
    }

    /// Reads stdout lines until `pick` returns `Some` (within 60 s).
    pub(crate) async fn wait_for_line<T>(
        &mut self,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let read = async {
            while let Ok(Some(line)) = self.stdout.next_line().await {
                self.printed.push(line.clone());
                if let Some(found) = pick(&line) {
                    return Some(found);
                }
            }
            None
        };
        let outcome = tokio::time::timeout(READY_WITHIN, read).await;
        match outcome {
            Ok(Some(found)) => Ok(found),
            Ok(None) => bail!(
                "{} exited before it was ready; stdout: {:?}; log:\n{}",
                self.label,
                self.printed,
                self.log_tail()
            ),
            Err(_) => bail!(
                "{} was not ready within {READY_WITHIN:?}; stdout: {:?}; log:\n{}",
                self.label,
                self.printed,
                self.log_tail()
            ),
        }
    }

    /// Waits for a line containing `ready`.
    pub(crate) async fn wait_until(&mut self, ready: &str) -> anyhow::Result<()> {
        self.wait_for_line(|line| line.contains(ready).then_some(()))
            .await
    }

    /// `Err` (with its log) when the process has exited.
    pub(crate) fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}); log:\n{}",
                self.label,
                self.log_tail()
            ),
        }
    }

    /// The last lines of its log.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Its CPU seconds and peak RSS so far (zero once it has exited).
    /// The child's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) fn usage(&self) -> Usage {
        let Some(pid) = self.child.id() else {
            return Usage::default();
        };
        Usage {
            cpu_seconds: cpu_ticks(pid).map_or(0.0, |(utime, stime)| {
                (utime + stime) as f64 / self.clock_ticks
            }),
            peak_rss_bytes: status_kib(Some(pid), "VmHWM:").unwrap_or(0) * 1024,
        }
    }
}
