//! A zone control plane run as a Raft group of real `meridian zone-cp` processes on
//! loopback, for the HA tests: start, kill (SIGKILL), restart on the same data
//! directory and ports, partition one replica from the others, and read each
//! replica's `/raft` view.
//!
//! With `partitionable`, every directed link between two replicas goes through its
//! own [`FaultProxy`]: replica `i` lists peer `j` at the proxy `i→j` in its
//! `--raft-peers`, so cutting the links of one replica isolates it both ways while
//! the others keep talking.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::eventually;
use crate::fault_proxy::FaultProxy;
use crate::process::MeridianProcess;
use crate::scratch::{Dir, free_port};

/// The admin token of every replica.
pub const ZONE_ADMIN: &str = "zone-admin";

/// How the group is started.
#[derive(Debug, Clone, Default)]
pub struct GroupOptions {
    /// How many replicas (3 or 5).
    pub replicas: u64,
    /// Mutual TLS between replicas, with a CA generated for the test.
    pub tls: bool,
    /// One fault proxy per directed link.
    pub partitionable: bool,
    /// `--raft-snapshot-every`.
    pub snapshot_every: Option<u64>,
    /// Global's KDS URL, its CA file and this zone's token file.
    pub global: Option<(String, String, String)>,
}

/// One replica.
pub struct Replica {
    /// The process; `None` while killed.
    pub process: Option<MeridianProcess>,
    /// Its REST API base URL.
    pub api: String,
    /// The URL its proxies dial.
    pub dp_url: String,
    args: Vec<String>,
}

/// The replicas of one zone.
pub struct ZoneGroup {
    /// The zone's name.
    pub zone: String,
    /// Replicas by Raft id.
    pub replicas: BTreeMap<u64, Replica>,
    /// Links by (from, to), when partitionable.
    links: BTreeMap<(u64, u64), FaultProxy>,
    http: reqwest::Client,
    _dir: Dir,
}

fn write_tls(dir: &Dir, ids: &[u64]) -> BTreeMap<u64, [String; 3]> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let ca_file = dir.path("raft-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    ids.iter()
        .map(|id| {
            let key = KeyPair::generate().expect("replica key");
            let mut params =
                CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                    .expect("replica params");
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &ca).expect("replica certificate");
            let cert_file = dir.path(&format!("raft-{id}.pem"));
            let key_file = dir.path(&format!("raft-{id}-key.pem"));
            std::fs::write(&cert_file, cert.pem()).expect("write cert");
            std::fs::write(&key_file, key.serialize_pem()).expect("write key");
            (*id, [cert_file, key_file, ca_file.clone()])
        })
        .collect()
}

