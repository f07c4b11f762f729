//! The `meridian` binary's own behaviour without a server: help, and the messages a
//! person sees when the API is unreachable or a file is broken.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn meridian(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .env_remove("MERIDIAN_API")
        .env_remove("MERIDIAN_TOKEN")
        .env_remove("MERIDIAN_DATABASE_URL")
        .output()
        .expect("run meridian")
}

#[test]
fn help_lists_the_subcommands() {
    let output = meridian(&["--help"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for command in ["global-cp", "apply", "get", "delete"] {
        assert!(text.contains(command), "{command} missing from:\n{text}");
    }
}

#[test]
fn an_unreachable_api_is_explained() {
    // Bind then drop a listener so the port is known to be closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = meridian(&[
        "get",
        "meshes",
        "--api",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("cannot reach the Meridian API"), "{text}");
    assert!(text.contains("MERIDIAN_API"), "{text}");
}

#[test]
fn an_invalid_file_is_explained_before_any_request() {
    let dir = std::env::temp_dir().join(format!("meridian-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.yaml");
    std::fs::write(&file, "type: Mesh\nname: [oops\n").unwrap();
    // No server at this address: the file must be rejected before any connection.
    let output = meridian(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--api",
        "http://127.0.0.1:1",
    ]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("not valid YAML"), "{text}");
    let missing = meridian(&["apply", "-f", dir.join("absent.yaml").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("absent.yaml"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unknown_types_are_refused_with_the_known_ones() {
    let output = meridian(&["get", "bananas"]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("MeshTCPRoute") || text.contains("meshtcproutes"),
        "{text}"
    );
}

#[test]
fn zone_cp_refuses_plaintext_kds() {
    let output = meridian(&[
        "zone-cp",
        "--zone",
        "z",
        "--global-kds",
        "http://127.0.0.1:1",
        "--zone-token",
        "/nonexistent",
    ]);
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("https://"), "{text}");
}
