//! Directed scenarios that reproduce findings of the issue "Close every hole" on today's
//! code. Each asserts that the simulation's checks *report* the violation: they are the
//! known-violation list in scenario form (docs/simulation.md, "Known violations"). When a
//! fix lands, its test here fails; it then moves to `scenario.rs`, asserting the opposite.

use std::time::Duration;

use ringkv_client::{Consistency, Context, WriteOptions};
use ringkv_sim::scenario::{Scenario, Step};

fn writes(consistency: Consistency) -> WriteOptions {
    WriteOptions {
        consistency: Some(consistency),
        ..WriteOptions::default()
    }
}

/// Finding 2: tombstone GC asks only the key's current replicas, so a node removed while
/// it was only cut off keeps the old value and pushes it back after the purge.
#[test]
fn finding_2_a_node_removed_while_cut_off_brings_purged_values_back() {
    let report = Scenario::new(8)
        .nodes(4)
        .client_of("app", &[0, 1, 2], |client| async move {
            let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
            for k in &keys {
                client
                    .put_with(k.clone(), "old", &Context::empty(), writes(Consistency::All))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            // n4 is cut off at 2 s and removed at 3 s; then every key is deleted and, past
            // the grace, purged by the three members.
            tokio::time::sleep(Duration::from_secs(4)).await;
            for k in &keys {
                let seen = client.get(k.clone()).await.map_err(|e| e.to_string())?;
                client
                    .delete_with(k.clone(), &seen.context, writes(Consistency::Count(2)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            // The heal at 15 s lets n4 push what it holds.
            tokio::time::sleep(Duration::from_secs(20)).await;
            Ok(())
        })
        .at(Duration::from_secs(2), Step::Partition(vec![3]))
        .at(Duration::from_secs(3), Step::RemoveAlive(3))
        .at(Duration::from_secs(14), Step::Snapshot("purged".to_owned()))
        .at(Duration::from_secs(15), Step::Heal)
        .run()
        .expect("the scenario runs");
    println!("{report}");
    let purged = (0..12)
        .filter(|i| {
            report
                .snapshot("purged", format!("k{i}"))
                .iter()
                .all(|(n, s)| *n == 3 || s.is_none())
        })
        .count();
    let back: Vec<String> = (0..12)
        .map(|i| format!("k{i}"))
        .filter(|k| !report.final_values(k).is_empty())
        .collect();
    println!("{purged} of 12 keys purged on the members before the heal; back after it: {back:?}");
    assert!(purged > 0, "the members purged the deleted keys: {report}");
    assert!(!back.is_empty(), "a purged value came back: {report}");
}

#[test]
fn every_scenario_of_the_known_list_is_a_test_here() {
    let source = include_str!("known_findings.rs");
    for known in ringkv_sim::seed_lists::known_violations() {
        if let Some(name) = known.scenario {
            assert!(
                source.contains(&format!("fn {name}(")),
                "known-violations.txt names {name}, which is not here"
            );
        }
    }
}
