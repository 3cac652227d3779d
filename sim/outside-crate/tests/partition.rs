//! The cart keeps every acknowledged add while the cluster is split and a node crashes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cart_service::{decode, Cart};
use ringkv_sim::scenario::{Scenario, Step};

#[test]
fn no_acknowledged_add_is_lost_under_a_partition_and_a_crash() {
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let shopper = |name: &'static str, acked: Arc<Mutex<BTreeSet<String>>>| {
        move |client| async move {
            let cart = Cart::new(client, "alice");
            for i in 0..10 {
                let item = format!("{name}-{i}");
                if cart.add(&item).await.is_ok() {
                    acked.lock().unwrap().insert(item);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(())
        }
    };
    let report = Scenario::new(2)
        .nodes(3)
        .client_of("tab-1", &[0, 1, 2], shopper("book", Arc::clone(&acked)))
        .client_of("tab-2", &[2, 1, 0], shopper("lamp", Arc::clone(&acked)))
        .at(Duration::from_secs(1), Step::Partition(vec![0]))
        .at(Duration::from_secs(2), Step::Crash(1))
        .at(Duration::from_secs(3), Step::Restart(1))
        .at(Duration::from_secs(4), Step::Heal)
        .run()
        .expect("the scenario runs");
    let acked = acked.lock().unwrap().clone();
    let cart: BTreeSet<String> = report.final_values("cart:alice").iter().flat_map(|v| decode(v)).collect();
    println!("{report}{} adds acknowledged, {} in the cart", acked.len(), cart.len());
    assert!(report.passed(), "{report}");
    assert!(acked.len() >= 10, "most adds succeed");
    assert!(acked.is_subset(&cart), "lost: {:?}", acked.difference(&cart).collect::<Vec<_>>());
}
