//! The proxies under test as child processes, and their CPU time and memory read
//! from `/proc` (summed over the process and its descendants: nginx's master and
//! workers).
//!
//! - Meridian: this binary's hidden `serve-ingress` subcommand.
//! - HAProxy: `haproxy -f <cfg> -db` (foreground), `mode tcp`, routing on
//!   `req.ssl_sni` after `req_ssl_hello_type 1`.
//! - nginx: `nginx -c <cfg> -p <dir> -g 'daemon off;'`, `stream` with
//!   `ssl_preread on` and a `map $ssl_preread_server_name`, and
//!   `proxy_half_close on` (nginx ≥ 1.21.4): without it nginx closes both sides
//!   on the client's FIN, so the upstream's close_notify is lost (HAProxy and
//!   Meridian pass half-closes through).
//!
//! Each runs from a generated config in its own temporary directory, never as
//! the system service, and is stopped (SIGTERM, then SIGKILL) when dropped.

use crate::procfs::{clock_ticks, cpu_ticks, stat_fields, status_kib};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::tls::SNI;

/// How long a proxy may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A proxy running as a child process.
pub struct ProxyProcess {
    child: Child,
    /// Where it accepts connections.
    pub addr: SocketAddr,
    /// Its config and logs; removed when dropped.
    _dir: tempfile::TempDir,
    /// What `log()` reads when the proxy fails.
    log_files: Vec<PathBuf>,
    clock_ticks: f64,
}

/// CPU time and memory of a proxy's processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU seconds since each process started.
    pub cpu_seconds: f64,
    /// Sum of each process's peak resident set (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
}

/// A binary in `PATH` or an `sbin` directory (where Debian puts haproxy and nginx,
/// and which a non-root `PATH` may lack).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// How nginx can load its `stream` module: built in, from a `.so`, or not at all.
pub enum NginxStream {
    /// Compiled in.
    Static,
    /// A dynamic module at this path.
    Module(PathBuf),
}

/// Whether `nginx` has the `stream` and `ssl_preread` modules; `Err` says why not
/// and what to install.
pub fn nginx_stream(nginx: &Path) -> anyhow::Result<NginxStream> {
    let output = Command::new(nginx)
        .arg("-V")
        .output()
        .context("running nginx -V")?;
    let flags = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    if !flags.contains("--with-stream_ssl_preread_module") {
        bail!("nginx is built without ssl_preread (--with-stream_ssl_preread_module)");
    }
    if !flags.contains("--with-stream=dynamic") {
        return if flags.contains("--with-stream") {
            Ok(NginxStream::Static)
        } else {
            bail!("nginx is built without the stream module")
        };
    }
    [
        "/usr/lib/nginx/modules",
        "/usr/lib64/nginx/modules",
        "/usr/share/nginx/modules",
        "/etc/nginx/modules",
    ]
    .iter()
    .map(|dir| Path::new(dir).join("ngx_stream_module.so"))
    .find(|so| so.is_file())
    .map(NginxStream::Module)
    .context("nginx's stream module is not installed (Debian/Ubuntu: apt-get install -y libnginx-mod-stream)")
}

