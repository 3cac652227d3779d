//! Healthy clusters on loopback UDP: convergence (3 and 20 nodes), status
//! changes, cluster-name separation and duplicate node ids.

mod common;

use std::time::{Duration, Instant};

use common::{has_exactly_alive, info, init_tracing, observe_for, start, wait_for, INTERVAL};
use ringkv_gossip::{Gossip, MemberStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge() {
    init_tracing();
    let cluster = "converge-3";
    let infos: Vec<_> = (0..3).map(|i| info(&format!("n{i}"), 1, i)).collect();
    let started = Instant::now();
    let (seed, seed_addr) = start(cluster, infos[0].clone(), &[], |_| {}).await;
    let mut nodes = vec![seed];
    for info in &infos[1..] {
        nodes.push(start(cluster, info.clone(), &[seed_addr], |_| {}).await.0);
    }
    for (node, info) in nodes.iter().zip(&infos) {
        let mut members = node.members();
        wait_for(&mut members, Duration::from_secs(10), "3 live members", |view| {
            has_exactly_alive(view, &infos)
        })
        .await;
        assert!(members.borrow().conflicts.is_empty());
        assert_eq!(members.borrow().members[&info.node_id].info, *info);
    }
    println!("3-node convergence: {:?}", started.elapsed());
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_converge() {
    init_tracing();
    let cluster = "converge-20";
    let node_count = 20;
    let infos: Vec<_> = (0..node_count).map(|i| info(&format!("n{i:02}"), 1, i)).collect();
    let started = Instant::now();
    let (seed, seed_addr) = start(cluster, infos[0].clone(), &[], |_| {}).await;
    let mut nodes = vec![seed];
    for info in &infos[1..] {
        nodes.push(start(cluster, info.clone(), &[seed_addr], |_| {}).await.0);
    }
    let all_started = started.elapsed();
    // Each wait is bounded by what is left of one overall deadline; a view that
    // was complete may regress later, so all are checked again at the end.
    let deadline = Duration::from_secs(20);
    loop {
        for node in &nodes {
            let left = deadline.saturating_sub(started.elapsed());
            wait_for(&mut node.members(), left, "20 live members", |view| {
                has_exactly_alive(view, &infos)
            })
            .await;
        }
        if nodes
            .iter()
            .all(|node| has_exactly_alive(&node.members().borrow(), &infos))
        {
            break;
        }
    }
    println!(
        "20-node convergence: {:?} from the first start ({all_started:?} to start them all)",
        started.elapsed()
    );
    shutdown_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_propagate() {
    init_tracing();
    let cluster = "status";
    let mut joining = info("n1", 1, 1);
    joining.status = MemberStatus::Joining;
    let (observer, observer_addr) = start(cluster, info("n0", 1, 0), &[], |_| {}).await;
    let (node, _) = start(cluster, joining.clone(), &[observer_addr], |_| {}).await;
    let mut seen = observer.members();
    wait_for(&mut seen, Duration::from_secs(10), "n1 joining", |view| {
        view.members.get("n1").is_some_and(|e| e.alive && e.info == joining)
    })
    .await;
    for status in [MemberStatus::Up, MemberStatus::Leaving] {
        node.set_status(status).await;
        // The node's own view has the change as soon as set_status returns.
        assert_eq!(node.members().borrow().members["n1"].info.status, status);
        let took = wait_for(&mut seen, Duration::from_secs(5), status.as_str(), |view| {
            view.members.get("n1").is_some_and(|e| e.info.status == status)
        })
        .await;
        println!("status {status} reached the other node in {took:?}");
    }
    let entry = seen.borrow().members["n1"].clone();
    assert_eq!(entry.info.generation, 1);
    assert_eq!(entry.info.client_addr, joining.client_addr);
    shutdown_all(vec![observer, node]).await;
}

/// Two clusters share the same seed list (one node of each); each must only
/// ever see its own members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_with_different_names_never_merge() {
    init_tracing();
    let (a0, a0_addr) = start("alpha", info("a0", 1, 0), &[], |_| {}).await;
    let (b0, b0_addr) = start("beta", info("b0", 1, 1), &[a0_addr], |_| {}).await;
    let seeds = [a0_addr, b0_addr];
    let (a1, _) = start("alpha", info("a1", 1, 2), &seeds, |_| {}).await;
    let (b1, _) = start("beta", info("b1", 1, 3), &seeds, |_| {}).await;
    let alpha = [info("a0", 1, 0), info("a1", 1, 2)];
    let beta = [info("b0", 1, 1), info("b1", 1, 3)];
    let clusters = [(&a0, &alpha), (&a1, &alpha), (&b0, &beta), (&b1, &beta)];
    for (node, expected) in clusters {
        wait_for(&mut node.members(), Duration::from_secs(10), "own cluster", |view| {
            has_exactly_alive(view, expected)
        })
        .await;
    }
    // Seeds are retried while a node knows fewer live nodes than seeds, so
    // every node keeps knocking on the other cluster's door: watch a while.
    let mut watches: Vec<_> = clusters.iter().map(|(node, _)| node.members()).collect();
    let window = INTERVAL * 10;
    for (members, (_, expected)) in watches.iter_mut().zip(clusters) {
        observe_for(members, window, |view| {
            assert!(has_exactly_alive(view, expected), "foreign member in {view:#?}");
        })
        .await;
    }
    shutdown_all(vec![a0, a1, b0, b1]).await;
}

/// Two live processes with node id `n1` but different client addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_node_id_is_reported() {
    init_tracing();
    let cluster = "duplicate";
    let original = info("n1", 1, 1);
    let mut twin = info("n1", 2, 7);
    twin.vnodes = original.vnodes;
    assert_ne!(original.client_addr, twin.client_addr);
    let (observer, observer_addr) = start(cluster, info("n0", 1, 0), &[], |_| {}).await;
    let (first, _) = start(cluster, original.clone(), &[observer_addr], |_| {}).await;
    let (second, _) = start(cluster, twin.clone(), &[observer_addr], |_| {}).await;
    let twin_started = Instant::now();
    for node in [&observer, &first, &second] {
        wait_for(&mut node.members(), Duration::from_secs(10), "conflict on n1", |view| {
            view.conflicts == ["n1"]
        })
        .await;
    }
    println!(
        "duplicate id reported by all 3 nodes after {:?}",
        twin_started.elapsed()
    );
    // Each twin keeps describing itself; a third node shows one of them.
    assert_eq!(first.members().borrow().members["n1"].info, original);
    assert_eq!(second.members().borrow().members["n1"].info, twin);
    let seen = observer.members().borrow().members["n1"].info.clone();
    assert!(seen == original || seen == twin, "{seen:?}");
    // Once one twin stops, the conflict goes away.
    second.shutdown().await.expect("clean shutdown");
    wait_for(
        &mut observer.members(),
        Duration::from_secs(10),
        "conflict resolved",
        |view| view.conflicts.is_empty() && view.members["n1"].info == original,
    )
    .await;
    shutdown_all(vec![observer, first]).await;
}

/// Removal announcements travel as one value per announcer; every node sees
/// the union.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_announcements_are_unioned() {
    init_tracing();
    let cluster = "removed";
    let (n0, n0_addr) = start(cluster, info("n0", 1, 0), &[], |_| {}).await;
    let (n1, _) = start(cluster, info("n1", 1, 1), &[n0_addr], |_| {}).await;
    n0.set_removed(vec!["old-a".to_string()]).await;
    n1.set_removed(vec!["old-b".to_string(), "old-c".to_string()]).await;
    for node in [&n0, &n1] {
        wait_for(
            &mut node.members(),
            Duration::from_secs(10),
            "union of removals",
            |view| view.removed.iter().map(String::as_str).eq(["old-a", "old-b", "old-c"]),
        )
        .await;
    }
    // Removal is an announcement, not liveness: both members are still there.
    assert_eq!(n0.members().borrow().members.len(), 2);
    shutdown_all(vec![n0, n1]).await;
}

async fn shutdown_all(nodes: Vec<Gossip>) {
    for node in nodes {
        tokio::time::timeout(Duration::from_secs(5), node.shutdown())
            .await
            .expect("shutdown within 5 s")
            .expect("clean shutdown");
    }
}
