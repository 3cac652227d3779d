//! Healthy clusters on loopback UDP: convergence (3 and 20 nodes), status
//! changes, cluster-name separation and duplicate node ids.

mod common;

use std::time::{Duration, Instant};

use common::{has_exactly_alive, info, init_tracing, observe_for, start, wait_for, INTERVAL};
use ringkv_gossip::{Fate, Gossip, MemberStatus, Roster, RosterEntry};

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

/// Rosters published by different nodes merge everywhere, and a member stays in the
/// roster after chitchat has forgotten it: its entry lives on in the rosters of the
/// nodes that remember it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rosters_merge_and_outlive_forgotten_members() {
    init_tracing();
    let cluster = "roster";
    let grace = Duration::from_secs(2);
    let short_grace = move |config: &mut ringkv_gossip::GossipConfig| config.dead_node_grace_period = grace;
    let (n0, n0_addr) = start(cluster, info("n0", 1, 0), &[], short_grace).await;
    let (n1, _) = start(cluster, info("n1", 1, 1), &[n0_addr], short_grace).await;
    let (n2, _) = start(cluster, info("n2", 1, 2), &[n0_addr], short_grace).await;
    let entry = |generation, fate| RosterEntry {
        generation,
        fate,
        client_addr: info("old", 1, 9).client_addr,
        replica_addr: info("old", 1, 9).replica_addr,
        vnodes: 8,
        zone: None,
    };
    // n0 learned of a removed member, n1 of one that left; each publishes what it knows.
    wait_for(&mut n0.members(), Duration::from_secs(10), "n2 seen by n0", |view| {
        view.roster.get("n2").is_some()
    })
    .await;
    let mut roster0 = n0.members().borrow().roster.clone();
    roster0.merge_entry("old-a", entry(3, Fate::Removed)).expect("fits");
    n0.set_roster(&roster0).await.expect("fits");
    let mut roster1 = Roster::default();
    roster1.merge_entry("old-b", entry(4, Fate::Left)).expect("fits");
    n1.set_roster(&roster1).await.expect("fits");
    let fates = |view: &ringkv_gossip::MemberView| -> Vec<(String, Fate)> {
        view.roster.iter().map(|(id, e)| (id.to_owned(), e.fate)).collect()
    };
    let expected: Vec<(String, Fate)> = [
        ("n0", Fate::Up),
        ("n1", Fate::Up),
        ("n2", Fate::Up),
        ("old-a", Fate::Removed),
        ("old-b", Fate::Left),
    ]
    .into_iter()
    .map(|(id, fate)| (id.to_owned(), fate))
    .collect();
    for node in [&n0, &n1] {
        wait_for(&mut node.members(), Duration::from_secs(10), "merged rosters", |view| {
            fates(view) == expected
        })
        .await;
    }
    // n2 stops; once chitchat has forgotten it, n1 no longer sees it as a member, but
    // still finds it in the roster n0 publishes.
    tokio::time::timeout(Duration::from_secs(5), n2.shutdown())
        .await
        .expect("shutdown within 5 s")
        .expect("clean shutdown");
    wait_for(&mut n1.members(), grace * 10, "n2 forgotten by chitchat", |view| {
        !view.members.contains_key("n2")
    })
    .await;
    assert_eq!(fates(&n1.members().borrow()), expected);
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
