//! Zone at scale: one zone CP's data-plane server with many connected proxies,
//! many policies and many remote zones, and what a change costs it.
//!
//! The zone CP runs as a child process (`meridian-bench serve-zone`, hidden):
//! its own embedded store, seeded with an mTLS mesh and its CA, `--policies`
//! policies and one ingress per remote zone advertising every service, and the
//! data-plane server. It reads commands on stdin (`put <document>`, `settle`,
//! `stats`), so its RSS and counters are its own.
//!
//! This process connects `--proxies` sidecars as real config-stream clients
//! over gRPC: each says Hello (announcing endpoint updates), ACKs every config
//! and endpoint update, and asks for its certificate, so it becomes ready as a
//! real sidecar does. Proxy `i` serves `svc-(i mod S)` and calls the next five
//! services. Then, each timed from the command's send to the proxy's receipt
//! (it ACKs at once):
//!
//! - **targeted**: a MeshTimeout on the clients of one service (top-level
//!   `MeshService`): its instances get a new config; nobody else computes
//!   anything (the counters are checked);
//! - **mesh-wide**: a MeshTimeout `targetRef: Mesh` → every proxy;
//! - **registering**: a new ready instance of one service → only the proxies
//!   with an outbound to it get an endpoint update.
//!
//! Policy mix (`--policies` N): one allow-all MeshTrafficPermission; of the
//! rest, 1 % target `Mesh` with `to: Mesh` (they reach every proxy), half
//! target one service's instances (`MeshService`, `to: Mesh`), the others
//! every proxy's outbounds to one service (`Mesh`, `to: MeshService`); the
//! kinds rotate over MeshTimeout, MeshCircuitBreaker, MeshHealthCheck and
//! MeshLoadBalancingStrategy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hdrhistogram::Histogram;
use meridian_identity::{MeshCa, WorkloadId, WorkloadKey};
use meridian_model::{SecretSpec, Spec, ca_cert_secret_name, ca_key_secret_name};
use meridian_proto::dp::control_message::Message as FromCp;
use meridian_proto::dp::dataplane_config_client::DataplaneConfigClient;
use meridian_proto::dp::proxy_message::Message as ToCp;
use meridian_proto::dp::{Ack, CertificateRequest, Hello, ProxyKind, ProxyMessage};
use meridian_store::{NewResource, Precondition, ResourceKey, Store};
use meridian_zone_cp::dp::{DpServer, Part, Reason};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

use crate::reconnect::harness::{self, from_document};

const ZONE: &str = "zone-0";
/// Proxies connecting at once.
const WAVE: usize = 100;
/// How many services each proxy calls.
const OUTBOUNDS: usize = 5;
/// How long one scenario step may take before the run fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// `meridian-bench zone-scale`.
#[derive(clap::Args)]
pub struct Args {
    /// Connected sidecars.
    #[arg(long, default_value_t = 1_000)]
    proxies: usize,
    /// Services (each proxy serves one; proxies / services instances each).
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Policies in the mesh.
    #[arg(long, default_value_t = 10_000)]
    policies: usize,
    /// Remote zones, each with an ingress advertising every service.
    #[arg(long, default_value_t = 100)]
    remote_zones: usize,
    /// Repetitions of the targeted and registering scenarios.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Repetitions of the mesh-wide scenario.
    #[arg(long, default_value_t = 3)]
    mesh_rounds: usize,
    /// A few seconds' run for CI: 40 proxies, 8 services, 200 policies, 5 zones.
    #[arg(long)]
    smoke: bool,
    /// Runs the zone CP under this program (a profiler: `heaptrack`, `perf record
    /// -g --`), given as one shell word per `--zone-wrapper`.
    #[arg(long = "zone-wrapper", allow_hyphen_values = true)]
    zone_wrapper: Vec<String>,
}

/// `meridian-bench serve-zone` (hidden): the zone CP side.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The store's directory.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    services: usize,
    #[arg(long)]
    policies: usize,
    #[arg(long)]
    remote_zones: usize,
}

