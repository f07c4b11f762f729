//! The real `meridian` binary end to end: `global-cp` on a fresh PostgreSQL database,
//! then `apply`, `get` and `delete` as an operator would type them.

#![allow(clippy::unwrap_used)]

use meridian_tests::postgres::TestDatabase;
use meridian_tests::process::{MeridianProcess, run_cli};

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_applies_seed_004_and_reads_it_back() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let mut global = MeridianProcess::global_cp(&database.url, &[]).await;
    let token = global
        .wait_for_line(|line| {
            line.split("admin token")
                .nth(1)
                .and_then(|rest| rest.rsplit(' ').next())
                .map(str::to_owned)
        })
        .await;
    assert!(
        token.starts_with("mrd_"),
        "generated token printed once: {token}"
    );
    let api = global.api_url.clone();
    let env = [
        ("MERIDIAN_API", api.as_str()),
        ("MERIDIAN_TOKEN", token.as_str()),
    ];

    // Both documents in one multi-document file, exactly as seed 004 shows them.
    let combined = format!(
        "{}---\n{}",
        std::fs::read_to_string(fixture("seed004-traffic-split.yaml")).unwrap(),
        std::fs::read_to_string(fixture("seed004-traffic-redirection.yaml")).unwrap()
    );
    let dir = std::env::temp_dir().join(format!("meridian-cli-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("seed004.yaml");
    std::fs::write(&file, combined).unwrap();

    let applied = run_cli(&["apply", "-f", file.to_str().unwrap()], &env).await;
    assert!(
        applied.status.success(),
        "apply failed: {}{}",
        stdout(&applied),
        stderr(&applied)
    );
    let lines: Vec<_> = stdout(&applied).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        [
            "MeshTCPRoute tcp-route-1 (mesh default): created",
            "MeshTCPRoute tcp-route-1 (mesh default): configured",
        ]
    );

    let table = run_cli(&["get", "meshtcproutes", "-m", "default"], &env).await;
    assert!(table.status.success(), "{}", stderr(&table));
    let table = stdout(&table);
    let row = table
        .lines()
        .find(|l| l.contains("tcp-route-1"))
        .unwrap_or_else(|| panic!("no row in:\n{table}"));
    assert!(
        row.contains("MeshSubset app=frontend") && row.contains("MeshService backend"),
        "{table}"
    );

    // YAML output re-applies cleanly: it is the same document.
    let yaml = run_cli(&["get", "meshtcproutes", "tcp-route-1", "-o", "yaml"], &env).await;
    assert!(
        stdout(&yaml).contains("name: external-backend"),
        "{}",
        stdout(&yaml)
    );
    std::fs::write(dir.join("export.yaml"), stdout(&yaml)).unwrap();
    let reapplied = run_cli(
        &["apply", "-f", dir.join("export.yaml").to_str().unwrap()],
        &env,
    )
    .await;
    assert!(
        reapplied.status.success(),
        "{}{}",
        stdout(&reapplied),
        stderr(&reapplied)
    );

    let deleted = run_cli(&["delete", "meshtcproute", "tcp-route-1"], &env).await;
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let empty = run_cli(&["get", "meshtcproutes"], &env).await;
    assert_eq!(stdout(&empty), "no meshtcproutes found\n");

    let status = global.terminate().await;
    assert!(
        status.success(),
        "global-cp exits cleanly on SIGTERM: {status}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_messages_for_bad_tokens_and_invalid_documents() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let global = MeridianProcess::global_cp(&database.url, &["--admin-token", "right"]).await;
    assert!(
        global.banner.iter().all(|l| !l.contains("mrd_")),
        "a configured token is never printed"
    );
    let api = global.api_url.clone();

    let dir = std::env::temp_dir().join(format!("meridian-cli-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("route.yaml");
    std::fs::copy(fixture("seed004-traffic-split.yaml"), &file).unwrap();
    let path = file.to_str().unwrap();

    let refused = run_cli(
        &["apply", "-f", path],
        &[("MERIDIAN_API", &api), ("MERIDIAN_TOKEN", "wrong")],
    )
    .await;
    assert!(!refused.status.success());
    let out = stdout(&refused);
    assert!(out.contains("401") && out.contains("--token"), "{out}");

    let invalid = "type: MeshTCPRoute\nname: r\nmesh: default\nspec:\n  targetRef: {kind: MeshService}\n  to: []\n";
    std::fs::write(&file, invalid).unwrap();
    let rejected = run_cli(
        &["apply", "-f", path],
        &[("MERIDIAN_API", &api), ("MERIDIAN_TOKEN", "right")],
    )
    .await;
    assert!(!rejected.status.success());
    let out = stdout(&rejected);
    assert!(
        out.contains("MeshTCPRoute r (mesh default): not applied"),
        "{out}"
    );
    assert!(
        out.contains("spec.targetRef: name or labels must be set"),
        "every invalid field is listed: {out}"
    );
    assert!(
        stderr(&rejected).contains("1 of 1 document(s) failed"),
        "{}",
        stderr(&rejected)
    );

    // A Kuma document with an HTTP-only part applies, and the server's warning
    // is printed, as kubectl prints them.
    let http_timeout = "type: MeshTimeout\nname: t\nmesh: default\nspec:\n  targetRef: {kind: Mesh}\n  to:\n  - targetRef: {kind: Mesh}\n    default: {idleTimeout: 1h, http: {requestTimeout: 5s}}\n";
    std::fs::write(&file, http_timeout).unwrap();
    let warned = run_cli(
        &["apply", "-f", path],
        &[("MERIDIAN_API", &api), ("MERIDIAN_TOKEN", "right")],
    )
    .await;
    assert!(warned.status.success(), "{}", stderr(&warned));
    assert!(
        stdout(&warned).contains("MeshTimeout t (mesh default): created"),
        "{}",
        stdout(&warned)
    );
    assert!(
        stderr(&warned).contains(
            "Warning: MeshTimeout t (mesh default): spec.to[0].default.http: does not apply to TCP traffic"
        ),
        "{}",
        stderr(&warned)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn kds_without_tls_is_refused_at_start() {
    meridian_tests::init();
    let dir = meridian_tests::scratch::Dir::new("cli-kds-plain");
    let token = dir.path("zone.token");
    std::fs::write(&token, "mrdz_x.y").unwrap();
    let refused = run_cli(
        &[
            "zone-cp",
            "--zone",
            "plain",
            "--global-kds",
            "http://127.0.0.1:5685",
            "--zone-token",
            &token,
            "--data-dir",
            &dir.path("zone"),
            "--api-addr",
            "127.0.0.1:0",
            "--dp-addr",
            "127.0.0.1:0",
        ],
        &[],
    )
    .await;
    assert!(
        !refused.status.success(),
        "a plain-text KDS URL was accepted"
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("https://"), "the error says to use TLS: {err}");
}

/// `export` writes what `apply -f` restores: export, wipe (delete the meshes and
/// the zone, which takes what they hold), apply the file, and a second export
/// is the first one, timestamps aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_wipe_then_apply_restores_global() {
    meridian_tests::init();
    let database = TestDatabase::create().await;
    let global = MeridianProcess::global_cp(&database.url, &["--admin-token", "right"]).await;
    let api = global.api_url.clone();
    let env = [("MERIDIAN_API", api.as_str()), ("MERIDIAN_TOKEN", "right")];
    let dir = std::env::temp_dir().join(format!("meridian-export-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();

    let documents = r#"
type: Mesh
name: payments
---
type: Zone
name: zone-x
---
type: MeshTrafficPermission
name: by-spiffe-id
mesh: payments
labels: {team: payments}
spec:
  targetRef: {kind: Mesh}
  rules:
    - default:
        allow: [{spiffeID: {type: Prefix, value: "spiffe://payments"}}]
---
type: MeshTimeout
name: slow-backend
mesh: payments
spec:
  to: [{targetRef: {kind: MeshService, name: backend}, default: {idleTimeout: 20s}}]
---
type: MeshMultiZoneService
name: ledger
mesh: payments
spec:
  selector: {meshService: {matchLabels: {app: ledger}}}
  ports: [{port: 8080}]
---
type: MeshTCPRoute
name: split
mesh: default
spec:
  to:
    - targetRef: {kind: MeshService, name: backend}
      rules: [{default: {backendRefs: [{kind: MeshService, name: backend-v2}]}}]
"#;
    std::fs::write(path("setup.yaml"), documents).unwrap();
    let applied = run_cli(&["apply", "-f", &path("setup.yaml")], &env).await;
    assert!(applied.status.success(), "{}", stderr(&applied));

    let export = || async {
        let out = run_cli(&["export"], &env).await;
        assert!(out.status.success(), "export failed: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not exported: zone-owned"),
            "{}",
            stderr(&out)
        );
        stdout(&out)
    };
    let without_times = |yaml: &str| -> Vec<String> {
        yaml.lines()
            .filter(|l| !l.starts_with("creationTime:") && !l.starts_with("modificationTime:"))
            .map(str::to_owned)
            .collect()
    };
    let first = export().await;
    for name in [
        "payments",
        "by-spiffe-id",
        "slow-backend",
        "ledger",
        "split",
        "zone-x",
    ] {
        assert!(
            first.contains(&format!("name: {name}")),
            "{name} missing:\n{first}"
        );
    }
    std::fs::write(path("export.yaml"), &first).unwrap();

    for (kind, name) in [
        ("mesh", "payments"),
        ("mesh", "default"),
        ("zone", "zone-x"),
    ] {
        let deleted = run_cli(&["delete", kind, name], &env).await;
        assert!(deleted.status.success(), "{}", stderr(&deleted));
    }
    let wiped = export().await;
    assert!(!wiped.contains("name: payments"), "{wiped}");

    let restored = run_cli(&["apply", "-f", &path("export.yaml")], &env).await;
    assert!(
        restored.status.success(),
        "{}{}",
        stdout(&restored),
        stderr(&restored)
    );
    assert_eq!(without_times(&export().await), without_times(&first));
    let _ = std::fs::remove_dir_all(dir);
}
