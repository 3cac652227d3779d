//! Generates the etcd v3 KV client (`proto/etcd_kv.proto`) with `protox` (pure Rust, no
//! `protoc`), as `client/build.rs` does for ringkv's own API.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/etcd_kv.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let fds = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
