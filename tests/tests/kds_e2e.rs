//! KDS end to end with the real binary: global on PostgreSQL, two zone CPs on their
//! embedded stores, over TLS with zone tokens. Policies flow down, dataplanes flow up,
//! zones keep serving while global is dead, and a restarted global resumes each zone
//! with the delta only.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use meridian_proto::kds::kds_client::KdsClient;
use meridian_proto::kds::{self, ZoneToGlobalAck, zone_to_global_ack};
use meridian_tests::kds_client;
use meridian_tests::postgres::TestDatabase;
use meridian_tests::process::MeridianProcess;
use meridian_tests::scratch::{Dir, free_port};
use meridian_tests::{eventually, get_json as get};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-token";
const DEADLINE: Duration = Duration::from_secs(30);

struct Global {
    process: MeridianProcess,
    api: String,
    kds: String,
    ca: String,
}

/// Starts global on PostgreSQL when given a database, else on the embedded store in
/// its data directory (which survives restarts as the database does).
async fn start_global(
    database: Option<&TestDatabase>,
    dir: &Dir,
    api_port: u16,
    kds_port: u16,
) -> Global {
    let api_addr = format!("127.0.0.1:{api_port}");
    let kds_addr = format!("127.0.0.1:{kds_port}");
    let data_dir = dir.path("global");
    let mut args = vec![
        "global-cp",
        "--data-dir",
        &data_dir,
        "--api-addr",
        &api_addr,
        "--kds-addr",
        &kds_addr,
        "--admin-token",
        ADMIN,
    ];
    if let Some(database) = database {
        args.extend_from_slice(&["--database-url", &database.url]);
    }
    let mut process = MeridianProcess::start(&args).await;
    let (kds, ca) = process
        .wait_for_line(|line| {
            let rest = line.split("KDS on ").nth(1)?;
            let (url, ca) = rest.split_once(" (zones trust ")?;
            Some((url.to_owned(), ca.trim_end_matches(')').to_owned()))
        })
        .await;
    let api = process.api_url.clone();
    Global {
        process,
        api,
        kds,
        ca,
    }
}

async fn zone_token(http: &reqwest::Client, api: &str, zone: &str) -> String {
    meridian_tests::cluster::issue_zone_token(http, api, ADMIN, zone).await
}

async fn start_zone(
    zone: &str,
    global: &Global,
    token: &str,
    dir: &Dir,
    api_port: u16,
) -> MeridianProcess {
    start_zone_at(zone, &global.kds, &global.ca, token, dir, api_port).await
}

async fn start_zone_at(
    zone: &str,
    kds: &str,
    ca: &str,
    token: &str,
    dir: &Dir,
    api_port: u16,
) -> MeridianProcess {
    let token_file = dir.path(&format!("{zone}.token"));
    std::fs::write(&token_file, token).unwrap();
    let api_addr = format!("127.0.0.1:{api_port}");
    let data_dir = dir.path(zone);
    MeridianProcess::start(&[
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
        &api_addr,
        "--dp-addr",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
        "--admin-token",
        ADMIN,
    ])
    .await
}

