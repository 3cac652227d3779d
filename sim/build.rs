//! Exports the simulation's `getrandom`/`getentropy` from its executables so that code
//! finding them with `dlsym(RTLD_DEFAULT, ...)` (the `getrandom` crate, `std`) gets the
//! seeded ones (see `src/entropy.rs`), and forces them to be linked in.
fn main() {
    for symbol in ["getrandom", "getentropy"] {
        println!("cargo:rustc-link-arg=-Wl,--undefined={symbol}");
        println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol={symbol}");
    }
}