impl ProxyProcess {
    /// Meridian's SNI router: this binary's `serve-ingress`, with `threads`
    /// runtime threads.
    pub fn meridian(upstream: SocketAddr, threads: usize) -> anyhow::Result<ProxyProcess> {
        let dir = tempfile::tempdir()?;
        let exe = std::env::current_exe().context("locating meridian-bench")?;
        let mut child = Command::new(exe)
            .args(["serve-ingress", "--listen", "127.0.0.1:0", "--route"])
            .arg(format!("{SNI}={upstream}"))
            .arg("--worker-threads")
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting meridian-bench serve-ingress")?;
        let stdout = child.stdout.take().context("serve-ingress stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|addr| addr.parse().ok());
        let mut process = ProxyProcess {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            _dir: dir,
            log_files: Vec::new(),
            clock_ticks: clock_ticks(),
        };
        match addr {
            Some(addr) => process.addr = addr,
            None => bail!("serve-ingress did not start (printed {line:?})"),
        }
        Ok(process)
    }

    /// HAProxy in TCP mode, routing by SNI, with `nbthread threads`.
    pub fn haproxy(
        binary: &Path,
        upstream: SocketAddr,
        threads: usize,
    ) -> anyhow::Result<ProxyProcess> {
        let dir = tempfile::tempdir()?;
        let addr = free_port()?;
        let config = format!(
            "global
    nbthread {threads}
    log stderr format short local0 err

defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend sni
    bind {addr}
    tcp-request inspect-delay 5s
    tcp-request content accept if {{ req_ssl_hello_type 1 }}
    use_backend echo if {{ req.ssl_sni -i {SNI} }}

backend echo
    server upstream {upstream}
"
        );
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, config)?;
        let log = dir.path().join("haproxy.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg("-f")
            .arg(&config_path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting haproxy")?;
        Ok(ProxyProcess {
            child,
            addr,
            _dir: dir,
            log_files: vec![log],
            clock_ticks: clock_ticks(),
        })
    }

    /// nginx `stream` with `ssl_preread`, routing by a `map` of the server name,
    /// with `worker_processes threads`.
    pub fn nginx(
        binary: &Path,
        stream: &NginxStream,
        upstream: SocketAddr,
        threads: usize,
    ) -> anyhow::Result<ProxyProcess> {
        let dir = tempfile::tempdir()?;
        let addr = free_port()?;
        let prefix = dir.path();
        let mut config = String::new();
        if let NginxStream::Module(so) = stream {
            writeln!(config, "load_module {};", so.display())?;
        }
        write!(
            config,
            "worker_processes {threads};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
events {{
    worker_connections 16384;
}}
stream {{
    map $ssl_preread_server_name $backend {{
        {SNI} echo;
        default unknown;
    }}
    upstream echo {{
        server {upstream};
    }}
    upstream unknown {{
        server 127.0.0.1:1;
    }}
    server {{
        listen {addr};
        ssl_preread on;
        preread_timeout 5s;
        proxy_pass $backend;
        proxy_connect_timeout 5s;
        proxy_timeout 1h;
        proxy_half_close on;
    }}
}}
",
            prefix = prefix.display()
        )?;
        let config_path = prefix.join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let log = prefix.join("nginx.out");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .arg("-p")
            .arg(prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting nginx")?;
        Ok(ProxyProcess {
            child,
            addr,
            log_files: vec![log, prefix.join("error.log")],
            _dir: dir,
            clock_ticks: clock_ticks(),
        })
    }

    /// Whether the process still runs; `Err` carries its exit and its logs.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("the proxy exited ({status}); its log:\n{}", self.log()),
        }
    }

    /// The proxy's log files, for error messages.
    pub fn log(&self) -> String {
        self.log_files
            .iter()
            .filter_map(|file| std::fs::read_to_string(file).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// CPU seconds and peak RSS, summed over the process and its descendants.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for pid in process_tree(self.child.id()) {
            if let Some((utime, stime)) = cpu_ticks(pid) {
                usage.cpu_seconds += (utime + stime) as f64 / self.clock_ticks;
            }
            usage.peak_rss_bytes += status_kib(Some(pid), "VmHWM:").unwrap_or(0) * 1024;
        }
        usage
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let tree = process_tree(self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        drop(self.child.stdin.take());
        let started = Instant::now();
        while started.elapsed() < STOP_GRACE {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Descendants that outlived their parent (nginx workers after a SIGKILL).
        let left: Vec<String> = tree
            .iter()
            .skip(1)
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
            .map(u32::to_string)
            .collect();
        if !left.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&left)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A loopback address with a port free right now (HAProxy and nginx need one in
/// their config; another process taking it first would fail that path's start).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?)
}

/// `root` and every process descended from it, from each `/proc/<pid>/stat`'s ppid.
fn process_tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat_fields(pid)?.get(1)?.parse().ok()?)))
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    tree
}