fn service(i: usize) -> String {
    format!("svc-{i}")
}

/// Policy `i` of the mix (see the module docs).
fn policy(i: usize, services: usize) -> serde_json::Value {
    if i == 0 {
        return serde_json::json!({"type": "MeshTrafficPermission", "name": "allow-all",
            "mesh": "default", "spec": {"targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}});
    }
    let svc = service(i % services);
    let (top, to) = if i.is_multiple_of(100) {
        (
            serde_json::json!({"kind": "Mesh"}),
            serde_json::json!({"kind": "Mesh"}),
        )
    } else if i % 2 == 1 {
        (
            serde_json::json!({"kind": "MeshService", "name": svc}),
            serde_json::json!({"kind": "Mesh"}),
        )
    } else {
        (
            serde_json::json!({"kind": "Mesh"}),
            serde_json::json!({"kind": "MeshService", "name": svc}),
        )
    };
    let (kind, conf) = match i % 4 {
        0 => (
            "MeshTimeout",
            serde_json::json!({"idleTimeout": format!("{}s", i + 1)}),
        ),
        1 => (
            "MeshCircuitBreaker",
            serde_json::json!({"connectionLimits": {"maxConnections": i + 1}}),
        ),
        2 => (
            "MeshHealthCheck",
            serde_json::json!({"interval": format!("{}s", i % 50 + 1), "timeout": "1s",
                "unhealthyThreshold": 3, "healthyThreshold": 1, "tcp": {}}),
        ),
        _ => (
            "MeshLoadBalancingStrategy",
            serde_json::json!({"localityAwareness": {"disabled": i % 8 == 3}}),
        ),
    };
    serde_json::json!({"type": kind, "name": format!("p-{i}"), "mesh": "default",
        "spec": {"targetRef": top, "to": [{"targetRef": to, "default": conf}]}})
}

fn ingress(zone: usize, services: usize) -> serde_json::Value {
    let available: Vec<serde_json::Value> = (0..services)
        .map(|s| {
            serde_json::json!({"mesh": "default", "instances": 3,
            "tags": {"kuma.io/service": service(s), "kuma.io/zone": format!("z{zone}")}})
        })
        .collect();
    serde_json::json!({"type": "ZoneIngress", "name": format!("ingress.z{zone}"),
        "zone": format!("z{zone}"),
        "networking": {"address": format!("10.200.{}.{}", zone / 250, zone % 250 + 1), "port": 10001},
        "availableServices": available})
}

fn dataplane(
    name: &str,
    i: usize,
    svc: &str,
    outbounds: &[String],
    ready: Option<bool>,
) -> serde_json::Value {
    let outbound: Vec<serde_json::Value> = outbounds
        .iter()
        .enumerate()
        .map(|(k, s)| serde_json::json!({"port": 15001 + k, "tags": {"kuma.io/service": s}}))
        .collect();
    let mut inbound = serde_json::json!({"port": 20001, "servicePort": 8080,
        "tags": {"kuma.io/service": svc}});
    if let Some(ready) = ready {
        inbound["health"] = serde_json::json!({"ready": ready});
    }
    serde_json::json!({"type": "Dataplane", "mesh": "default", "name": name,
        "networking": {"address": format!("10.1.{}.{}", i / 250, i % 250 + 1),
            "inbound": [inbound], "outbound": outbound}})
}

/// Runs the zone CP side until stdin closes (commands: `put DOCUMENT`,
/// `ready N`, `settle`, `stats`).
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    crate::runtime()?.block_on(async move {
        let store = Arc::new(harness::open_embedded(&args.dir).await?);
        let mesh = from_document(
            serde_json::json!({"type": "Mesh", "name": "default",
                "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}),
            None,
        )?;
        store.put(mesh, Precondition::Any).await?;
        let ca = MeshCa::generate("default", meridian_identity::DEFAULT_CA_VALIDITY)?.to_pem();
        let mut seed = Vec::new();
        for (name, pem) in [
            (ca_cert_secret_name("ca-1"), &ca.cert_pem),
            (ca_key_secret_name("ca-1"), &ca.key_pem),
        ] {
            seed.push(NewResource {
                key: ResourceKey::in_mesh(meridian_model::ResourceKind::Secret, "default", name),
                labels: BTreeMap::new(),
                spec: meridian_model::SpecBody::new(Spec::Secret(SecretSpec::from_bytes(pem.as_bytes()))),
                zone: None,
            });
        }
        seed.push(from_document(serde_json::json!({"type": "Zone", "name": ZONE}), None)?);
        for z in 1..=args.remote_zones {
            let zone = format!("z{z}");
            seed.push(from_document(serde_json::json!({"type": "Zone", "name": zone}), None)?);
            seed.push(from_document(ingress(z, args.services), Some(&zone))?);
        }
        for i in 0..args.policies {
            seed.push(from_document(policy(i, args.services), None)?);
        }
        harness::put_all(store.as_ref(), seed, 500).await?;
        let dp = DpServer::start(
            "127.0.0.1:0".parse()?,
            None,
            store.clone(),
            ZONE.to_owned(),
            None,
            meridian_zone_cp::dp::mesh_services::DEFAULT_GRACE,
        )
        .await?;
        let stats = dp.stats();
        let mut out = tokio::io::stdout();
        out.write_all(format!("listening {}\n", dp.local_addr()).as_bytes())
            .await?;
        out.flush().await?;
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            let reply = match line.split_once(' ') {
                Some(("put", doc)) => {
                    let doc: serde_json::Value = serde_json::from_str(doc)?;
                    let zone = (doc["type"] == "Dataplane").then_some(ZONE);
                    store.put(from_document(doc, zone)?, Precondition::Any).await?;
                    "ok".to_owned()
                }
                Some(("ready", n)) => {
                    // Sidecars become endpoints once they can serve; wait for
                    // the zone CP to have marked `n` of them ready.
                    let n: usize = n.parse()?;
                    let mut commits = store.watch();
                    let deadline = Instant::now() + STEP_TIMEOUT;
                    loop {
                        let query = meridian_store::ListQuery::all(meridian_model::ResourceKind::Dataplane);
                        let ready = meridian_store::list_all(store.as_ref(), query)
                            .await?
                            .iter()
                            .filter(|d| matches!(d.spec.spec(), Spec::Dataplane(dp)
                                if dp.networking.inbound.first().and_then(|i| i.health.as_ref()).is_some_and(|h| h.ready)))
                            .count();
                        if ready >= n {
                            break;
                        }
                        // Look again after the next commit.
                        tokio::time::timeout_at(deadline.into(), commits.changed())
                            .await
                            .map_err(|_| anyhow!("only {ready} of {n} sidecars became ready"))??;
                    }
                    "ready".to_owned()
                }
                _ if line == "settle" => {
                    let target = store.current_revision().await?;
                    let mut applied = stats.revision();
                    tokio::time::timeout(STEP_TIMEOUT, applied.wait_for(|r| *r >= target))
                        .await
                        .context("the reconciler did not settle")??;
                    // Sessions send what the engine published on their own
                    // tasks: wait until the push counters stay still.
                    let pushes = || stats.pushes(Part::Config) + stats.pushes(Part::Endpoints);
                    let mut last = pushes();
                    loop {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let now = pushes();
                        if now == last {
                            break;
                        }
                        last = now;
                    }
                    "settled".to_owned()
                }
                _ if line == "stats" => {
                    let computed: Vec<String> = Reason::ALL
                        .iter()
                        .map(|r| format!("{}={}", r.label(), stats.computations(*r)))
                        .collect();
                    format!(
                        "stats {} config={} endpoints={} rss_kib={} hwm_kib={}",
                        computed.join(" "),
                        stats.pushes(Part::Config),
                        stats.pushes(Part::Endpoints),
                        crate::procfs::status_kib(None, "VmRSS:").unwrap_or(0),
                        crate::procfs::status_kib(None, "VmHWM:").unwrap_or(0),
                    )
                }
                _ => bail!("unknown command {line:?}"),
            };
            out.write_all(format!("{reply}\n").as_bytes()).await?;
            out.flush().await?;
        }
        dp.shutdown().await;
        Ok(())
    })
}

/// What one proxy received: when, and which part.
#[derive(Default)]
struct Received {
    log: Mutex<Vec<(Instant, Part)>>,
    certified: Mutex<bool>,
    changed: Notify,
}

impl Received {
    fn count(&self) -> usize {
        self.log.lock().map_or(0, |l| l.len())
    }

    fn after(&self, n: usize) -> Option<(Instant, Part)> {
        self.log.lock().ok()?.get(n).copied()
    }
}

/// One fake sidecar: registers, ACKs everything, gets its certificate.
async fn proxy(
    addr: String,
    name: String,
    svc: String,
    document: serde_json::Value,
    received: Arc<Received>,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(addr)?
        .connect()
        .await?;
    let mut client = DataplaneConfigClient::new(channel);
    let (tx, rx) = mpsc::channel::<ProxyMessage>(16);
    let send = |m: ToCp| ProxyMessage { message: Some(m) };
    tx.send(send(ToCp::Hello(Hello {
        kind: ProxyKind::Sidecar as i32,
        mesh: "default".into(),
        name,
        resource: serde_json::to_vec(&document)?,
        version: "bench".into(),
        features: vec![
            meridian_proxy_api::ENDPOINT_UPDATES.to_owned(),
            meridian_proto::fragment::FEATURE.to_owned(),
        ],
    })))
    .await?;
    let mut incoming = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut asked = false;
    let mut fragments = meridian_proto::fragment::Reassembler::default();
    while let Some(msg) = incoming.message().await? {
        let Some(msg) = fragments.push(msg)? else {
            continue;
        };
        let (version, part) = match msg.message {
            Some(FromCp::Config(c)) => (c.version, Part::Config),
            Some(FromCp::Endpoints(e)) => (e.version, Part::Endpoints),
            Some(FromCp::Certificate(_)) => {
                if let Ok(mut c) = received.certified.lock() {
                    *c = true;
                }
                received.changed.notify_waiters();
                continue;
            }
            _ => continue,
        };
        let now = Instant::now();
        if let Ok(mut log) = received.log.lock() {
            log.push((now, part));
        }
        received.changed.notify_waiters();
        tx.send(send(ToCp::Ack(Ack { version }))).await?;
        if !asked {
            asked = true;
            let id = WorkloadId::new("default", svc.clone())?;
            let (_key, csr_pem) = WorkloadKey::generate(&id)?;
            tx.send(send(ToCp::CertificateRequest(CertificateRequest {
                csr_pem,
            })))
            .await?;
        }
    }
    Ok(())
}

/// The zone CP child and its command pipe.
struct Zone {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Zone {
    async fn command(&mut self, line: &str) -> anyhow::Result<String> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let reply = tokio::time::timeout(STEP_TIMEOUT, self.stdout.next_line())
            .await
            .context("the zone CP did not answer")??;
        reply.ok_or_else(|| anyhow!("the zone CP exited"))
    }

    async fn stats(&mut self) -> anyhow::Result<BTreeMap<String, u64>> {
        let line = self.command("stats").await?;
        Ok(line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
            .collect())
    }
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> String {
    let mut parts = Vec::new();
    for (k, v) in after {
        let d = v - before.get(k).copied().unwrap_or(0);
        if d > 0 && !k.ends_with("_kib") {
            parts.push(format!("{k}={d}"));
        }
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Waits until every proxy in `which` received a message past `counts`, and
/// records each latency from `t0`.
async fn wait_all(
    proxies: &[Arc<Received>],
    which: &[usize],
    counts: &[usize],
    t0: Instant,
    hist: &mut Histogram<u64>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    for &i in which {
        let r = &proxies[i];
        loop {
            let notified = r.changed.notified();
            if let Some((at, _)) = r.after(counts[i]) {
                hist.record(at.saturating_duration_since(t0).as_micros() as u64)?;
                break;
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                bail!("proxy {i} got no update within {STEP_TIMEOUT:?}");
            }
        }
    }
    Ok(())
}

fn summary(hist: &Histogram<u64>) -> String {
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        ms(0.5),
        ms(0.99),
        hist.max() as f64 / 1000.0,
        hist.len()
    )
}

/// Runs the benchmark and prints a table.
pub async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.smoke {
        args.proxies = 40;
        args.services = 8;
        args.policies = 200;
        args.remote_zones = 5;
        args.rounds = 3;
        args.mesh_rounds = 1;
    }
    let services = args.services.max(OUTBOUNDS + 1);
    println!(
        "zone-scale: {} proxies ({} services), {} policies, {} remote zones; zone CP in a child process",
        args.proxies, services, args.policies, args.remote_zones
    );
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let mut command = match args.zone_wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut command = tokio::process::Command::new(program);
            command.args(wrapper_args).arg(&exe);
            command
        }
        None => tokio::process::Command::new(&exe),
    };
    let mut child = command
        .args(["serve-zone", "--dir"])
        .arg(dir.path())
        .args(["--services", &services.to_string()])
        .args(["--policies", &args.policies.to_string()])
        .args(["--remote-zones", &args.remote_zones.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child.stdin.take().context("child stdin")?;
    let stdout = BufReader::new(child.stdout.take().context("child stdout")?).lines();
    let mut zone = Zone {
        child,
        stdin,
        stdout,
    };
    // A wrapper may print first (heaptrack does): pass its lines on.
    let addr = tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            let line = zone
                .stdout
                .next_line()
                .await?
                .context("the zone CP exited")?;
            match line.strip_prefix("listening ") {
                Some(addr) => return anyhow::Ok(format!("http://{addr}")),
                None if args.zone_wrapper.is_empty() => bail!("unexpected first line {line:?}"),
                None => eprintln!("  {line}"),
            }
        }
    })
    .await
    .context("the zone CP did not start")??;
    println!("  seeded in {:.1} s", started.elapsed().as_secs_f64());

    // Connect every proxy.
    let received: Vec<Arc<Received>> = (0..args.proxies).map(|_| Arc::default()).collect();
    let connecting = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // In waves of WAVE, each configured and certified before the next starts
    // (a thousand dials in the same millisecond is not how a zone comes up).
    for wave in (0..args.proxies).collect::<Vec<_>>().chunks(WAVE) {
        for &i in wave {
            let svc = service(i % services);
            let outbounds: Vec<String> = (1..=OUTBOUNDS)
                .map(|k| service((i % services + k) % services))
                .collect();
            let name = format!("p-{i}");
            let doc = dataplane(&name, i, &svc, &outbounds, None);
            tasks.spawn(proxy(addr.clone(), name, svc, doc, received[i].clone()));
        }
        for &i in wave {
            let r = &received[i];
            let deadline = Instant::now() + STEP_TIMEOUT;
            loop {
                let notified = r.changed.notified();
                if r.count() > 0 && r.certified.lock().is_ok_and(|c| *c) {
                    break;
                }
                if let Some(Ok(Err(e))) = tasks.try_join_next() {
                    bail!("a proxy failed: {e:#}");
                }
                if tokio::time::timeout_at(deadline.into(), notified)
                    .await
                    .is_err()
                {
                    bail!("proxy {i} has no config and certificate");
                }
            }
        }
    }
    zone.command(&format!("ready {}", args.proxies)).await?;
    zone.command("settle").await?;
    println!(
        "  {} proxies connected, configured and certified in {:.1} s",
        args.proxies,
        connecting.elapsed().as_secs_f64()
    );
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let counts = |rs: &[Arc<Received>]| rs.iter().map(|r| r.count()).collect::<Vec<_>>();

    // Targeted: the instances of one service.
    let mut hist = Histogram::<u64>::new(3)?;
    let before = zone.stats().await?;
    for round in 0..args.rounds {
        let s = round % services;
        let which: Vec<usize> = (0..args.proxies).filter(|i| i % services == s).collect();
        let seen = counts(&received);
        let doc = serde_json::json!({"type": "MeshTimeout", "name": format!("bench-targeted-{s}"),
            "mesh": "default", "spec": {"targetRef": {"kind": "MeshService", "name": service(s)},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": format!("{}s", 1000 + round)}}]}});
        let t0 = Instant::now();
        zone.command(&format!("put {doc}")).await?;
        wait_all(&received, &which, &seen, t0, &mut hist).await?;
    }
    zone.command("settle").await?;
    let after = zone.stats().await?;
    rows.push((
        format!(
            "a policy on one service's {} instances → they ACK",
            args.proxies / services
        ),
        summary(&hist),
        delta(&after, &before),
    ));

    // Mesh-wide.
    let mut hist = Histogram::<u64>::new(3)?;
    let before = zone.stats().await?;
    let all: Vec<usize> = (0..args.proxies).collect();
    for round in 0..args.mesh_rounds {
        let seen = counts(&received);
        let doc = serde_json::json!({"type": "MeshTimeout", "name": "bench-mesh-wide",
            "mesh": "default", "spec": {"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": format!("{}s", round + 2)}}]}});
        let t0 = Instant::now();
        zone.command(&format!("put {doc}")).await?;
        wait_all(&received, &all, &seen, t0, &mut hist).await?;
    }
    zone.command("settle").await?;
    let after = zone.stats().await?;
    rows.push((
        format!("a mesh-wide policy → all {} ACK", args.proxies),
        summary(&hist),
        delta(&after, &before),
    ));

    // A data plane registering (ready): its service's clients.
    let mut hist = Histogram::<u64>::new(3)?;
    let before = zone.stats().await?;
    for round in 0..args.rounds {
        let s = round % services;
        let which: Vec<usize> = (0..args.proxies)
            .filter(|i| (1..=OUTBOUNDS).any(|k| (i % services + k) % services == s))
            .collect();
        let seen = counts(&received);
        let name = format!("extra-{round}");
        let doc = dataplane(&name, 60_000 + round, &service(s), &[], Some(true));
        let t0 = Instant::now();
        zone.command(&format!("put {doc}")).await?;
        wait_all(&received, &which, &seen, t0, &mut hist).await?;
    }
    zone.command("settle").await?;
    let after = zone.stats().await?;
    let clients = args.proxies / services * OUTBOUNDS;
    rows.push((
        format!("a data plane registering → its {clients} clients get endpoints"),
        summary(&hist),
        delta(&after, &before),
    ));

    let stats = zone.stats().await?;
    let mib = |k: &str| stats.get(k).map_or(0.0, |v| *v as f64 / 1024.0);
    println!();
    println!("| scenario | PUT → received | computed / pushed meanwhile |");
    println!("|---|---|---|");
    for (what, latency, counters) in &rows {
        println!("| {what} | {latency} | {counters} |");
    }
    println!(
        "| zone CP memory | RSS {:.1} MiB, peak {:.1} MiB | |",
        mib("rss_kib"),
        mib("hwm_kib")
    );
    drop(zone.stdin);
    // A profiler wrapping the child may take a while to write its data.
    let _ = tokio::time::timeout(Duration::from_secs(60), zone.child.wait()).await;
    tasks.abort_all();
    Ok(())
}
