//! Every random byte the process asks the OS for, drawn from the simulation's seed.
//!
//! chitchat seeds its gossip-peer RNG from the OS, `std`'s hash maps draw their keys from
//! the OS (and chitchat iterates hash sets), tokio seeds its `select!` RNG through those
//! keys, and a node draws its incarnation from `rand::rng()`. All of them end in libc's
//! `getrandom(2)` (found through `dlsym`, or linked directly). This module defines
//! `getrandom` in the simulation's executables (exported by `build.rs`), the way madsim
//! does, so those calls read a per-thread stream seeded by [`seed_this_thread`]. A thread
//! that was never seeded gets real OS randomness from `/dev/urandom`.
//!
//! Per thread, because several simulations may run at once (test threads): each runs on a
//! fresh thread whose first `HashMap` and first `rand::rng()` are then seeded too.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io::Read;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

thread_local! {
    static STREAM: RefCell<Option<ChaCha8Rng>> = const { RefCell::new(None) };
}

/// Makes every OS random byte this thread asks for from now on come from `seed`.
/// Call it first thing on a fresh thread, before anything creates a hash map.
pub fn seed_this_thread(seed: u64) {
    STREAM.with(|s| *s.borrow_mut() = Some(ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15)));
}

/// Whether OS randomness is really intercepted in this executable: two fresh threads
/// seeded alike must build `HashMap`s that iterate alike.
pub fn is_intercepted() -> bool {
    let order = || {
        std::thread::spawn(|| {
            seed_this_thread(7);
            let map: std::collections::HashMap<u32, ()> = (0..64).map(|i| (i, ())).collect();
            map.keys().copied().collect::<Vec<u32>>()
        })
        .join()
        .unwrap_or_default()
    };
    let first = order();
    !first.is_empty() && first == order()
}

fn fill(buf: &mut [u8]) -> bool {
    let seeded = STREAM
        .try_with(|s| match s.try_borrow_mut() {
            Ok(mut stream) => match stream.as_mut() {
                Some(rng) => {
                    rng.fill_bytes(buf);
                    true
                }
                None => false,
            },
            Err(_) => false,
        })
        .unwrap_or(false);
    if seeded {
        return true;
    }
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

/// libc's `getrandom(2)`, replaced for this executable.
///
/// # Safety
/// `buf` must point to `len` writable bytes, as for libc's `getrandom`.
#[no_mangle]
pub unsafe extern "C" fn getrandom(buf: *mut u8, len: usize, _flags: u32) -> isize {
    if len == 0 {
        return 0;
    }
    if buf.is_null() {
        return -1;
    }
    // SAFETY: the caller promises `buf` points to `len` writable bytes.
    let slice = unsafe { std::slice::from_raw_parts_mut(buf, len) };
    if fill(slice) {
        len as isize
    } else {
        -1
    }
}

/// libc's `getentropy(3)` (at most 256 bytes), replaced for the same reason.
///
/// # Safety
/// `buf` must point to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn getentropy(buf: *mut u8, len: usize) -> i32 {
    if len > 256 {
        return -1;
    }
    // SAFETY: forwarded contract.
    if unsafe { getrandom(buf, len, 0) } == len as isize || len == 0 {
        0
    } else {
        -1
    }
}
