//! Scale: memory, a new zone's full sync, and config computation with many zones,
//! data planes and policies.
//!
//! Setup, all in this process: a global CP (embedded store, or PostgreSQL with
//! `--database-url`) whose `default` mesh has builtin mTLS (global generates its CA).
//! The bench writes straight into global's store with `Store::apply` (500 per
//! transaction), as if `--zones` zones had synced:
//! - the Zone resources `z<i>`;
//! - `--dataplanes` zone-owned Dataplanes per zone, `dp-<i>.z<z>`, one inbound each
//!   tagged `kuma.io/service: svc-<i % 50>`, labelled as KDS labels them;
//! - one zone-owned ZoneIngress per zone whose `availableServices` counts those
//!   instances per service, so other zones have remote endpoints;
//! - `--policies` policies in `default`: one allow-all MeshTrafficPermission and
//!   MeshTimeouts, a third each targeting the mesh, a service (`svc-<i % 50>`), or the
//!   mesh with a per-service `to`.
//!
//! Figures:
//! - **RSS** (`VmRSS` of this process) at start, after global started empty, and
//!   after loading. It includes the bench's own allocations (the generated documents
//!   are dropped after writing, but the allocator may keep the memory) and, on the
//!   embedded store, redb's cache.
//! - **Full sync** of a new zone CP (own embedded store, real KDS client over TLS
//!   through the byte-counting relay of the `reconnect` bench): from opening its
//!   store to the zone store recording global's current revision as applied (meshes,
//!   zones, policies, secrets and every other zone's ingress; never data planes).
//!   Bytes are global→zone through the relay, TLS and framing included.
//! - **Global's `Store::snapshot()`** alone, which is what KDS reads for a full sync
//!   (every resource, data planes included, filtered to the zone's scope after): its
//!   time and the RSS growth while the result is held.
//! - **RSS peak during the zone's sync**: the highest `VmRSS` sampled every 10 ms
//!   while it runs, minus before it started (same caveats as the delta below).
//! - **Zone RSS delta**: this process's RSS after the zone synced minus before it
//!   started. Global runs in the same process and works during the sync (it reads
//!   such a snapshot again), so this is a delta of a shared process, not the zone's
//!   own footprint; and since it is measured after the snapshot above was freed, the
//!   allocator may reuse that memory, making global's share smaller than it would be
//!   in a fresh process.
//! - **Config computation** in the new zone after writing `--local-dataplanes`
//!   zone-owned Dataplanes into its store (and waiting until KDS carried them to
//!   global, so that traffic is over): `ZoneState::load` (the zone's whole state from one snapshot, as a zone CP reads it once at start; min,
//!   median and max of 5 loads), and `ZoneState::sidecar_config` for a sidecar with
//!   outbounds to 5 services (p50/p99 of `--calls` calls on one loaded view).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use meridian_model::{DataplaneRef, DataplaneSpec, ResourceKind, Spec, SpecBody};
use meridian_store::{ListQuery, NewResource, Precondition, ResourceKey, Store};
use meridian_zone_cp::dp::ZoneState;

use crate::reconnect::harness::{self, Global, mib, ms, rss_bytes};
use crate::reconnect::relay::Relay;

const BATCH: usize = 500;
const SERVICES: usize = 50;
const NEW_ZONE: &str = "zone-new";

/// Arguments of `meridian-bench scale`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Zones whose data planes and ingress global holds.
    #[arg(long, default_value_t = 100)]
    zones: usize,
    /// Data planes per zone.
    #[arg(long, default_value_t = 1_000)]
    dataplanes: usize,
    /// Policies in mesh `default`.
    #[arg(long, default_value_t = 10_000)]
    policies: usize,
    /// Data planes of the new zone, written into its store for config computation.
    #[arg(long, default_value_t = 1_000)]
    local_dataplanes: usize,
    /// `sidecar_config` calls timed.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Global's store: a PostgreSQL URL (best a fresh database), or absent for the
    /// embedded store.
    #[arg(long, env = "MERIDIAN_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// A few seconds' run for CI: 3 zones × 10 data planes, 50 policies, 10 local
    /// data planes.
    #[arg(long)]
    smoke: bool,
}

