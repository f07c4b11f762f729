//! Generates the KDS client and server with a vendored protoc, so a fresh machine
//! needs no system protobuf compiler.
//!
//! The data-plane stream is generated with its own codec (`crate::codec::DpCodec`):
//! small encode buffers, so each of a zone CP's thousand streams keeps one fragment's
//! worth of buffer, not one config's.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(&protoc);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/kds.proto", "proto/raft.proto"],
        &["proto"],
    )?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(&protoc);
    // Fragments are slices of one encoding: shared, not copied.
    config.bytes([".meridian.dp.v1.Fragment.data"]);
    tonic_prost_build::configure()
        .codec_path("crate::codec::DpCodec")
        .compile_with_config(config, &["proto/dp.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/kds.proto");
    println!("cargo:rerun-if-changed=proto/dp.proto");
    println!("cargo:rerun-if-changed=proto/raft.proto");
    Ok(())
}
