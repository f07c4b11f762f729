//! The mesh under test, every part a real `meridian` process on loopback:
//!
//! ```text
//!  zone-a                                         zone-b
//!  client sidecar ─mTLS─▶ egress ──SNI splice──▶ ingress ──▶ server sidecar ──▶ demo echo
//!  (meridian dp,          (zone-egress)          (zone-ingress) (meridian dp,     (meridian
//!   --outbound …=echo)                                          --inbound PUB=APP) demo-echo)
//! ```
//!
//! Global runs on its embedded store in a temporary directory; each zone CP on
//! its own. The `default` mesh has builtin mTLS and `routing.zoneEgress: true`, so
//! zone-a's sidecar can only leave its zone through zone-a's egress; an allow-all
//! MeshTrafficPermission lets the client in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::process::{Process, free_addr};

const ADMIN: &str = "bench-admin-token";
/// The demo echo's identity; every connection's answer starts with it and ": ".
pub(crate) const IDENTITY: &str = "zone-b/echo";
/// How long the mesh may take to carry the first connection end to end.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

/// One zone CP.
struct Zone {
    _process: Process,
    api: String,
    dp_url: String,
}

/// Everything running; dropping it kills every process.
pub(crate) struct Mesh {
    /// Where the client app connects for `echo` (the client sidecar's outbound).
    pub(crate) outbound: SocketAddr,
    /// The demo echo app itself.
    pub(crate) echo: SocketAddr,
    /// The proxies on the path, in path order, with their admin base URLs (zone
    /// proxies only).
    pub(crate) proxies: Vec<(Process, Option<String>)>,
    /// The echo app.
    pub(crate) app: Process,
    _zones: Vec<Zone>,
    _global: Process,
    _dir: tempfile::TempDir,
}