fn timeout_policy(name: &str, idle: &str) -> Value {
    json!({"type": "MeshTimeout", "name": name, "mesh": "default",
           "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"idleTimeout": idle}}]}})
}

async fn put(http: &reqwest::Client, url: &str, body: &Value) {
    let response = http
        .put(url)
        .bearer_auth(ADMIN)
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "PUT {url}: {} {}",
        response.status(),
        response.text().await.unwrap()
    );
}

fn sent_total(insight: &Value, direction: &str) -> u64 {
    insight[direction]["sent"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_global_on_postgres() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    policies_flow_down_dataplanes_flow_up_and_global_restarts_resume(Some(&database)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_global_on_the_embedded_store() {
    meridian_tests::init();
    policies_flow_down_dataplanes_flow_up_and_global_restarts_resume(None).await;
}

async fn policies_flow_down_dataplanes_flow_up_and_global_restarts_resume(
    database: Option<&TestDatabase>,
) {
    let dir = Dir::new("kds-e2e");
    let http = reqwest::Client::new();
    let (api_port, kds_port) = (free_port(), free_port());
    let global = start_global(database, &dir, api_port, kds_port).await;
    let token_a = zone_token(&http, &global.api, "zone-a").await;
    let token_b = zone_token(&http, &global.api, "zone-b").await;
    let (port_a, port_b) = (free_port(), free_port());
    let zone_a = start_zone("zone-a", &global, &token_a, &dir, port_a).await;
    let zone_b = start_zone("zone-b", &global, &token_b, &dir, port_b).await;
    let (api_a, api_b) = (zone_a.api_url.clone(), zone_b.api_url.clone());

    // A policy PUT on global appears in every zone.
    put(
        &http,
        &format!("{}/meshes/default/meshtimeouts/t1", global.api),
        &timeout_policy("t1", "1h"),
    )
    .await;
    for api in [&api_a, &api_b] {
        let url = format!("{api}/meshes/default/meshtimeouts/t1");
        eventually("the policy reaches the zone", DEADLINE, || get(&http, &url)).await;
    }

    // A dataplane registered in zone-a appears on global, stamped with its zone.
    let dataplane = json!({"type": "Dataplane", "name": "web-1", "mesh": "default",
        "networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]}});
    put(
        &http,
        &format!("{api_a}/meshes/default/dataplanes/web-1"),
        &dataplane,
    )
    .await;
    let url = format!("{}/meshes/default/dataplanes/web-1.zone-a", global.api);
    let synced = eventually("the dataplane reaches global", DEADLINE, || {
        get(&http, &url)
    })
    .await;
    assert_eq!(synced["labels"]["kuma.io/zone"], "zone-a");
    assert_eq!(synced["labels"]["kuma.io/display-name"], "web-1");
    // ... and is not echoed back to zone-a, nor sent to zone-b.
    let dps_b = get(&http, &format!("{api_b}/meshes/default/dataplanes"))
        .await
        .unwrap();
    assert_eq!(dps_b["total"], 0);

    // Insights say both zones are online and caught up.
    for zone in ["zone-a", "zone-b"] {
        let url = format!("{}/zones/{zone}/insight", global.api);
        eventually("the zone is online and caught up", DEADLINE, || async {
            let insight = get(&http, &url).await?;
            (insight["online"] == true && insight["lagRevisions"] == 0).then_some(())
        })
        .await;
    }

    // Kill global: zones keep serving their copy.
    let (kds_url, ca) = (global.kds.clone(), global.ca.clone());
    let first_session = get(&http, &format!("{}/zones/zone-a/insight", global.api))
        .await
        .unwrap()["connectedAt"]
        .clone();
    global.process.kill().await;
    let t1_a = format!("{api_a}/meshes/default/meshtimeouts/t1");
    assert!(
        get(&http, &t1_a).await.is_some(),
        "zone-a serves while global is dead"
    );
    // Restart zone-b while global is down: it serves its persisted policies.
    zone_b.terminate().await;
    let zone_b = start_zone_at("zone-b", &kds_url, &ca, &token_b, &dir, port_b).await;
    let t1_b = format!("{}/meshes/default/meshtimeouts/t1", zone_b.api_url);
    assert!(
        get(&http, &t1_b).await.is_some(),
        "a restarted zone serves its persisted copy"
    );

    // Global comes back on the same ports; one change is made.
    let global = start_global(database, &dir, api_port, kds_port).await;
    put(
        &http,
        &format!("{}/meshes/default/meshtimeouts/t2", global.api),
        &timeout_policy("t2", "2h"),
    )
    .await;
    for api in [&api_a, &zone_b.api_url] {
        let url = format!("{api}/meshes/default/meshtimeouts/t2");
        eventually(
            "the new policy reaches the zone after global's restart",
            DEADLINE,
            || get(&http, &url),
        )
        .await;
    }
    // Resume, not resend: each zone received exactly the one new policy from the new
    // global process, and sent nothing up (global already had its dataplanes).
    for zone in ["zone-a", "zone-b"] {
        let url = format!("{}/zones/{zone}/insight", global.api);
        let insight = eventually("the zone acknowledged the new policy", DEADLINE, || async {
            let insight = get(&http, &url).await?;
            let new_session = insight["connectedAt"] != first_session;
            (new_session
                && insight["online"] == true
                && insight["lagRevisions"] == 0
                && sent_total(&insight, "globalToZone") >= 1)
                .then_some(insight)
        })
        .await;
        assert_eq!(
            sent_total(&insight, "globalToZone"),
            1,
            "{zone} re-sent: {insight}"
        );
        assert_eq!(
            sent_total(&insight, "zoneToGlobal"),
            0,
            "{zone} re-sent upward: {insight}"
        );
    }
    drop((zone_a, zone_b, global));
}

async fn subscribe_status(kds: &str, ca: &str, zone: &str, token: Option<&str>) -> tonic::Code {
    let channel = kds_client::channel(kds, &std::fs::read(ca).unwrap()).await;
    let mut client = KdsClient::new(channel);
    let subscribe = ZoneToGlobalAck {
        kind: Some(zone_to_global_ack::Kind::Subscribe(kds::Subscribe {
            since_revision: 0,
        })),
    };
    let mut request = tonic::Request::new(tokio_stream::iter(vec![subscribe]));
    kds_client::as_zone(&mut request, zone, token);
    match client.global_to_zone(request).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_without_a_valid_token_for_their_name_are_refused() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let dir = Dir::new("kds-auth");
    let http = reqwest::Client::new();
    let global = start_global(Some(&database), &dir, free_port(), free_port()).await;
    let token_a = zone_token(&http, &global.api, "zone-a").await;

    assert_eq!(
        subscribe_status(&global.kds, &global.ca, "zone-a", Some(&token_a)).await,
        tonic::Code::Ok
    );
    assert_eq!(
        subscribe_status(&global.kds, &global.ca, "zone-a", None).await,
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        subscribe_status(&global.kds, &global.ca, "zone-b", Some(&token_a)).await,
        tonic::Code::PermissionDenied,
        "a token for zone-a does not open zone-b"
    );
    let forged = format!("{}x", &token_a[..token_a.len() - 1]);
    assert_eq!(
        subscribe_status(&global.kds, &global.ca, "zone-a", Some(&forged)).await,
        tonic::Code::Unauthenticated
    );
    // An expired token, signed with this installation's key.
    let store = database.store().await;
    let tokens = meridian_api::zone_token::ZoneTokens::init(&store)
        .await
        .unwrap();
    let (expired, _) = tokens.issue("zone-a", Duration::ZERO);
    assert_eq!(
        subscribe_status(&global.kds, &global.ca, "zone-a", Some(&expired)).await,
        tonic::Code::Unauthenticated
    );

    // A disabled zone is refused too.
    put(
        &http,
        &format!("{}/zones/zone-a", global.api),
        &json!({"type": "Zone", "name": "zone-a", "enabled": false}),
    )
    .await;
    assert_eq!(
        subscribe_status(&global.kds, &global.ca, "zone-a", Some(&token_a)).await,
        tonic::Code::PermissionDenied
    );
}

/// Bytes in, bytes out: lets a test put any frame on a KDS stream.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Opens `GlobalToZone` as `zone`, sends `frame` as its first message, and answers
/// the status the stream ends with.
async fn send_raw_frame(global: &Global, zone: &str, token: &str, frame: Vec<u8>) -> tonic::Status {
    let channel = kds_client::channel(&global.kds, &std::fs::read(&global.ca).unwrap()).await;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::iter(vec![frame]));
    kds_client::as_zone(&mut request, zone, Some(token));
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/meridian.kds.v1.Kds/GlobalToZone");
    let mut responses = match grpc.streaming(request, path, RawCodec).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status,
    };
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match responses.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return tonic::Status::ok("the stream ended cleanly"),
                Err(status) => return status,
            }
        }
    });
    ended.await.expect("global ends a stream it cannot read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_end_only_their_stream() {
    meridian_tests::init();
    let dir = Dir::new("kds-frames");
    let http = reqwest::Client::new();
    let global = start_global(None, &dir, free_port(), free_port()).await;
    let token = zone_token(&http, &global.api, "zone-a").await;

    // Not protobuf at all: a field tag with wire type 7, then truncated varints.
    let garbage = send_raw_frame(&global, "zone-a", &token, vec![0xff; 64]).await;
    assert_ne!(garbage.code(), tonic::Code::Ok, "{garbage:?}");
    assert!(
        garbage.message().contains("decode"),
        "the status says the frame did not decode: {garbage:?}"
    );

    // Over the 8 MiB message limit.
    let oversized = send_raw_frame(&global, "zone-a", &token, vec![0; 9 * 1024 * 1024]).await;
    assert_eq!(oversized.code(), tonic::Code::OutOfRange, "{oversized:?}");

    // Global is unharmed: ready, and a well-formed subscription is served.
    let ready = http
        .get(format!("{}/readyz", global.api))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        subscribe_status(&global.kds, &global.ca, "zone-a", Some(&token)).await,
        tonic::Code::Ok
    );
}
