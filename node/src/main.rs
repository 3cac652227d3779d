//! `ringkv`: run a node, a local dev cluster, or talk to a cluster.
//!
//! Errors end the process with one line on stderr and an exit code that says what kind
//! of failure it was (see [`cli::exit`]), so scripts can tell "not found" from "the
//! cluster is unavailable".

mod cli;

/// jemalloc serves every allocation of the process, RocksDB's C++ included (the
/// `unprefixed_malloc` feature replaces `malloc` itself). Against glibc's allocator, which
/// took about 12% of the CPU in the profile (`docs/benchmarks.md`), it gave 37% more
/// single-node reads per second; it is also what RocksDB is tuned and tested with.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(cli::exit::OTHER);
        }
    };
    let code = runtime.block_on(cli::run(args));
    std::process::ExitCode::from(code)
}