/// Runs the benchmark and prints a table.
pub async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.smoke {
        args.zones = 3;
        args.dataplanes = 10;
        args.policies = 50;
        args.local_dataplanes = 10;
    }
    let store_name = if args.database_url.is_some() {
        "PostgreSQL"
    } else {
        "embedded"
    };
    println!(
        "scale: {} zones x {} data planes, {} policies; global store: {store_name}; global and the new zone in this process",
        args.zones, args.dataplanes, args.policies
    );
    let mut figures: Vec<(String, String)> = Vec::new();
    let mut figure = |name: &str, value: String| figures.push((name.to_owned(), value));

    let rss_start = rss_bytes();
    let dir = tempfile::tempdir()?;
    let global = Global::start(dir.path(), args.database_url.as_deref()).await?;
    let rss_empty = rss_bytes();

    // Load.
    let loading = Instant::now();
    let store = global.store.as_ref();
    let mesh = harness::from_document(
        serde_json::json!({"type": "Mesh", "name": "default",
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}}),
        None,
    )?;
    store.put(mesh, Precondition::Any).await?;
    meridian_global_cp::mesh_ca::ensure_mesh_cas(store).await?;
    let zones: Vec<String> = (0..args.zones).map(|z| format!("z{z}")).collect();
    let zone_resources = zones
        .iter()
        .map(|zone| {
            Ok(NewResource {
                key: ResourceKey::global(ResourceKind::Zone, zone),
                labels: BTreeMap::new(),
                spec: harness::spec(ResourceKind::Zone, serde_json::json!({}))?,
                zone: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    harness::put_all(store, zone_resources, BATCH).await?;
    for (z, zone) in zones.iter().enumerate() {
        let mut resources = Vec::with_capacity(args.dataplanes + 1);
        for i in 0..args.dataplanes {
            resources.push(synced(
                ResourceKind::Dataplane,
                "default",
                &format!("dp-{i}"),
                zone,
                dataplane_spec(z, i, zone)?,
            ));
        }
        resources.push(synced(
            ResourceKind::ZoneIngress,
            "",
            "zone-ingress",
            zone,
            ingress_spec(z, zone, args.dataplanes)?,
        ));
        harness::put_all(store, resources, BATCH).await?;
    }
    let mut policies = Vec::with_capacity(args.policies);
    for i in 0..args.policies {
        policies.push(harness::from_document(policy(i), None)?);
    }
    harness::put_all(store, policies, BATCH).await?;
    let load_ms = ms(loading, Instant::now());
    let rss_loaded = rss_bytes();
    let global_revision = store.current_revision().await?;
    figure("global store", store_name.to_owned());
    figure(
        "loaded into global",
        format!(
            "{} zones, {} dataplanes, {} ingresses, {} policies, 1 mesh (mTLS, CA secrets): revision {global_revision}",
            args.zones,
            args.zones * args.dataplanes,
            args.zones,
            args.policies
        ),
    );
    figure(
        "load time (Store::apply, 500 per batch)",
        format!("{load_ms:.0} ms"),
    );
    figure("RSS at start", format!("{} MiB", mib(rss_start)));
    figure(
        "RSS, global started, empty",
        format!("{} MiB", mib(rss_empty)),
    );
    figure(
        "RSS, global loaded (incl. bench)",
        format!("{} MiB", mib(rss_loaded)),
    );

    // What a full sync makes global read: KDS's snapshot is `Store::snapshot()`,
    // every resource (data planes included), filtered to the zone's scope after.
    let rss_before_snapshot = rss_bytes();
    let t = Instant::now();
    let snapshot = store.snapshot().await?;
    let snapshot_ms = ms(t, Instant::now());
    let rss_snapshot = rss_bytes();
    let snapshot_resources = snapshot.resources.len();
    drop(snapshot);
    figure(
        "global Store::snapshot() alone",
        format!(
            "{snapshot_resources} resources in {snapshot_ms:.0} ms; RSS {} while held",
            delta(rss_before_snapshot, rss_snapshot)
        ),
    );

    // A new zone's full sync.
    let relay = Relay::start(global.kds_addr()?).await?;
    let rss_before_zone = rss_bytes();
    // The peak while the sync runs, sampled every 10 ms (a delta taken only at the
    // end misses memory held during the sync and freed before it ended).
    let sampling = rss_sampler();
    let started = Instant::now();
    let zone_store =
        meridian_embedded_store::EmbeddedStore::open(&dir.path().join(NEW_ZONE)).await?;
    let zone_cp = harness::start_zone(&global, NEW_ZONE, relay.addr(), &zone_store).await?;
    let synced_at = harness::wait_applied(
        &zone_store,
        global_revision,
        false,
        Duration::from_secs(600),
    )
    .await
    .context("the new zone's full sync")?;
    let sync_bytes = relay.bytes();
    let rss_after_zone = rss_bytes();
    let rss_peak_zone = sampling.stop().await;
    let zone_policies = policies_in(&zone_store).await?;
    // What global holds: the bench's policies and the default mesh's initial ones.
    let global_policies = policies_in(global.store.as_ref()).await?;
    let zone_ingresses = total(&zone_store, ResourceKind::ZoneIngress).await?;
    let zone_dataplanes = total(&zone_store, ResourceKind::Dataplane).await?;
    if zone_policies != global_policies
        || global_policies < args.policies as u64
        || zone_ingresses != args.zones as u64
    {
        bail!(
            "after its sync the zone has {zone_policies} policies and {zone_ingresses} ingresses, expected {global_policies} (at least {}) and {}",
            args.policies,
            args.zones
        );
    }
    figure(
        "new zone full sync (open -> applied)",
        format!("{:.0} ms", ms(started, synced_at)),
    );
    figure(
        "  received",
        format!(
            "{zone_policies} policies, {zone_ingresses} ingresses, {} secrets, {zone_dataplanes} dataplanes",
            total(&zone_store, ResourceKind::Secret).await?
        ),
    );
    figure(
        "  bytes g->z / z->g (relay)",
        format!(
            "{:.2} MiB / {:.1} KiB",
            sync_bytes.to_zone as f64 / 1048576.0,
            sync_bytes.to_global as f64 / 1024.0
        ),
    );
    figure(
        "RSS delta over the zone's sync",
        delta(rss_before_zone, rss_after_zone),
    );
    figure(
        "RSS peak during the zone's sync",
        delta(rss_before_zone, rss_peak_zone),
    );

    // Config computation in the new zone.
    let mut locals = Vec::with_capacity(args.local_dataplanes + 1);
    for i in 0..args.local_dataplanes {
        locals.push(local(
            &format!("dp-{i}"),
            dataplane_spec(args.zones, i, NEW_ZONE)?,
        ));
    }
    let client = client_spec()?;
    locals.push(local(
        "bench-client",
        SpecBody::new(Spec::Dataplane(client.clone())),
    ));
    harness::put_all(&zone_store, locals, BATCH).await?;
    wait_for_upload(store, args.local_dataplanes + 1).await?;

    let t = Instant::now();
    let mut view = ZoneState::load(&zone_store, NEW_ZONE).await?;
    let mut loads = vec![ms(t, Instant::now())];
    for _ in 1..5 {
        let t = Instant::now();
        view = ZoneState::load(&zone_store, NEW_ZONE).await?;
        loads.push(ms(t, Instant::now()));
    }
    loads.sort_by(f64::total_cmp);
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut summary = None;
    let no_labels = std::collections::BTreeMap::new();
    let proxy = DataplaneRef {
        name: "bench-client",
        labels: &no_labels,
        spec: &client,
    };
    for _ in 0..args.calls {
        let t = Instant::now();
        let config = view.sidecar_config("default", proxy)?;
        histogram.record(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX))?;
        summary.get_or_insert_with(|| {
            let endpoints: usize = config
                .outbounds
                .iter()
                .flat_map(|o| o.backends.iter())
                .map(|b| b.endpoints.len())
                .sum();
            (config.outbounds.len(), endpoints)
        });
    }
    let (outbounds, endpoints) = summary.unwrap_or_default();
    figure(
        "zone view",
        format!(
            "{} dataplanes, {} ingresses, {} policies",
            view.dataplanes.len(),
            view.ingresses.len(),
            view.policies.values().map(|p| p.all.len()).sum::<usize>()
        ),
    );
    figure(
        "ZoneState::load at start (min / median / max of 5)",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            loads.first().copied().unwrap_or_default(),
            loads.get(loads.len() / 2).copied().unwrap_or_default(),
            loads.last().copied().unwrap_or_default()
        ),
    );
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    figure(
        "sidecar_config (5 outbounds)",
        format!(
            "p50 {:.1} us, p99 {:.1} us, max {:.1} us over {} calls; {outbounds} outbounds, {endpoints} endpoints",
            us(0.5),
            us(0.99),
            histogram.max() as f64 / 1000.0,
            args.calls
        ),
    );

    let _ = zone_cp.shutdown().await;
    zone_store.shutdown().await;
    drop(relay);
    global.shutdown().await;

    let width = figures.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, value) in figures {
        println!("{name:<width$}  {value}");
    }
    println!(
        "RSS: VmRSS of this one process (global, the new zone, the bench's own allocations, redb caches; freed memory is not always returned); the zone's figure is a delta of that shared process, measured after the snapshot above was freed; bytes: through the relay, TLS and framing included"
    );
    Ok(())
}

