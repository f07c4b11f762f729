//! Compiles the CLI's `meridian dp` wrapper (`cli/src/commands/dp.rs`) against
//! this crate and checks its flags parse into the registration they describe,
//! so the thin wrapper is tested where the library is.

#![allow(clippy::unwrap_used)]

#[path = "../../cli/src/commands/dp.rs"]
mod dp;

use clap::Parser;
use meridian_dataplane::DataplaneSource;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    dp: dp::DpArgs,
}

fn parse(args: &[&str]) -> Result<dp::DpArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("meridian-dp").chain(args.iter().copied())).map(|c| c.dp)
}

#[test]
fn flags_make_a_sidecar_registration() {
    let args = parse(&[
        "--name",
        "web-1",
        "--service",
        "web",
        "--inbound",
        "127.0.0.1:10001=127.0.0.1:8080",
        "--outbound",
        "127.0.0.1:33033=backend:8080",
        "--outbound",
        "33034=db",
        "--tag",
        "version=v2",
        "--admin-addr",
        "127.0.0.1:9901",
    ])
    .unwrap();
    assert_eq!(args.mesh, "default");
    let options = args.options();
    assert_eq!(options.admin_addr, Some("127.0.0.1:9901".parse().unwrap()));
    assert!(matches!(options.dataplane, DataplaneSource::Flags(_)));
    let settings = options.settings().unwrap();
    let doc = &settings.registration.resource;
    assert_eq!(settings.registration.name, "web-1");
    assert_eq!(doc["networking"]["inbound"][0]["tags"]["version"], "v2");
    assert_eq!(doc["networking"]["outbound"][1]["port"], 33034);
    assert_eq!(
        doc["networking"]["outbound"][0]["tags"]["kuma.io/service"],
        "backend"
    );
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let e = parse(&["--name", "a", "--service", "s", "--inbound", "nonsense"]).unwrap_err();
    assert!(e.to_string().contains("PUBLIC_ADDR=APP_ADDR"), "{e}");
    let e = parse(&["--name", "a", "--service", "s"]).unwrap_err();
    assert!(e.to_string().contains("--inbound"), "{e}");
    let e = parse(&["--dataplane-file", "dp.yaml", "--name", "a"]).unwrap_err();
    assert!(e.to_string().contains("cannot be used with"), "{e}");
    assert!(parse(&["--dataplane-file", "dp.yaml"]).is_ok());
}

#[tokio::test]
async fn run_stops_when_told() {
    let args = parse(&[
        "--zone-cp",
        "http://127.0.0.1:1",
        "--name",
        "web-1",
        "--service",
        "web",
        "--inbound",
        "127.0.0.1:10001=127.0.0.1:8080",
    ])
    .unwrap();
    // The CP is unreachable: the client keeps retrying in the background,
    // which must not keep `run` from returning once shutdown resolves.
    tokio::time::timeout(std::time::Duration::from_secs(20), dp::run(args, async {}))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn run_rejects_a_remote_plain_http_zone_cp() {
    let args = parse(&[
        "--zone-cp",
        "http://10.1.2.3:5678",
        "--name",
        "web-1",
        "--service",
        "web",
        "--inbound",
        "127.0.0.1:10001=127.0.0.1:8080",
    ])
    .unwrap();
    let e = dp::run(args, async {}).await.unwrap_err();
    assert!(format!("{e:#}").contains("loopback"), "{e:#}");
}
