//! Directed scenarios (`ringkv_sim::scenario`): the builder runs the real SDK against a
//! simulated cluster, applies its steps at their times, and reports the cluster checks;
//! the shopping-cart example loses no acknowledged add under a partition and a crash.

use std::time::Duration;

use ringkv_client::{Consistency, Context, ReadOptions, WriteOptions};
use ringkv_sim::scenario::{Scenario, ScenarioError, ScenarioReport, Step};
use ringkv_storage::injected_bug::Bug;
use ringkv_storage::Durability;

#[path = "../examples/shopping_cart.rs"]
#[allow(dead_code)]
mod shopping_cart;

fn one() -> Option<Consistency> {
    Some(Consistency::One)
}

#[test]
fn a_write_on_each_side_of_a_partition_ends_as_two_siblings() {
    let report = Scenario::new(11)
        .nodes(3)
        .client_of("left", &[0], |client| async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let options = WriteOptions {
                consistency: one(),
                ..WriteOptions::default()
            };
            client
                .put_with("k", "left", &Context::empty(), options)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .client_of("right", &[2], |client| async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let options = WriteOptions {
                consistency: one(),
                ..WriteOptions::default()
            };
            client
                .put_with("k", "right", &Context::empty(), options)
                .await
                .map_err(|e| e.to_string())?;
            // After the heal, a read through the same node sees both.
            tokio::time::sleep(Duration::from_secs(6)).await;
            let read = client
                .get_with(
                    "k",
                    ReadOptions {
                        consistency: Some(Consistency::All),
                        timeout: None,
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            if read.siblings.len() != 2 {
                return Err(format!(
                    "expected two siblings after the heal, read {:?}",
                    read.siblings
                ));
            }
            Ok(())
        })
        .at(Duration::from_secs(1), Step::Partition(vec![0]))
        .at(Duration::from_secs(4), Step::Heal)
        .run()
        .expect("the scenario runs");
    assert!(report.passed(), "{report}");
    let mut values = report.final_values("k");
    values.sort();
    assert_eq!(values, vec!["left", "right"], "{report}");
    assert!(
        report.log.lines().iter().any(|l| l.contains("step: Partition")),
        "{report}"
    );
}

#[test]
fn a_power_loss_takes_an_unsynced_write_only_under_buffered_durability() {
    // One node, one replica: the write's only copy is on the node that loses power.
    let run = |durability| {
        Scenario::new(5)
            .nodes(1)
            .replicas(1)
            .durability(durability)
            .client("writer", |client| async move {
                let options = WriteOptions {
                    consistency: one(),
                    ..WriteOptions::default()
                };
                client
                    .put_with("k", "v", &Context::empty(), options)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(())
            })
            .at(Duration::from_millis(500), Step::PowerLoss(0))
            .at(Duration::from_secs(1), Step::Restart(0))
            .run()
            .expect("the scenario runs")
    };
    let synced = run(Durability::Sync);
    assert_eq!(synced.final_values("k"), vec!["v"], "{synced}");
    let buffered = run(Durability::Buffered);
    assert!(buffered.final_values("k").is_empty(), "{buffered}");
    assert!(
        buffered.log.lines().iter().any(|l| l.contains("unsynced log records")),
        "{buffered}"
    );
}

#[test]
fn a_malformed_scenario_is_refused() {
    let no_clients = Scenario::new(1).run();
    assert!(matches!(no_clients, Err(ScenarioError::Invalid(_))), "{no_clients:?}");
    let bad_node = Scenario::new(1)
        .nodes(3)
        .client("c", |_client| async move { Ok(()) })
        .at(Duration::from_secs(1), Step::Crash(3))
        .run();
    assert!(matches!(bad_node, Err(ScenarioError::Invalid(_))), "{bad_node:?}");
}

#[test]
fn the_shopping_cart_loses_no_acknowledged_add() {
    let verdict = shopping_cart::run_cart(1).expect("the cart scenario runs");
    println!("{}", verdict.report);
    assert!(verdict.acked.len() >= 12, "most adds succeed: {:?}", verdict.acked);
    assert!(
        verdict.lost().is_empty(),
        "lost adds: {:?}\n{}",
        verdict.lost(),
        verdict.report
    );
    assert!(verdict.passed(), "{}", verdict.report);
}

/// A key written, then deleted while node `away` is down from 1 s to `back_at` (with
/// hints off), then left to GC, with `bug` switched on if given.
fn tombstone_scenario(away: usize, back_at: Duration, bug: Option<Bug>) -> ScenarioReport {
    // Moved here from node/tests/anti_entropy.rs, where it waited on wall-clock sleeps:
    // the node's tombstone grace is 2 s in the simulation.
    let scenario = match bug {
        Some(bug) => Scenario::new(3).bug(bug),
        None => Scenario::new(3),
    };
    scenario
        .nodes(3)
        // n3 misses the delete, and with hints off nothing is queued for it: only
        // anti-entropy can bring it the tombstone, and GC must wait for that.
        .configure(|config| config.hinted_handoff = false)
        .client("app", move |client| async move {
            let all = WriteOptions {
                consistency: Some(Consistency::All),
                ..WriteOptions::default()
            };
            client
                .put_with("doomed", "v", &Context::empty(), all)
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            // `away` is down from 1 s: the delete reaches the other two only.
            let seen = client.get("doomed").await.map_err(|e| e.to_string())?;
            client
                .delete("doomed", &seen.context)
                .await
                .map_err(|e| e.to_string())?;
            // Give `away` time to come back, then hand-off, anti-entropy and GC.
            tokio::time::sleep(back_at + Duration::from_secs(8)).await;
            let everyone = ReadOptions {
                consistency: Some(Consistency::All),
                timeout: None,
            };
            let read = client.get_with("doomed", everyone).await.map_err(|e| e.to_string())?;
            if !read.is_empty() {
                return Err(format!("the deleted value came back: {:?}", read.siblings));
            }
            // Writing the key again with the context of its earlier life works, and that
            // old context hides nothing of the new write.
            client
                .put_with("doomed", "reborn", &seen.context, all)
                .await
                .map_err(|e| e.to_string())?;
            let read = client.get_with("doomed", everyone).await.map_err(|e| e.to_string())?;
            if read.value().map(|v| v.as_ref()) != Some(b"reborn".as_ref()) {
                return Err(format!("after the rewrite, read {:?}", read.siblings));
            }
            Ok(())
        })
        .at(Duration::from_secs(1), Step::Crash(away))
        .at(
            back_at - Duration::from_secs(1),
            Step::Snapshot("n3 down, past the grace".to_owned()),
        )
        .at(back_at, Step::Restart(away))
        .at(back_at + Duration::from_secs(9), Step::Snapshot("after".to_owned()))
        .run()
        .expect("the scenario runs")
}

#[test]
fn a_tombstone_outlives_a_replica_that_is_down_and_is_purged_everywhere_after() {
    let report = tombstone_scenario(2, Duration::from_secs(8), None);
    assert!(report.passed(), "{report}");
    let down = report.snapshot("n3 down, past the grace", "doomed");
    for (node, state) in down.iter().filter(|(node, _)| *node != 2) {
        let state = state
            .as_ref()
            .unwrap_or_else(|| panic!("n{} purged the tombstone while n3 was down", node + 1));
        assert!(
            state.is_dead(u64::MAX / 2),
            "n{} holds a tombstone: {state:?}",
            node + 1
        );
    }
    let after = report.snapshot("after", "doomed");
    assert!(
        after.iter().all(|(_, s)| s.is_none()),
        "purged everywhere: {after:?}\n{report}"
    );
    assert_eq!(report.final_values("doomed"), vec!["reborn"], "{report}");
}

#[test]
fn a_restarted_node_s_clock_continues_from_the_world_s_time() {
    // The harness starts a restarted node's wall clock from the simulation's time: a
    // restart must not step the clock back by the downtime (only a clock-jump fault
    // may), or every crash would be a hidden clock fault.
    let report = Scenario::new(9)
        .nodes(3)
        .client_of("via-n1", &[0], |client| async move {
            let hlc_ms = |read: &ringkv_client::ReadResult| read.siblings.first().map(|s| s.hlc >> 16);
            client
                .put("before", "1", &Context::empty())
                .await
                .map_err(|e| e.to_string())?;
            let before = client.get("before").await.map_err(|e| e.to_string())?;
            // n1 is down from 1 s to 11 s.
            tokio::time::sleep(Duration::from_secs(14)).await;
            client
                .put("after", "2", &Context::empty())
                .await
                .map_err(|e| e.to_string())?;
            let after = client.get("after").await.map_err(|e| e.to_string())?;
            match (hlc_ms(&before), hlc_ms(&after)) {
                (Some(b), Some(a)) if a >= b + 13_000 => Ok(()),
                (b, a) => Err(format!(
                    "write times {b:?} then {a:?} ms: the restarted node's clock went back"
                )),
            }
        })
        .at(Duration::from_secs(1), Step::Crash(0))
        .at(Duration::from_secs(11), Step::Restart(0))
        .run()
        .expect("the scenario runs");
    assert!(report.passed(), "{report}");
}

/// The injected bug "tombstone GC purges without asking the other members" is caught by
/// a directed scenario: a replica that missed a delete is away past the tombstone grace
/// while the key's GC coordinator (the first of its preference list) is up. Random seeds
/// no longer reach it (docs/simulation.md, "Injected bugs").
#[test]
fn tombstone_gc_that_skips_the_replica_check_is_caught_by_a_scenario() {
    use ringkv_ring::{key_position, Member, NodeId, Ring, VNODES_DEFAULT};
    let members = (1..=3).map(|i| Member::new(NodeId::new(&format!("n{i}")).expect("a valid id"), VNODES_DEFAULT));
    let ring = Ring::new(members).expect("a ring");
    let pref = ring.preference_list(key_position(b"doomed"), 3);
    let away: usize = pref.nodes()[2].as_str()[1..].parse::<usize>().expect("nK") - 1;
    let back_at = Duration::from_secs(12);
    let clean = tombstone_scenario(away, back_at, None);
    let buggy = tombstone_scenario(away, back_at, Some(Bug::GcSkipsReplicaCheck));
    // With the bug the two replicas that saw the delete purged it while the third was
    // away; without it they keep the tombstone until the third has it.
    let purged = |report: &ScenarioReport| {
        report
            .snapshot("n3 down, past the grace", "doomed")
            .iter()
            .any(|(node, state)| *node != away && state.is_none())
    };
    assert!(!purged(&clean) && purged(&buggy), "clean: {clean}\nbuggy: {buggy}");
    assert!(matches!(clean.clients.get("app"), Some(Ok(()))), "{clean}");
    assert!(
        matches!(buggy.clients.get("app"), Some(Err(e)) if e.contains("came back")),
        "the bug went unnoticed: {buggy}"
    );
}
