//! A multi-zone mesh of real processes on loopback, for end-to-end tests of
//! the data path: global on PostgreSQL, zone CPs on their embedded stores,
//! zone ingresses, sidecars (`meridian dp`) and demo echo services, each a
//! `meridian` child process killed when the test ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::postgres::TestDatabase;
use crate::process::MeridianProcess;
use crate::scratch::{Dir, free_addr, free_port};

/// The admin token of every control plane in a [`Cluster`].
pub const ADMIN: &str = "cluster-admin";

/// One zone control plane.
pub struct Zone {
    /// The process.
    pub process: MeridianProcess,
    /// Its REST API base URL.
    pub api: String,
    /// The URL its proxies dial (`--zone-cp`).
    pub dp_url: String,
}

/// Which zone proxy [`Cluster::zone_proxy`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneProxyKind {
    /// `meridian zone-ingress`.
    Ingress,
    /// `meridian zone-egress`.
    Egress,
}

/// A zone ingress or egress started by [`Cluster::zone_proxy`].
pub struct ZoneProxy {
    /// The process.
    pub process: MeridianProcess,
    /// Where it accepts connections.
    pub listen: SocketAddr,
    /// Its admin server's base URL (`/metrics`, `/readyz`).
    pub admin: String,
}

/// Global plus zones.
pub struct Cluster {
    /// Scratch space for data dirs and token files.
    pub dir: Dir,
    /// Global, on PostgreSQL; `None` after [`Cluster::kill_global`].
    pub global: Option<MeridianProcess>,
    /// Global's REST API base URL.
    pub api: String,
    /// The zones by name.
    pub zones: BTreeMap<String, Zone>,
    /// Global's KDS URL.
    pub kds_url: String,
    /// The CA zones trust for global's KDS certificate (a file).
    pub kds_ca: String,
    /// Global's command line, to restart it on the same ports and data.
    global_args: Vec<String>,
    http: reqwest::Client,
    _database: TestDatabase,
}

