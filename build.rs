//! Compiles the `sorcha.peer.v1` contract in `proto/` with protox (pure Rust, no system
//! `protoc`) and writes the encoded descriptor set used by gRPC server reflection.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/sorcha/peer/v1/connection.proto",
        "proto/sorcha/peer/v1/sync.proto",
        "proto/sorcha/peer/v1/heartbeat.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("sorcha_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Documents travel as `bytes::Bytes` (shared with the store, no copies) and maps as
        // BTreeMap (the register's metadata type).
        .bytes(".")
        .btree_map(".")
        // Prost with small initial buffers: see src/wire/codec.rs.
        .codec_path("crate::wire::codec::LeanCodec")
        .compile_fds(fds)?;
    Ok(())
}
