//! Regression scenarios for the findings of the issue "Close every hole" that are fixed:
//! each was a test in `known_findings.rs` asserting the violation, and asserts here that
//! the simulation's checks pass and the cluster ends as the fix says it must.

use std::time::Duration;

use ringkv_client::{Consistency, Context, WriteOptions};
use ringkv_sim::scenario::{Scenario, Step};

fn writes(consistency: Consistency) -> WriteOptions {
    WriteOptions {
        consistency: Some(consistency),
        ..WriteOptions::default()
    }
}

/// Finding 3: with buffered durability a replica hands a write to its peers before its
/// own log is synced; after a power loss it restarted under the same actor and issued the
/// same dot to a different value (Riak's "kv679"). A node now takes a new actor on every
/// start that does not follow a clean stop.
#[test]
fn finding_3_a_power_loss_does_not_make_a_node_issue_a_dot_twice() {
    let report = Scenario::new(6)
        .nodes(3)
        .durability(ringkv_storage::Durability::Buffered)
        // Write-backs every 8 s of simulated time: v0 is on disk by the power loss, v1
        // (written just before it) is not.
        .write_back(Duration::from_secs(8))
        .client_of("via-n1", &[0], |client| async move {
            let all = writes(Consistency::All);
            client
                .put_with("k", "v0", &Context::empty(), all)
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_secs(6)).await;
            let old = client.get("k").await.map_err(|e| e.to_string())?;
            client
                .put_with("k", "v1", &old.context, all)
                .await
                .map_err(|e| e.to_string())?;
            // n1 loses power at 6.5 s, before v1 is written back, and comes back cut off
            // from the others; a write with the old context goes through it.
            tokio::time::sleep(Duration::from_secs(3)).await;
            client
                .put_with("k", "v2", &old.context, writes(Consistency::One))
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .at(Duration::from_millis(6_500), Step::PowerLoss(0))
        .at(Duration::from_millis(6_600), Step::Partition(vec![0]))
        .at(Duration::from_secs(7), Step::Restart(0))
        .at(Duration::from_secs(10), Step::Snapshot("before the heal".to_owned()))
        .at(Duration::from_secs(11), Step::Heal)
        .run()
        .expect("the scenario runs");
    println!("{report}");
    // v1 was acknowledged by all three replicas; v2 was written with a context from
    // before v1, so the two are concurrent and both stay (before the fix n1 gave v2 the
    // dot of v1 and the merge kept one of the two). The SDK may have sent v2 twice (its
    // retry after a timeout), each a sibling of its own.
    assert!(report.passed(), "{report}");
    let mut values = report.final_values("k");
    values.dedup();
    assert_eq!(values, vec!["v1", "v2"], "{report}");
}
