//! A small shopping-cart service tested against ringkv under a partition and a crash.
//!
//! The cart is a set of items stored under one key. Two shoppers (two browser tabs of
//! the same user, say) add items through different nodes while the cluster is split in
//! two and one node crashes. Concurrent adds become siblings; the service merges them on
//! every read (set union, as Amazon's cart did in the Dynamo paper) and writes the merge
//! back with the read's context, so no add is ever lost.
//!
//! The test's own property: every add the service acknowledged is in the final cart.
//! The scenario adds ringkv's checks (replicas converge, one ring, no dot reused).
//!
//! ```sh
//! cargo run -p ringkv-sim --example shopping_cart            # seed 1
//! cargo run -p ringkv-sim --example shopping_cart -- 42      # another seed
//! ```

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ringkv_client::{Client, ClientError, Consistency, Context, ReadOptions, WriteOptions};
use ringkv_sim::scenario::{Scenario, Step};

const CART: &str = "cart:alice";

/// The cart service: what application code over ringkv looks like.
struct CartService {
    client: Client,
}

impl CartService {
    /// The cart as the service sees it: the union of every sibling, and the context to
    /// write the merge back with.
    async fn load(&self) -> Result<(BTreeSet<String>, Context), ClientError> {
        let options = ReadOptions {
            consistency: Some(Consistency::One),
            timeout: None,
        };
        let read = self.client.get_with(CART, options).await?;
        let items = read.siblings.iter().flat_map(|s| decode(&s.value)).collect();
        Ok((items, read.context))
    }

    /// Adds an item: read, merge siblings, add, write back with the read's context.
    async fn add(&self, item: &str) -> Result<(), ClientError> {
        let (mut items, context) = self.load().await?;
        items.insert(item.to_owned());
        let options = WriteOptions {
            consistency: Some(Consistency::One),
            ..WriteOptions::default()
        };
        self.client.put_with(CART, encode(&items), &context, options).await?;
        Ok(())
    }
}

fn encode(items: &BTreeSet<String>) -> Bytes {
    Bytes::from(items.iter().cloned().collect::<Vec<_>>().join(","))
}

fn decode(value: &[u8]) -> impl Iterator<Item = String> + '_ {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

type Acked = Arc<Mutex<BTreeSet<String>>>;

/// One shopper adding `count` items named `prefix-i`, recording each acknowledged add.
fn shopper(prefix: &'static str, count: usize, acked: Acked) -> impl FnOnce(Client) -> Shopping + Send {
    move |client| {
        Box::pin(async move {
            let cart = CartService { client };
            for i in 0..count {
                let item = format!("{prefix}-{i}");
                // A failed add is shown to the shopper, who may try again; only an
                // acknowledged one must survive.
                if cart.add(&item).await.is_ok() {
                    acked.lock().unwrap_or_else(|p| p.into_inner()).insert(item);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(())
        })
    }
}

type Shopping = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>>;

/// What one run of the cart scenario shows.
pub struct CartVerdict {
    /// The scenario's own report (clients, ringkv's checks, the log).
    pub report: ringkv_sim::scenario::ScenarioReport,
    /// Adds the service acknowledged.
    pub acked: BTreeSet<String>,
    /// Items in the final cart (the union of its siblings).
    pub cart: BTreeSet<String>,
}

impl CartVerdict {
    /// Acknowledged adds missing from the final cart.
    pub fn lost(&self) -> Vec<&String> {
        self.acked.difference(&self.cart).collect()
    }

    /// Whether ringkv's checks passed and no acknowledged add was lost.
    pub fn passed(&self) -> bool {
        self.report.passed() && self.lost().is_empty()
    }
}

/// Two shoppers add 12 items each while n1 is cut off and n2 crashes and restarts.
pub fn run_cart(seed: u64) -> Result<CartVerdict, ringkv_sim::scenario::ScenarioError> {
    // The scenario runs on a thread of its own, so the record of acknowledged adds is
    // shared through a mutex.
    let acked: Acked = Arc::default();
    let report = Scenario::new(seed)
        .nodes(3)
        .client_of("tab-1", &[0, 1, 2], shopper("book", 12, Arc::clone(&acked)))
        .client_of("tab-2", &[2, 1, 0], shopper("lamp", 12, Arc::clone(&acked)))
        // n1 (and tab-1's first choice) is cut off from the others: both sides take adds.
        .at(Duration::from_secs(1), Step::Partition(vec![0]))
        // n2 crashes while the partition holds.
        .at(Duration::from_secs(2), Step::Crash(1))
        .at(Duration::from_secs(3), Step::Restart(1))
        .at(Duration::from_secs(4), Step::Heal)
        .run()?;
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let cart = report
        .final_values(CART)
        .iter()
        .flat_map(|v| decode(v).collect::<Vec<_>>())
        .collect();
    Ok(CartVerdict { report, acked, cart })
}

fn main() -> ExitCode {
    let seed = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let verdict = match run_cart(seed) {
        Ok(verdict) => verdict,
        Err(e) => {
            eprintln!("shopping_cart: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", verdict.report);
    println!(
        "seed {seed}: {} adds acknowledged, the final cart holds {} items in {} sibling(s), {} lost",
        verdict.acked.len(),
        verdict.cart.len(),
        verdict.report.final_values(CART).len(),
        verdict.lost().len()
    );
    if !verdict.lost().is_empty() {
        println!("lost adds: {:?}", verdict.lost());
    }
    if verdict.passed() {
        println!("verdict: pass");
        ExitCode::SUCCESS
    } else {
        println!("verdict: FAIL");
        ExitCode::from(1)
    }
}
