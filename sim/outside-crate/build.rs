//! Exports ringkv-sim's `getrandom`/`getentropy` from this crate's test executables, so
//! every OS-random byte a simulated node draws comes from the scenario's seed (the same
//! four lines as ringkv-sim's own build script; link arguments do not pass to dependents).
fn main() {
    for symbol in ["getrandom", "getentropy"] {
        println!("cargo:rustc-link-arg=-Wl,--undefined={symbol}");
        println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol={symbol}");
    }
}
