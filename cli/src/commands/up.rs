//! `meridian up`: a whole local multi-zone mesh in one process, on embedded
//! stores, for trying Meridian out.
//!
//! It starts global, `--zones N` zone control planes syncing with it over
//! KDS, and in every zone an ingress, an egress, a demo echo service behind a
//! sidecar; zone-1 also gets a `demo-client` sidecar whose outbound reaches
//! the echo service. The demo mesh has mTLS on, an allow-all
//! MeshTrafficPermission, and a MeshTCPRoute splitting `echo` evenly across
//! the zones, so `meridian probe` on the client's outbound shows cross-zone
//! connections and the split at once.
//!
//! Ports are fixed so the printed commands work as they are: global REST
//! 5681 and KDS 5685; zone *i* REST `5681 + 10i + 1` and data-plane server
//! `5681 + 10i + 7`; its ingress `10000 + 100i + 1`, egress `+ 2`, echo app
//! `+ 10` and echo sidecar inbound `+ 11`; the client outbound is 15001.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meridian_dataplane::{InboundFlag, OutboundFlag};
use meridian_embedded_store::EmbeddedStore;
use meridian_global_cp::auth::TokenOrigin;
use meridian_global_cp::kds::tls;
use meridian_global_cp::zone_token::ZoneTokens;
use meridian_global_cp::{GlobalCp, GlobalCpConfig, KdsSettings};
use meridian_store::{NewResource, Precondition, ResourceKey, Store, StoreError};
use meridian_zone_cp::kds::KdsClientConfig;
use meridian_zone_cp::{ZoneCp, ZoneCpConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Arguments of `meridian up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// How many zones (1 to 9).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub zones: u16,
    /// Where the embedded stores and generated certificates live.
    #[arg(long, default_value = "meridian-data/up")]
    pub data_dir: PathBuf,
}

/// The client sidecar's outbound to `echo`.
pub const CLIENT_OUTBOUND: &str = "127.0.0.1:15001";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The ports of zone `i` (1-based).
#[derive(Debug, Clone, Copy)]
struct ZonePorts {
    api: u16,
    dp: u16,
    ingress: u16,
    egress: u16,
    echo_app: u16,
    echo_inbound: u16,
    client_app: u16,
    client_inbound: u16,
}

impl ZonePorts {
    fn of(i: u16) -> Self {
        let base = 10_000 + 100 * i;
        ZonePorts {
            api: 5681 + 10 * i + 1,
            dp: 5681 + 10 * i + 7,
            ingress: base + 1,
            egress: base + 2,
            echo_app: base + 10,
            echo_inbound: base + 11,
            client_app: base + 20,
            client_inbound: base + 21,
        }
    }
}

/// Creates `doc` in `store` unless it exists (a re-run keeps user changes).
async fn create(store: &dyn Store, doc: serde_json::Value) -> anyhow::Result<()> {
    let resource = meridian_model::parse_document(doc).context("demo resource")?;
    let key = ResourceKey {
        kind: resource.meta.kind,
        mesh: resource.meta.mesh.clone().unwrap_or_default(),
        name: resource.meta.name.clone(),
    };
    let new = NewResource {
        key,
        labels: resource.meta.labels.clone(),
        spec: meridian_model::SpecBody::new(resource.spec),
        zone: None,
    };
    match store.put(new, Precondition::Absent).await {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The demo mesh: mTLS, allow-all permissions, `echo` split across zones.
async fn demo_resources(store: &dyn Store, zones: u16) -> anyhow::Result<()> {
    create(
        store,
        json!({"type": "Mesh", "name": "default",
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}),
    )
    .await?;
    create(
        store,
        json!({"type": "MeshTrafficPermission", "name": "allow-all", "mesh": "default",
            "spec": {"targetRef": {"kind": "Mesh"},
                     "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}}),
    )
    .await?;
    let backends: Vec<_> = (1..=zones)
        .map(|i| {
            json!({"kind": "MeshServiceSubset", "name": "echo",
                        "tags": {"kuma.io/zone": format!("zone-{i}")}, "weight": 1})
        })
        .collect();
    create(
        store,
        json!({"type": "MeshTCPRoute", "name": "echo-across-zones", "mesh": "default",
            "spec": {"targetRef": {"kind": "Mesh"},
                     "to": [{"targetRef": {"kind": "MeshService", "name": "echo"},
                             "rules": [{"default": {"backendRefs": backends}}]}]}}),
    )
    .await?;
    Ok(())
}

/// Waits until KDS has brought the demo mesh and its CA to `zone`, so its
/// proxies register at the first attempt.
async fn wait_for_mesh(store: &EmbeddedStore, zone: &str) -> anyhow::Result<()> {
    let ca = ResourceKey::in_mesh(
        meridian_model::ResourceKind::Secret,
        "default",
        meridian_model::ca_cert_secret_name("ca-1"),
    );
    tracing::info!(zone, "waiting for the mesh and its CA to reach the zone");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut changes = store.watch();
    while store.get(&ca).await?.is_none() {
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            anyhow::bail!("{zone} did not receive the mesh from global within 30 s");
        }
    }
    Ok(())
}

/// Runs `meridian up` until `shutdown` resolves.
pub async fn run(args: UpArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let global_dir = args.data_dir.join("global");
    let global_store = EmbeddedStore::open(&global_dir.join("store"))
        .await
        .context("opening global's embedded store")?;
    let store: Arc<dyn Store> = Arc::new(global_store.clone());
    let identity = tls::load_or_generate(None, None, &global_dir, &[])?;
    let kds_ca =
        std::fs::read_to_string(identity.generated_ca.as_ref().context("generated KDS CA")?)?;
    let global = GlobalCp::start(
        GlobalCpConfig {
            create_default_mesh: false,
            kds: Some(KdsSettings {
                addr: addr(5685),
                identity,
            }),
            ..GlobalCpConfig::default()
        },
        store.clone(),
    )
    .await
    .context("starting global (is another `meridian up` or `global-cp` running?)")?;
    demo_resources(store.as_ref(), args.zones).await?;
    let tokens = ZoneTokens::init(store.as_ref()).await?;

    let stop = CancellationToken::new();
    let mut zones = Vec::new();
    let mut tasks = Vec::new();
    for i in 1..=args.zones {
        let name = format!("zone-{i}");
        let ports = ZonePorts::of(i);
        let zone_store = EmbeddedStore::open(&args.data_dir.join(&name).join("store"))
            .await
            .with_context(|| format!("opening {name}'s embedded store"))?;
        let mut config = ZoneCpConfig::new(&name);
        config.api_addr = addr(ports.api);
        config.dp_addr = Some(addr(ports.dp));
        config.admin_token = match global.token_origin() {
            TokenOrigin::Generated(t) => Some(t.clone()),
            _ => None,
        };
        config.kds = Some(KdsClientConfig {
            zone: name.clone(),
            global_urls: vec!["https://127.0.0.1:5685".to_owned()],
            global_ca_pem: Some(kds_ca.clone()),
            token: tokens.issue(&name, Duration::from_secs(365 * 24 * 3600)).0,
            token_file: None,
            heartbeat: Duration::from_secs(5),
            leader_term: 0,
        });
        let zone = ZoneCp::start(config, Arc::new(zone_store.clone()))
            .await
            .with_context(|| format!("starting {name}"))?;
        wait_for_mesh(&zone_store, &name).await?;
        tasks.push(super::demo_echo::spawn(addr(ports.echo_app), format!("{name}/echo")).await?);
        start_proxies(&name, i, ports, &stop)?;
        zones.push((name, ports, zone, zone_store));
    }

    println!(
        "Meridian is up: global and {} zone(s), embedded stores in {}",
        args.zones,
        args.data_dir.display()
    );
    println!("  global      REST http://127.0.0.1:5681   KDS https://127.0.0.1:5685");
    for (name, p, _, _) in &zones {
        println!(
            "  {name:<10}  REST http://127.0.0.1:{}   proxies http://127.0.0.1:{}   ingress 127.0.0.1:{}   egress 127.0.0.1:{}   echo sidecar 127.0.0.1:{}",
            p.api, p.dp, p.ingress, p.egress, p.echo_inbound
        );
    }
    if let TokenOrigin::Generated(token) = global.token_origin() {
        println!("  admin token (printed once; also on every zone): {token}");
    }
    println!();
    println!(
        "zone-1's demo-client reaches the echo service on {CLIENT_OUTBOUND}; a MeshTCPRoute splits it evenly across the zones:"
    );
    println!("  cargo run --release -- probe {CLIENT_OUTBOUND} --count 20");
    println!("See the data planes that registered: cargo run --release -- get dataplanes");
    println!("Ctrl-C stops everything.");

    shutdown.await;
    tracing::info!("shutting down");
    stop.cancel();
    for task in tasks {
        task.abort();
    }
    for (_, _, zone, zone_store) in zones {
        zone.shutdown().await.context("stopping a zone")?;
        zone_store.shutdown().await;
    }
    global.shutdown().await.context("stopping global")?;
    global_store.shutdown().await;
    Ok(())
}

/// Starts zone `i`'s ingress, egress, echo sidecar (and in zone-1 the client
/// sidecar), each until `stop` is cancelled.
fn start_proxies(
    zone: &str,
    i: u16,
    ports: ZonePorts,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let zone_cp = format!("http://127.0.0.1:{}", ports.dp);
    let ingress = super::zone_ingress::ZoneIngressArgs {
        link: super::zone_cp_link::ZoneCpLink::to(zone_cp.clone()),
        name: format!("{zone}-ingress"),
        listen: addr(ports.ingress),
        advertise: None,
    };
    spawn_proxy(
        "zone ingress",
        super::zone_ingress::run(ingress, stop.clone().cancelled_owned()),
    );
    let egress = super::zone_egress::ZoneEgressArgs {
        link: super::zone_cp_link::ZoneCpLink::to(zone_cp.clone()),
        name: format!("{zone}-egress"),
        listen: addr(ports.egress),
    };
    spawn_proxy(
        "zone egress",
        super::zone_egress::run(egress, stop.clone().cancelled_owned()),
    );
    let sidecar =
        |name: String, service: &str, app: u16, inbound: u16, outbounds: Vec<OutboundFlag>| {
            super::dp::DpArgs {
                zone_cp: zone_cp.clone(),
                zone_cp_ca: None,
                mesh: "default".to_owned(),
                name: Some(name),
                service: Some(service.to_owned()),
                inbounds: vec![InboundFlag {
                    public: addr(inbound),
                    app: addr(app),
                }],
                outbounds,
                tags: Vec::new(),
                dataplane_file: None,
                admin_addr: None,
            }
        };
    let echo = sidecar(
        format!("echo-{zone}"),
        "echo",
        ports.echo_app,
        ports.echo_inbound,
        Vec::new(),
    );
    spawn_proxy(
        "echo sidecar",
        super::dp::run(echo, stop.clone().cancelled_owned()),
    );
    if i == 1 {
        let outbound = OutboundFlag {
            local: CLIENT_OUTBOUND.parse().context("client outbound address")?,
            service: "echo".to_owned(),
            port: None,
        };
        let client = sidecar(
            "demo-client".to_owned(),
            "demo-client",
            ports.client_app,
            ports.client_inbound,
            vec![outbound],
        );
        spawn_proxy(
            "client sidecar",
            super::dp::run(client, stop.clone().cancelled_owned()),
        );
    }
    Ok(())
}

/// Runs a proxy in the background, logging how it ended.
fn spawn_proxy(
    what: &'static str,
    proxy: impl Future<Output = anyhow::Result<()>> + Send + 'static,
) {
    tokio::spawn(async move {
        if let Err(error) = proxy.await {
            tracing::error!(%error, "{what} stopped");
        }
    });
}
