//! `meridian-bench serve-ingress` (hidden): Meridian's zone-ingress SNI router as a
//! process of its own, so the benchmark measures its CPU and memory from `/proc`
//! exactly like HAProxy's and nginx's.
//!
//! It runs [`SniProxy`] with a fixed route table fed through a `watch` channel (no
//! zone control plane) and the process-wide Prometheus recorder installed, as in
//! `meridian zone-ingress`. It prints `listening <addr>` once accepting and runs
//! until its standard input closes.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use meridian_proxy_api::{EndpointConfig, ProxyConfig, SniRoute, Via, ZoneProxyConfig};
use meridian_zone_proxy::{SniProxy, SniProxySettings};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Arguments of `meridian-bench serve-ingress`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to accept connections on (port 0: any free port).
    #[arg(long)]
    listen: SocketAddr,
    /// A route `SNI=HOST:PORT`; repeat for more.
    #[arg(long = "route", required = true)]
    routes: Vec<String>,
    /// Runtime threads: 1 runs a current-thread runtime, N a multi-thread one
    /// with N workers.
    #[arg(long, default_value_t = 1)]
    worker_threads: usize,
}

/// Runs the proxy until standard input closes.
pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = if args.worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.worker_threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let _ = meridian_api::telemetry::prometheus();
    meridian_zone_proxy::telemetry::describe();
    let routes = args
        .routes
        .iter()
        .map(|route| route_of(route))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = ProxyConfig::Ingress(ZoneProxyConfig {
        zone: "bench".to_owned(),
        routes,
    });
    let (config_tx, config_rx) = watch::channel(Some(Arc::new(config)));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let proxy = SniProxy::start(listener, config_rx, SniProxySettings::default())?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening {}", proxy.local_addr())?;
        stdout.flush()?;
    }
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
    proxy.shutdown().await;
    drop(config_tx);
    Ok(())
}

/// `SNI=HOST:PORT` as a route to one direct endpoint.
fn route_of(spec: &str) -> anyhow::Result<SniRoute> {
    let (sni, addr) = spec
        .split_once('=')
        .with_context(|| format!("route {spec:?}: expected SNI=HOST:PORT"))?;
    let address: SocketAddr = addr
        .parse()
        .with_context(|| format!("route {spec:?}: bad address"))?;
    Ok(SniRoute {
        sni: sni.to_ascii_lowercase(),
        mesh: "default".to_owned(),
        service: "echo".to_owned(),
        subset: BTreeMap::new(),
        endpoints: vec![EndpointConfig {
            address,
            zone: "bench".to_owned(),
            weight: 1,
            tags: BTreeMap::new(),
            via: Via::Direct,
        }]
        .into(),
        locality: None,
    })
}
