//! YCSB's Zipfian key choosers: [`Zipfian`] (item 0 is the most popular) and
//! [`ScrambledZipfian`] (the same skew, with the popular items spread over the key space).
//!
//! Both are ports of YCSB's `ZipfianGenerator` and `ScrambledZipfianGenerator`, including
//! their constants, so a "zipfian" run here means what it means in YCSB papers. This is not
//! a general-purpose distribution library: it draws `u64` indexes and nothing else.
//! Start with [`ScrambledZipfian::new`], which is what `--distribution zipfian` uses.

use rand::Rng;

/// YCSB's default skew (`ZipfianGenerator.ZIPFIAN_CONSTANT`).
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// The item count YCSB's scrambled generator draws from before hashing into the key space.
const SCRAMBLED_ITEM_COUNT: u64 = 10_000_000_000;

/// `zeta(SCRAMBLED_ITEM_COUNT, 0.99)`, precomputed by YCSB (computing it takes 10^10 steps).
const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

/// The most items [`Zipfian::new`] sums `zeta` over; beyond it the set-up alone takes seconds.
pub const ZIPFIAN_ITEMS_MAX: u64 = 100_000_000;

/// Zipfian over `0..items`: item 0 is the most popular, then item 1, and so on.
#[derive(Clone, Debug)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    half_pow_theta: f64,
}

impl Zipfian {
    /// A generator over `0..items` with skew `theta` (YCSB uses [`ZIPFIAN_CONSTANT`]).
    ///
    /// # Panics
    /// When `items` is 0 or over [`ZIPFIAN_ITEMS_MAX`], or `theta` is not in `(0, 1)`.
    pub fn new(items: u64, theta: f64) -> Zipfian {
        assert!(items >= 1);
        assert!(items <= ZIPFIAN_ITEMS_MAX);
        let zetan = zeta(items, theta);
        Zipfian::with_zetan(items, theta, zetan)
    }

    fn with_zetan(items: u64, theta: f64, zetan: f64) -> Zipfian {
        assert!(theta > 0.0);
        assert!(theta < 1.0);
        assert!(items >= 1);
        let zeta2 = zeta(2, theta);
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipfian {
            items,
            theta,
            alpha,
            zetan,
            eta,
            half_pow_theta: 0.5f64.powf(theta),
        }
    }

    /// Draws an item in `0..items`.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + self.half_pow_theta {
            return 1.min(self.items - 1);
        }
        let item = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        // The formula can reach `items` by rounding when `u` is close to 1.
        item.min(self.items - 1)
    }

    /// The skew this generator was built with.
    pub fn theta(&self) -> f64 {
        self.theta
    }
}

/// Zipfian popularity over `0..items`, with the popular items scattered by a hash, as
/// YCSB's `ScrambledZipfianGenerator`: draws from a Zipfian over 10^10 items and maps
/// each through FNV-1a 64 modulo `items`.
#[derive(Clone, Debug)]
pub struct ScrambledZipfian {
    items: u64,
    zipfian: Zipfian,
}

impl ScrambledZipfian {
    /// A generator over `0..items` with YCSB's constant 0.99.
    ///
    /// # Panics
    /// When `items` is 0.
    pub fn new(items: u64) -> ScrambledZipfian {
        assert!(items >= 1);
        ScrambledZipfian {
            items,
            zipfian: Zipfian::with_zetan(SCRAMBLED_ITEM_COUNT, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN),
        }
    }

    /// Draws an item in `0..items`.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        fnv1a_64(self.zipfian.sample(rng)) % self.items
    }
}

/// `sum(1 / i^theta)` for `i` in `1..=n`.
fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

/// FNV-1a over the eight little-endian bytes of `value`, as YCSB's `Utils.fnvhash64`.
fn fnv1a_64(value: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET_BASIS;
    for byte in value.to_le_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    const ITEMS: u64 = 10_000;
    const SAMPLES: u64 = 200_000;

    /// Share of all samples taken by the most frequent 1% of items.
    fn top_percent_share(mut sample: impl FnMut(&mut StdRng) -> u64) -> f64 {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0u64; ITEMS as usize];
        for _ in 0..SAMPLES {
            let item = sample(&mut rng);
            assert!(item < ITEMS, "item {item} out of range");
            counts[item as usize] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top: u64 = counts[..(ITEMS / 100) as usize].iter().sum();
        top as f64 / SAMPLES as f64
    }

    fn check(share: f64, min: f64, max: f64) {
        assert!(
            share > min,
            "top 1% of keys got {share:.3} of the accesses, expected over {min}"
        );
        assert!(
            share < max,
            "top 1% of keys got {share:.3} of the accesses, expected under {max}"
        );
    }

    #[test]
    fn zipfian_top_one_percent_gets_a_large_share() {
        let zipfian = Zipfian::new(ITEMS, ZIPFIAN_CONSTANT);
        // Analytically zeta(100)/zeta(10_000) = 5.4/9.6, about 0.55.
        check(top_percent_share(|rng| zipfian.sample(rng)), 0.45, 0.65);
    }

    #[test]
    fn scrambled_zipfian_top_one_percent_gets_a_large_share() {
        let scrambled = ScrambledZipfian::new(ITEMS);
        check(top_percent_share(|rng| scrambled.sample(rng)), 0.10, 0.50);
    }

    #[test]
    fn uniform_top_one_percent_gets_a_small_share() {
        // The control: without skew the top 1% stays near 1% (sampling noise lifts it a bit).
        check(top_percent_share(|rng| rng.random_range(0..ITEMS)), 0.005, 0.03);
    }

    #[test]
    fn zipfian_hottest_item_is_zero() {
        let zipfian = Zipfian::new(ITEMS, ZIPFIAN_CONSTANT);
        let mut rng = StdRng::seed_from_u64(1);
        let zeros = (0..10_000).filter(|_| zipfian.sample(&mut rng) == 0).count();
        // P(0) = 1 / zeta(10_000, 0.99), about 0.10.
        assert!((800..1_200).contains(&zeros), "item 0 drawn {zeros} times in 10000");
    }

    #[test]
    fn single_item_always_draws_zero() {
        let mut rng = StdRng::seed_from_u64(3);
        let zipfian = Zipfian::new(1, ZIPFIAN_CONSTANT);
        let scrambled = ScrambledZipfian::new(1);
        for _ in 0..1_000 {
            assert_eq!(zipfian.sample(&mut rng), 0);
            assert_eq!(scrambled.sample(&mut rng), 0);
        }
    }
}