impl Mesh {
    /// Starts everything and waits until a connection through the outbound is
    /// answered by zone-b's echo.
    pub(crate) async fn start(bin: &Path) -> anyhow::Result<Mesh> {
        let dir = tempfile::tempdir()?;
        let path = |name: &str| -> PathBuf { dir.path().join(name) };
        let text = |p: PathBuf| p.to_string_lossy().into_owned();
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

        let mut global = Process::spawn(
            "global",
            bin,
            &args(&[
                "global-cp",
                "--data-dir",
                &text(path("global")),
                "--api-addr",
                "127.0.0.1:0",
                "--kds-addr",
                "127.0.0.1:0",
                "--admin-token",
                ADMIN,
                "--skip-default-mesh",
            ]),
            path("global.log"),
        )?;
        let api = global
            .wait_for_line(|line| line.split("REST API on ").nth(1).map(str::to_owned))
            .await?;
        let (kds, ca) = global
            .wait_for_line(|line| {
                let rest = line.split("KDS on ").nth(1)?;
                let (url, ca) = rest.split_once(" (zones trust ")?;
                Some((url.to_owned(), ca.trim_end_matches(')').to_owned()))
            })
            .await?;
        let http = reqwest::Client::new();
        let mesh = json!({"type": "Mesh", "name": "default",
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
            "routing": {"zoneEgress": true}});
        put(&http, &format!("{api}/meshes/default"), &mesh).await?;
        put(
            &http,
            &format!("{api}/meshes/default/meshtrafficpermissions/allow-all"),
            &json!({"type": "MeshTrafficPermission", "name": "allow-all", "mesh": "default",
                "spec": {"targetRef": {"kind": "Mesh"},
                         "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}}),
        )
        .await?;

        let mut zones = Vec::new();
        for zone in ["zone-a", "zone-b"] {
            let issued: Value = http
                .post(format!("{api}/tokens/zone"))
                .bearer_auth(ADMIN)
                .json(&json!({"zone": zone, "validFor": "24h"}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let token_file = path(&format!("{zone}.token"));
            std::fs::write(&token_file, issued["token"].as_str().context("token")?)?;
            let dp_addr = free_addr()?.to_string();
            let mut process = Process::spawn(
                &format!("{zone} CP"),
                bin,
                &args(&[
                    "zone-cp",
                    "--zone",
                    zone,
                    "--global-kds",
                    &kds,
                    "--global-kds-ca",
                    &ca,
                    "--zone-token",
                    &text(token_file),
                    "--api-addr",
                    "127.0.0.1:0",
                    "--dp-addr",
                    &dp_addr,
                    "--data-dir",
                    &text(path(zone)),
                    "--admin-token",
                    ADMIN,
                ]),
                path(&format!("{zone}-cp.log")),
            )?;
            let zone_api = process
                .wait_for_line(|line| line.split("REST API on ").nth(1).map(str::to_owned))
                .await?;
            zones.push(Zone {
                _process: process,
                api: zone_api,
                dp_url: format!("http://{dp_addr}"),
            });
        }
        // Proxies register once the mesh (with its mTLS backend) is in their zone.
        for zone in &zones {
            wait_for_mesh(&http, &zone.api).await?;
        }
        let (zone_a, zone_b) = (&zones[0].dp_url, &zones[1].dp_url);

        let ingress_admin = free_addr()?.to_string();
        let mut ingress = Process::spawn(
            "zone-b ingress",
            bin,
            &args(&[
                "zone-ingress",
                "--zone-cp",
                zone_b,
                "--name",
                "ingress-zone-b",
                "--listen",
                &free_addr()?.to_string(),
                "--admin-addr",
                &ingress_admin,
            ]),
            path("ingress.log"),
        )?;
        ingress.wait_until("listening on").await?;

        let echo = free_addr()?;
        let mut app = Process::spawn(
            "zone-b echo app",
            bin,
            &args(&[
                "demo-echo",
                "--listen",
                &echo.to_string(),
                "--identity",
                IDENTITY,
            ]),
            path("echo.log"),
        )?;
        app.wait_until("answering on").await?;
        let mut server = Process::spawn(
            "zone-b server sidecar",
            bin,
            &args(&[
                "dp",
                "--zone-cp",
                zone_b,
                "--mesh",
                "default",
                "--name",
                "echo-1",
                "--service",
                "echo",
                "--inbound",
                &format!("{}={echo}", free_addr()?),
            ]),
            path("server-sidecar.log"),
        )?;
        server.wait_until("meridian dp").await?;

        let egress_admin = free_addr()?.to_string();
        let mut egress = Process::spawn(
            "zone-a egress",
            bin,
            &args(&[
                "zone-egress",
                "--zone-cp",
                zone_a,
                "--name",
                "egress-zone-a",
                "--listen",
                &free_addr()?.to_string(),
                "--admin-addr",
                &egress_admin,
            ]),
            path("egress.log"),
        )?;
        egress.wait_until("listening on").await?;
        let outbound = free_addr()?;
        let mut client = Process::spawn(
            "zone-a client sidecar",
            bin,
            &args(&[
                "dp",
                "--zone-cp",
                zone_a,
                "--mesh",
                "default",
                "--name",
                "client-1",
                "--service",
                "client",
                // Nothing connects to it; `meridian dp` needs one inbound.
                "--inbound",
                &format!("{}={}", free_addr()?, free_addr()?),
                "--outbound",
                &format!("{outbound}=echo"),
            ]),
            path("client-sidecar.log"),
        )?;
        client.wait_until("meridian dp").await?;

        let mut mesh = Mesh {
            outbound,
            echo,
            proxies: vec![
                (client, None),
                (egress, Some(format!("http://{egress_admin}"))),
                (ingress, Some(format!("http://{ingress_admin}"))),
                (server, None),
            ],
            app,
            _zones: zones,
            _global: global,
            _dir: dir,
        };
        mesh.converge().await?;
        Ok(mesh)
    }

    /// Polls connections through the outbound until zone-b's echo answers one.
    async fn converge(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + CONVERGE_WITHIN;
        loop {
            let last = match super::load::probe(self.outbound, IDENTITY).await {
                Ok(()) => return Ok(()),
                Err(error) => format!("{error:#}"),
            };
            for (proxy, _) in &mut self.proxies {
                proxy.check_running()?;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .proxies
                    .iter()
                    .map(|(p, _)| format!("--- {}:\n{}", p.label, p.log_tail()))
                    .collect();
                bail!(
                    "no answer from {IDENTITY} through {} within {CONVERGE_WITHIN:?} (last: {last})\n{}",
                    self.outbound,
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `meridian_zone_proxy_connections_forwarded_total` of each zone proxy.
    pub(crate) async fn forwarded(&self) -> Vec<(String, Option<f64>)> {
        let mut out = Vec::new();
        for (proxy, admin) in &self.proxies {
            let Some(admin) = admin else { continue };
            let count = async {
                let metrics = reqwest::get(format!("{admin}/metrics"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                metrics
                    .lines()
                    .filter(|l| l.starts_with("meridian_zone_proxy_connections_forwarded_total"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .reduce(|a, b| a + b)
            }
            .await;
            out.push((proxy.label.clone(), count));
        }
        out
    }
}

async fn put(http: &reqwest::Client, url: &str, doc: &Value) -> anyhow::Result<()> {
    let response = http.put(url).bearer_auth(ADMIN).json(doc).send().await?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "PUT {url}: {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Polls a zone's REST API until it serves the mesh with egress routing on.
async fn wait_for_mesh(http: &reqwest::Client, zone_api: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let got: Option<Value> = async {
            http.get(format!("{zone_api}/meshes/default"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }
        .await;
        if got.is_some_and(|mesh| mesh["routing"]["zoneEgress"] == json!(true)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{zone_api} did not get the mesh within {CONVERGE_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