impl ZoneGroup {
    /// Starts every replica at once (the group needs a majority to elect a leader)
    /// and waits until each serves its API.
    pub async fn start(name: &str, zone: &str, options: GroupOptions) -> ZoneGroup {
        crate::init();
        let dir = Dir::new(name);
        let ids: Vec<u64> = (1..=options.replicas).collect();
        let raft_ports: BTreeMap<u64, u16> = ids.iter().map(|id| (*id, free_port())).collect();
        let mut links = BTreeMap::new();
        if options.partitionable {
            for from in &ids {
                for to in &ids {
                    if from != to {
                        let upstream = format!("127.0.0.1:{}", raft_ports[to])
                            .parse()
                            .expect("address");
                        links.insert((*from, *to), FaultProxy::start(upstream).await);
                    }
                }
            }
        }
        let tls = options.tls.then(|| write_tls(&dir, &ids));
        let mut replicas = BTreeMap::new();
        for id in &ids {
            let peers: Vec<String> = ids
                .iter()
                .map(|peer| match links.get(&(*id, *peer)) {
                    Some(link) => format!("{peer}={}", link.addr()),
                    None => format!("{peer}=127.0.0.1:{}", raft_ports[peer]),
                })
                .collect();
            let api_port = free_port();
            let dp_port = free_port();
            let mut args: Vec<String> = [
                "zone-cp",
                "--zone",
                zone,
                "--api-addr",
                &format!("127.0.0.1:{api_port}"),
                "--dp-addr",
                &format!("127.0.0.1:{dp_port}"),
                "--data-dir",
                &dir.path(&format!("replica-{id}")),
                "--admin-token",
                ZONE_ADMIN,
                "--raft-id",
                &id.to_string(),
                "--raft-addr",
                &format!("127.0.0.1:{}", raft_ports[id]),
                "--raft-peers",
                &peers.join(","),
                // Short timeouts keep failover tests fast: elections after 0.5–1 s.
                "--raft-heartbeat",
                "100ms",
            ]
            .iter()
            .map(ToString::to_string)
            .collect();
            if let Some(every) = options.snapshot_every {
                args.extend(["--raft-snapshot-every".to_owned(), every.to_string()]);
            }
            if let Some(files) = tls.as_ref().map(|t| &t[id]) {
                args.extend([
                    "--raft-tls-cert".to_owned(),
                    files[0].clone(),
                    "--raft-tls-key".to_owned(),
                    files[1].clone(),
                    "--raft-tls-ca".to_owned(),
                    files[2].clone(),
                ]);
            }
            if let Some((kds, ca, token)) = &options.global {
                args.extend([
                    "--global-kds".to_owned(),
                    kds.clone(),
                    "--global-kds-ca".to_owned(),
                    ca.clone(),
                    "--zone-token".to_owned(),
                    token.clone(),
                ]);
            }
            replicas.insert(
                *id,
                Replica {
                    process: None,
                    api: format!("http://127.0.0.1:{api_port}"),
                    dp_url: format!("http://127.0.0.1:{dp_port}"),
                    args,
                },
            );
        }
        let starts = replicas.values().map(|r| {
            let args: Vec<&str> = r.args.iter().map(String::as_str).collect();
            async move { MeridianProcess::start(&args).await }
        });
        let processes = futures::future::join_all(starts).await;
        for (replica, process) in replicas.values_mut().zip(processes) {
            replica.process = Some(process);
        }
        ZoneGroup {
            zone: zone.to_owned(),
            replicas,
            links,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Replica `id`'s API URL.
    pub fn api(&self, id: u64) -> &str {
        &self.replicas[&id].api
    }

    /// The ids of the replicas running.
    pub fn running(&self) -> Vec<u64> {
        self.replicas
            .iter()
            .filter(|(_, r)| r.process.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// `GET /raft` on replica `id`, `None` if it does not answer.
    pub async fn status(&self, id: u64) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/raft", self.api(id)))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// Waits until a running replica other than those in `not` leads with a quorum
    /// and every other running replica outside `not` follows it; answers its id.
    pub async fn leader_except(&self, not: &[u64], within: Duration) -> u64 {
        eventually("a replica leads with a quorum", within, || async {
            let mut leader = None;
            let mut views = Vec::new();
            for id in self.running().into_iter().filter(|id| !not.contains(id)) {
                let status = self.status(id).await?;
                if status["leadsWithQuorum"] == true {
                    leader = Some(id);
                }
                views.push(status["leader"].as_u64());
            }
            let leader = leader?;
            views.iter().all(|v| *v == Some(leader)).then_some(leader)
        })
        .await
    }

    /// Starts a sidecar `name` for service `web` that knows the replicas in
    /// `order` (it dials the first, and the next when a connection fails).
    pub async fn sidecar(&self, name: &str, order: &[u64]) -> MeridianProcess {
        let urls: Vec<&str> = order
            .iter()
            .map(|id| self.replicas[id].dp_url.as_str())
            .collect();
        let inbound = format!("127.0.0.1:{}=127.0.0.1:{}", free_port(), free_port());
        MeridianProcess::start_until(
            &[
                "dp",
                "--zone-cp",
                &urls.join(","),
                "--mesh",
                "default",
                "--name",
                name,
                "--service",
                "web",
                "--inbound",
                &inbound,
            ],
            "meridian dp",
        )
        .await
    }

    /// Kills replica `id` at once (SIGKILL).
    pub async fn kill(&mut self, id: u64) {
        let replica = self.replicas.get_mut(&id).expect("replica");
        if let Some(process) = replica.process.take() {
            process.kill().await;
        }
    }

    /// Starts replica `id` again on its data directory and ports.
    pub async fn restart(&mut self, id: u64) {
        let replica = self.replicas.get_mut(&id).expect("replica");
        let args: Vec<&str> = replica.args.iter().map(String::as_str).collect();
        replica.process = Some(MeridianProcess::start(&args).await);
    }

    /// Cuts every link to and from replica `id`.
    pub fn isolate(&self, id: u64) {
        for ((from, to), link) in &self.links {
            if *from == id || *to == id {
                link.cut();
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for link in self.links.values() {
            link.restore();
        }
    }

    /// PUTs a ZoneIngress named `name` on replica `id`; answers the HTTP status
    /// (0 when the replica did not answer).
    pub async fn put_ingress(&self, id: u64, name: &str) -> u16 {
        let doc = json!({"type": "ZoneIngress", "name": name,
            "networking": {"address": "10.0.0.5", "port": 10001}});
        self.put(id, &format!("/zoneingresses/{name}"), doc).await
    }

    /// PUTs `doc` at `path` on replica `id`; answers the HTTP status (0 when the
    /// replica did not answer).
    pub async fn put(&self, id: u64, path: &str, doc: Value) -> u16 {
        match self
            .http
            .put(format!("{}{path}", self.api(id)))
            .bearer_auth(ZONE_ADMIN)
            .json(&doc)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// The names in a collection listed on replica `id`.
    pub async fn names(&self, id: u64, path: &str) -> Option<Vec<String>> {
        crate::scrape::names(&self.http, &format!("{}{path}", self.api(id))).await
    }

    /// The sample `series` of replica `id`'s metrics.
    pub async fn metric(&self, id: u64, series: &str) -> Option<f64> {
        crate::scrape::metric(&self.http, self.api(id), series).await
    }
}
