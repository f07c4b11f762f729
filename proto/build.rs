//! Generates the KDS client and server with a vendored protoc, so a fresh machine
//! needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/kds.proto", "proto/dp.proto", "proto/raft.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto/kds.proto");
    println!("cargo:rerun-if-changed=proto/dp.proto");
    println!("cargo:rerun-if-changed=proto/raft.proto");
    Ok(())
}