impl Cluster {
    /// Starts global and `zones`, and applies an mTLS `default` mesh (with
    /// Kuma's initial MeshRetry only).
    pub async fn start(name: &str, zones: &[&str]) -> Cluster {
        crate::init();
        let database = TestDatabase::create().await;
        let dir = Dir::new(name);
        let global_dir = dir.path("global");
        // Fixed ports, so a restarted global is where the zones look for it.
        let global_args: Vec<String> = [
            "global-cp",
            "--database-url",
            &database.url,
            "--data-dir",
            &global_dir,
            "--api-addr",
            &free_addr(),
            "--kds-addr",
            &free_addr(),
            "--admin-token",
            ADMIN,
            "--skip-default-mesh",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let args: Vec<&str> = global_args.iter().map(String::as_str).collect();
        let mut global = MeridianProcess::start(&args).await;
        let (kds, ca) = global
            .wait_for_line(|line| {
                let rest = line.split("KDS on ").nth(1)?;
                let (url, ca) = rest.split_once(" (zones trust ")?;
                Some((url.to_owned(), ca.trim_end_matches(')').to_owned()))
            })
            .await;
        let mut cluster = Cluster {
            api: global.api_url.clone(),
            global: Some(global),
            zones: BTreeMap::new(),
            kds_url: kds.clone(),
            kds_ca: ca.clone(),
            global_args,
            http: reqwest::Client::new(),
            dir,
            _database: database,
        };
        // Without Kuma's initial timeouts and circuit breaker, so a test's
        // zones hold exactly the MeshTimeouts it writes (`rest_api` covers the
        // initial policies); with its MeshRetry (5 connect attempts), as a
        // Kuma mesh has.
        cluster
            .apply(json!({"type": "Mesh", "name": "default",
                "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
                "skipCreatingInitialPolicies": ["MeshTimeout", "MeshCircuitBreaker"]}))
            .await;
        for zone in zones {
            cluster.start_zone(zone, &kds, &ca).await;
        }
        // Proxies register once their mesh is in their zone.
        for zone in zones {
            let mesh = json!({"type": "Mesh", "name": "default"});
            cluster.wait_synced(zone, &mesh).await;
        }
        cluster
    }

    /// Issues a token for `zone` on global and writes it to a file; answers the path.
    pub async fn zone_token_file(&self, zone: &str) -> String {
        let token = issue_zone_token(&self.http, &self.api, ADMIN, zone).await;
        let token_file = self.dir.path(&format!("{zone}.token"));
        std::fs::write(&token_file, token).expect("write token");
        token_file
    }

    async fn start_zone(&mut self, zone: &str, kds: &str, ca: &str) {
        let token_file = self.zone_token_file(zone).await;
        let dp_addr = free_addr();
        let data_dir = self.dir.path(zone);
        let process = MeridianProcess::start(&[
            "zone-cp",
            "--zone",
            zone,
            "--global-kds",
            kds,
            "--global-kds-ca",
            ca,
            "--zone-token",
            &token_file,
            "--api-addr",
            "127.0.0.1:0",
            "--dp-addr",
            &dp_addr,
            "--data-dir",
            &data_dir,
            "--admin-token",
            ADMIN,
        ])
        .await;
        let api = process.api_url.clone();
        self.zones.insert(
            zone.to_owned(),
            Zone {
                process,
                api,
                dp_url: format!("http://{dp_addr}"),
            },
        );
    }

    fn zone(&self, zone: &str) -> &Zone {
        self.zones
            .get(zone)
            .unwrap_or_else(|| panic!("no zone {zone}"))
    }

    /// Creates or updates a resource on global (Kuma universal document).
    pub async fn apply(&self, doc: Value) {
        let url = resource_url(&self.api, &doc);
        let response = self
            .http
            .put(&url)
            .bearer_auth(ADMIN)
            .json(&doc)
            .send()
            .await
            .expect("PUT reaches global");
        let status = response.status();
        assert!(
            status.is_success(),
            "PUT {url}: {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Deletes a resource on global.
    pub async fn delete(&self, doc: &Value) {
        let url = resource_url(&self.api, doc);
        let response = self
            .http
            .delete(&url)
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("DELETE");
        assert!(
            response.status().is_success(),
            "DELETE {url}: {}",
            response.status()
        );
    }

    /// Waits until `zone` serves `doc` as global has it (the policy reached it).
    pub async fn wait_synced(&self, zone: &str, doc: &Value) {
        let url = resource_url(&self.zone(zone).api, doc);
        let http = self.http.clone();
        crate::eventually(&format!("{url} synced"), Duration::from_secs(30), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let got: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                let same = got.get("name") == doc.get("name")
                    && (doc.get("spec").is_none() || got.get("spec") == doc.get("spec"));
                same.then_some(())
            }
        })
        .await;
    }

    /// Starts a zone ingress in `zone`; returns it and its address.
    pub async fn ingress(&self, zone: &str) -> (MeridianProcess, SocketAddr) {
        let listen = free_addr();
        let process = MeridianProcess::start_until(
            &[
                "zone-ingress",
                "--zone-cp",
                &self.zone(zone).dp_url,
                "--name",
                &format!("ingress-{zone}"),
                "--listen",
                &listen,
            ],
            "listening on",
        )
        .await;
        (process, listen.parse().expect("ingress address"))
    }

    /// Starts a zone egress in `zone` with its admin server; returns it and
    /// the admin base URL.
    pub async fn egress(&self, zone: &str) -> (MeridianProcess, String) {
        let proxy = self.zone_proxy(ZoneProxyKind::Egress, zone).await;
        (proxy.process, proxy.admin)
    }

    /// Starts a zone ingress or egress in `zone` with its admin server.
    pub async fn zone_proxy(&self, kind: ZoneProxyKind, zone: &str) -> ZoneProxy {
        let (listen, admin) = (free_addr(), free_addr());
        let (command, name) = match kind {
            ZoneProxyKind::Ingress => ("zone-ingress", format!("ingress-{zone}")),
            ZoneProxyKind::Egress => ("zone-egress", format!("egress-{zone}")),
        };
        let process = MeridianProcess::start_until(
            &[
                command,
                "--zone-cp",
                &self.zone(zone).dp_url,
                "--name",
                &name,
                "--listen",
                &listen,
                "--admin-addr",
                &admin,
            ],
            "listening on",
        )
        .await;
        ZoneProxy {
            process,
            listen: listen.parse().expect("zone proxy address"),
            admin: format!("http://{admin}"),
        }
    }

    /// Starts a sidecar in `zone` for `service`, with an inbound in front of
    /// `app` (if any), outbounds `(local port, service)`, and extra inbound tags.
    pub async fn sidecar(
        &self,
        zone: &str,
        name: &str,
        service: &str,
        app: Option<SocketAddr>,
        outbounds: &[(u16, &str)],
        tags: &[&str],
    ) -> MeridianProcess {
        let inbound = format!(
            "127.0.0.1:{}={}",
            free_port(),
            app.map_or_else(|| format!("127.0.0.1:{}", free_port()), |a| a.to_string())
        );
        let mut args = vec![
            "dp".to_owned(),
            "--zone-cp".to_owned(),
            self.zone(zone).dp_url.clone(),
            "--mesh".to_owned(),
            "default".to_owned(),
            "--name".to_owned(),
            name.to_owned(),
            "--service".to_owned(),
            service.to_owned(),
            "--inbound".to_owned(),
            inbound,
        ];
        for (port, target) in outbounds {
            args.push("--outbound".to_owned());
            args.push(format!("127.0.0.1:{port}={target}"));
        }
        for tag in tags {
            args.push("--tag".to_owned());
            args.push((*tag).to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        MeridianProcess::start_until(&args, "meridian dp").await
    }

    /// Starts a demo echo service answering with `identity`; returns it and its address.
    pub async fn echo(&self, identity: &str) -> (MeridianProcess, SocketAddr) {
        let listen = free_addr();
        let process = MeridianProcess::start_until(
            &["demo-echo", "--listen", &listen, "--identity", identity],
            "answering on",
        )
        .await;
        (process, listen.parse().expect("echo address"))
    }

    /// Kills global (SIGKILL): zones and proxies keep their last state.
    pub async fn kill_global(&mut self) {
        if let Some(global) = self.global.take() {
            global.kill().await;
        }
    }

    /// Starts global again on its ports, database and data directory.
    pub async fn restart_global(&mut self) {
        let args: Vec<&str> = self.global_args.iter().map(String::as_str).collect();
        self.global = Some(MeridianProcess::start(&args).await);
    }
}

/// Issues a one-hour token for `zone` on the global API at `api` (admin `admin`).
pub async fn issue_zone_token(
    http: &reqwest::Client,
    api: &str,
    admin: &str,
    zone: &str,
) -> String {
    let issued: Value = http
        .post(format!("{api}/tokens/zone"))
        .bearer_auth(admin)
        .json(&json!({"zone": zone, "validFor": "1h"}))
        .send()
        .await
        .expect("issue a zone token")
        .json()
        .await
        .expect("zone token JSON");
    issued["token"].as_str().expect("token").to_owned()
}

/// The REST URL of a resource document.
fn resource_url(api: &str, doc: &Value) -> String {
    let kind = doc["type"].as_str().expect("type");
    let name = doc["name"].as_str().expect("name");
    match kind {
        "Mesh" => format!("{api}/meshes/{name}"),
        _ => {
            let mesh = doc["mesh"].as_str().expect("mesh");
            let plural = meridian_model::ResourceKind::from_type_name(kind)
                .expect("known type")
                .plural();
            format!("{api}/meshes/{mesh}/{plural}/{name}")
        }
    }
}

/// One connection: writes `payload`, half-closes, reads everything back.
/// `Err` when the connection fails or closes without an answer.
pub async fn exchange(addr: SocketAddr, payload: &[u8]) -> Result<Vec<u8>, String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut reader, mut writer) = stream.split();
        let write = async {
            writer.write_all(payload).await?;
            writer.shutdown().await
        };
        let mut answer = Vec::new();
        let read = reader.read_to_end(&mut answer);
        let (written, read) = tokio::join!(write, read);
        read.map_err(|e| format!("read: {e}"))?;
        // A refused connection may reset while we still write; what was read decides.
        if answer.is_empty() {
            return Err(format!("closed without an answer (write: {written:?})"));
        }
        Ok(answer)
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()))
}

/// Who answered a demo echo exchange (the text before `": "`).
pub fn answered_by(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.split_once(": ")
        .map_or_else(|| text.to_string(), |(who, _)| who.to_owned())
}

/// Sends `n` connections to `addr` and counts who answered (failures as `"(failed)"`).
pub async fn tally(addr: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let who = match exchange(addr, b"hi").await {
            Ok(answer) => answered_by(&answer),
            Err(_) => "(failed)".to_owned(),
        };
        *counts.entry(who).or_insert(0) += 1;
    }
    counts
}