/// Samples this process's RSS until stopped; [`RssSampler::stop`] gives the peak.
struct RssSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Option<u64>>,
}

impl RssSampler {
    async fn stop(self) -> Option<u64> {
        let _ = self.stop.send(());
        self.task.await.ok().flatten()
    }
}

fn rss_sampler() -> RssSampler {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut peak = rss_bytes();
        let mut every = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = every.tick() => peak = peak.max(rss_bytes()),
                _ = &mut stopped => return peak.max(rss_bytes()),
            }
        }
    });
    RssSampler { stop, task }
}

/// An RSS change, `+x MiB (a -> b MiB)`.
fn delta(before: Option<u64>, after: Option<u64>) -> String {
    let change = match (before, after) {
        (Some(a), Some(b)) => format!("{:+.1}", (b as f64 - a as f64) / 1048576.0),
        _ => "?".to_owned(),
    };
    format!("{change} MiB ({} -> {} MiB)", mib(before), mib(after))
}

/// A zone-owned resource as global stores it after KDS brought it from `zone`:
/// renamed `<name>.<zone>`, owned by and labelled with the zone.
fn synced(kind: ResourceKind, mesh: &str, name: &str, zone: &str, spec: SpecBody) -> NewResource {
    let labels = [
        ("kuma.io/zone", zone),
        ("kuma.io/origin", "zone"),
        ("kuma.io/display-name", name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let global_name = format!("{name}.{zone}");
    NewResource {
        key: if kind.is_mesh_scoped() {
            ResourceKey::in_mesh(kind, mesh, global_name)
        } else {
            ResourceKey::global(kind, global_name)
        },
        labels,
        spec,
        zone: Some(zone.to_owned()),
    }
}

/// A Dataplane of the new zone, in its own store.
fn local(name: &str, spec: SpecBody) -> NewResource {
    let labels = [("kuma.io/zone", NEW_ZONE), ("kuma.io/origin", "zone")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    NewResource {
        key: ResourceKey::in_mesh(ResourceKind::Dataplane, "default", name),
        labels,
        spec,
        zone: Some(NEW_ZONE.to_owned()),
    }
}

fn ip(z: usize, i: usize) -> String {
    format!("10.{}.{}.{}", z % 250, (i / 250) % 250, i % 250 + 1)
}

fn dataplane_spec(z: usize, i: usize, zone: &str) -> anyhow::Result<SpecBody> {
    harness::spec(
        ResourceKind::Dataplane,
        serde_json::json!({"networking": {"address": ip(z, i), "inbound": [{
            "port": 8080, "servicePort": 80,
            "tags": {"kuma.io/service": format!("svc-{}", i % SERVICES), "kuma.io/zone": zone}
        }]}}),
    )
}

fn ingress_spec(z: usize, zone: &str, dataplanes: usize) -> anyhow::Result<SpecBody> {
    let available: Vec<serde_json::Value> = (0..SERVICES.min(dataplanes))
        .map(|s| {
            let instances = (s..dataplanes).step_by(SERVICES).count();
            serde_json::json!({"mesh": "default", "instances": instances,
                "tags": {"kuma.io/service": format!("svc-{s}"), "kuma.io/zone": zone}})
        })
        .collect();
    harness::spec(
        ResourceKind::ZoneIngress,
        serde_json::json!({"zone": zone,
            "networking": {"address": ip(z, 0), "port": 10001,
                           "advertisedAddress": ip(z, 0), "advertisedPort": 10001},
            "availableServices": available}),
    )
}

/// The sidecar whose config is computed: one inbound, outbounds to 5 services.
fn client_spec() -> anyhow::Result<DataplaneSpec> {
    let outbound: Vec<serde_json::Value> = (0..5)
        .map(|s| {
            serde_json::json!({"port": 20000 + s,
                "tags": {"kuma.io/service": format!("svc-{}", s * 7 % SERVICES)}})
        })
        .collect();
    let value = serde_json::json!({"networking": {"address": "10.255.0.1",
        "inbound": [{"port": 8080, "servicePort": 80,
                     "tags": {"kuma.io/service": "bench-client", "kuma.io/zone": NEW_ZONE}}],
        "outbound": outbound}});
    match Spec::from_value(ResourceKind::Dataplane, value) {
        Ok(Spec::Dataplane(spec)) => Ok(spec),
        Ok(_) => bail!("not a Dataplane"),
        Err(e) => bail!("invalid client Dataplane: {e}"),
    }
}

/// Policy `i`: an allow-all MeshTrafficPermission first, then MeshTimeouts.
fn policy(i: usize) -> serde_json::Value {
    if i == 0 {
        return serde_json::json!({"type": "MeshTrafficPermission", "name": "allow-all",
            "mesh": "default", "spec": {"targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}});
    }
    let service = format!("svc-{}", i % SERVICES);
    let conf = serde_json::json!({"idleTimeout": format!("{}s", i + 1),
                                  "connectionTimeout": format!("{}s", i % 10 + 1)});
    let (top, to) = match i % 3 {
        0 => (
            serde_json::json!({"kind": "Mesh"}),
            serde_json::json!({"kind": "Mesh"}),
        ),
        1 => (
            serde_json::json!({"kind": "MeshService", "name": service}),
            serde_json::json!({"kind": "Mesh"}),
        ),
        _ => (
            serde_json::json!({"kind": "Mesh"}),
            serde_json::json!({"kind": "MeshService", "name": service}),
        ),
    };
    serde_json::json!({"type": "MeshTimeout", "name": format!("timeout-{i}"), "mesh": "default",
        "spec": {"targetRef": top, "to": [{"targetRef": to, "default": conf}]}})
}

/// Waits until global holds the new zone's `expected` data planes (KDS zone→global),
/// so that traffic does not overlap the timings.
async fn wait_for_upload(global: &dyn Store, expected: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut commits = global.watch();
    loop {
        commits.borrow_and_update();
        let total = global
            .list(&ListQuery {
                zone: Some(NEW_ZONE.to_owned()),
                limit: 1,
                ..ListQuery::all(ResourceKind::Dataplane)
            })
            .await?
            .total;
        if total >= expected as u64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("global holds {total} of the new zone's {expected} data planes after 120 s");
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), commits.changed()).await;
    }
}

/// How many resources of `kind` `store` holds.
async fn total(store: &dyn Store, kind: ResourceKind) -> anyhow::Result<u64> {
    let query = ListQuery {
        limit: 1,
        ..ListQuery::all(kind)
    };
    Ok(store.list(&query).await?.total)
}

/// How many of the kinds the bench loads (MeshTimeouts, MeshTrafficPermissions)
/// `store` holds.
async fn policies_in(store: &dyn Store) -> anyhow::Result<u64> {
    Ok(total(store, ResourceKind::MeshTimeout).await?
        + total(store, ResourceKind::MeshTrafficPermission).await?)
}
