//! Generates the gRPC client and server code for `proto/ringkv.proto`.
//!
//! The proto is compiled with `protox`, a pure-Rust protobuf compiler, so building ringkv
//! never needs a `protoc` binary. The resulting `FileDescriptorSet` goes to
//! `tonic-prost-build`, which writes `ringkv.v1.rs` into `OUT_DIR`; `src/lib.rs` includes it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/ringkv.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let fds = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Methods a server does not implement answer UNIMPLEMENTED, as gRPC servers of an
        // older version do; tests use it for fake peers that serve a few methods.
        .generate_default_stubs(true)
        // `bytes` fields become `bytes::Bytes`: keys, values and contexts are handed on
        // without copying.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
