//! The real `meridian` binary as a child process.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The `meridian` binary built for this test run (`target/<profile>/meridian`).
///
/// `cargo test --workspace` builds it, because the CLI crate has integration tests.
pub fn meridian_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/meridian
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("meridian{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p meridian-cli` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// A running `meridian` server, killed when dropped.
pub struct MeridianProcess {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    /// The REST API's base URL, as the process printed it.
    pub api_url: String,
    /// What the process printed on stdout up to and including the API line.
    pub banner: Vec<String>,
}

impl MeridianProcess {
    /// Starts `meridian global-cp` on `database_url` with free API and KDS ports and
    /// a fresh data directory, waiting for it to print its API address. `extra` is
    /// appended to the command line.
    pub async fn global_cp(database_url: &str, extra: &[&str]) -> Self {
        let data_dir =
            std::env::temp_dir().join(format!("meridian-global-{:x}", rand::random::<u64>()));
        let data_dir = data_dir.to_string_lossy().into_owned();
        let mut args = vec![
            "global-cp",
            "--database-url",
            database_url,
            "--data-dir",
            &data_dir,
        ];
        args.extend_from_slice(&["--api-addr", "127.0.0.1:0", "--kds-addr", "127.0.0.1:0"]);
        args.extend_from_slice(extra);
        Self::start(&args).await
    }

    /// Starts `meridian <args>` (a server command), waiting for it to print its REST
    /// API address.
    pub async fn start(args: &[&str]) -> Self {
        let mut process = Self::spawn(args);
        process.api_url = process
            .wait_for_line(|line| line.split("REST API on ").nth(1).map(str::to_owned))
            .await;
        process
    }

    /// Starts `meridian <args>` and waits until it prints a line containing
    /// `ready` (for commands without a REST API, such as the proxies).
    pub async fn start_until(args: &[&str], ready: &str) -> Self {
        let mut process = Self::spawn(args);
        process
            .wait_for_line(|line| line.contains(ready).then_some(()))
            .await;
        process
    }

    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(meridian_bin())
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn meridian");
        let stdout = child.stdout.take().expect("piped stdout");
        MeridianProcess {
            child,
            stdout: BufReader::new(stdout).lines(),
            api_url: String::new(),
            banner: Vec::new(),
        }
    }

    /// Reads stdout lines until `pick` returns `Some`, failing after 60 s.
    pub async fn wait_for_line<T>(&mut self, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let read = async {
            while let Ok(Some(line)) = self.stdout.next_line().await {
                self.banner.push(line.clone());
                if let Some(found) = pick(&line) {
                    return Some(found);
                }
            }
            None
        };
        match tokio::time::timeout(Duration::from_secs(60), read).await {
            Ok(Some(found)) => found,
            Ok(None) => panic!(
                "meridian exited before printing the expected line; it printed: {:?}",
                self.banner
            ),
            Err(_) => panic!(
                "meridian did not print the expected line within 60 s; it printed: {:?}",
                self.banner
            ),
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and waits for a clean exit, returning the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            // `kill(1)` keeps the harness free of unsafe libc calls.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("meridian exits within 30 s of SIGTERM")
            .expect("wait for meridian")
    }
}

/// Runs a `meridian` client command to completion.
pub async fn run_cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(meridian_bin());
    command
        .args(args)
        .env_remove("MERIDIAN_TOKEN")
        .env_remove("MERIDIAN_API");
    for (key, value) in env {
        command.env(key, value);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("meridian finishes within 60 s")
        .expect("run meridian")
}
