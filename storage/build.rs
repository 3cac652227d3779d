//! Links C++'s runtime when RocksDB comes prebuilt.
//!
//! `scripts/setup.sh` builds RocksDB's static library once per machine and points
//! `librocksdb-sys` at it with `ROCKSDB_LIB_DIR` (so no profile compiles RocksDB's C++
//! again). `librocksdb-sys` then links only that library, not the C++ standard library it
//! needs, which it links only when it compiles RocksDB itself; this crate, RocksDB's one
//! user in the workspace, links it instead.

fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    let prebuilt = std::env::var_os("ROCKSDB_LIB_DIR").is_some();
    let target = std::env::var("TARGET").unwrap_or_default();
    if prebuilt && target.contains("linux") {
        println!("cargo:rustc-link-lib=stdc++");
    } else if prebuilt && !target.contains("windows") {
        println!("cargo:rustc-link-lib=c++");
    }
}
