//! [`MemberView`]: the members this node knows, one entry per node id, with
//! liveness, built from chitchat's per-incarnation state.
//!
//! chitchat keys its state by incarnation (node id, generation, gossip
//! address), so a restarted node is two entries there until the old one is
//! garbage-collected, and two processes started with the same node id are two
//! entries for good. `build` folds incarnations into one entry per node id and
//! reports two live incarnations that disagree on where clients reach the node
//! as a conflict. It is a pure function so its rules are unit-tested without a
//! network.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::MemberInfo;

/// The members this node knows, by node id.
///
/// Members that the failure detector declared dead stay, with
/// `alive == false`, until the dead-node grace period
/// ([`GossipConfig::dead_node_grace_period`](crate::GossipConfig::dead_node_grace_period))
/// has passed; then they disappear. Liveness is a hint for routing requests,
/// not ring membership: as in Dynamo, a member leaves the ring only on an
/// explicit decision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberView {
    /// One entry per node id. For a restarted node it describes the newest
    /// live incarnation (the highest generation that is alive, or the highest
    /// generation if none is). This node's own entry is always its own info,
    /// alive.
    pub members: BTreeMap<String, MemberEntry>,
    /// Node ids claimed by two or more live incarnations with different client
    /// addresses: two processes configured with the same node id. Sorted.
    ///
    /// A node restarted on a *new* client address also shows up here until
    /// peers declare its previous incarnation dead (a few seconds); a restart
    /// on the same address never does.
    pub conflicts: Vec<String>,
    /// Every member any node's roster holds, with its fate: the merge of the rosters
    /// every incarnation in chitchat's state publishes (see
    /// [`Gossip::set_roster`](crate::Gossip::set_roster)) and of what each member
    /// publishes about itself. Unlike `members`, nothing leaves it when chitchat
    /// forgets a dead node, as long as some node publishes its roster.
    pub roster: crate::Roster,
}

/// One member as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEntry {
    /// What the member published about itself.
    pub info: MemberInfo,
    /// Whether the failure detector currently believes the member is up.
    pub alive: bool,
}

/// One incarnation of a node, decoded from chitchat's state.
#[derive(Clone, Debug)]
pub(crate) struct Incarnation {
    pub info: MemberInfo,
    pub gossip_addr: SocketAddr,
    pub alive: bool,
    /// This is the local node's own, current incarnation.
    pub is_self: bool,
}

/// Folds incarnations into one entry per node id (see [`MemberView`]).
pub(crate) fn build(incarnations: impl IntoIterator<Item = Incarnation>) -> MemberView {
    let mut by_node: BTreeMap<String, Vec<Incarnation>> = BTreeMap::new();
    for incarnation in incarnations {
        by_node
            .entry(incarnation.info.node_id.clone())
            .or_default()
            .push(incarnation);
    }
    let mut view = MemberView::default();
    for (node_id, group) in by_node {
        let live_client_addrs: BTreeSet<SocketAddr> = group
            .iter()
            .filter(|incarnation| incarnation.alive)
            .map(|incarnation| incarnation.info.client_addr)
            .collect();
        if live_client_addrs.len() > 1 {
            view.conflicts.push(node_id.clone());
        }
        // The gossip address breaks ties so that every node picks the same one.
        let chosen = group
            .into_iter()
            .max_by_key(|i| (i.is_self, i.alive, i.info.generation, i.gossip_addr))
            .expect("a group has at least one incarnation");
        let entry = MemberEntry {
            alive: chosen.alive || chosen.is_self,
            info: chosen.info,
        };
        view.members.insert(node_id, entry);
    }
    debug_assert!(view.conflicts.windows(2).all(|pair| pair[0] < pair[1]));
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemberStatus;

    /// `(node id, generation, client port, gossip port, alive, is_self)`.
    type Row = (&'static str, u64, u16, u16, bool, bool);

    fn incarnation(&(node_id, generation, client_port, gossip_port, alive, is_self): &Row) -> Incarnation {
        Incarnation {
            info: MemberInfo {
                node_id: node_id.to_string(),
                generation,
                client_addr: SocketAddr::from(([127, 0, 0, 1], client_port)),
                replica_addr: SocketAddr::from(([127, 0, 0, 1], client_port + 1)),
                vnodes: 8,
                zone: None,
                status: MemberStatus::Up,
            },
            gossip_addr: SocketAddr::from(([127, 0, 0, 1], gossip_port)),
            alive,
            is_self,
        }
    }

    /// Builds a view from `rows` and compares it, as
    /// `(node id, generation, client port, alive)` per member, plus conflicts.
    fn check(rows: &[Row], expected: &[(&str, u64, u16, bool)], conflicts: &[&str]) {
        let view = build(rows.iter().map(incarnation));
        let got: Vec<(&str, u64, u16, bool)> = view
            .members
            .iter()
            .map(|(id, entry)| {
                assert_eq!(id, &entry.info.node_id);
                (
                    id.as_str(),
                    entry.info.generation,
                    entry.info.client_addr.port(),
                    entry.alive,
                )
            })
            .collect();
        assert_eq!(got, expected);
        assert_eq!(view.conflicts, conflicts);
    }

    #[test]
    fn one_entry_per_node() {
        check(&[], &[], &[]);
        check(
            &[("n2", 1, 2000, 20, false, false), ("n1", 1, 1000, 10, true, true)],
            &[("n1", 1, 1000, true), ("n2", 1, 2000, false)],
            &[],
        );
    }

    #[test]
    fn restart_prefers_the_newest_live_incarnation() {
        // The old incarnation is still believed alive: same address, so no conflict.
        check(
            &[("n2", 1, 2000, 20, true, false), ("n2", 2, 2000, 20, true, false)],
            &[("n2", 2, 2000, true)],
            &[],
        );
        // The new one has no heartbeat history yet: the live old one wins for now.
        check(
            &[("n2", 1, 2000, 20, true, false), ("n2", 2, 2000, 20, false, false)],
            &[("n2", 1, 2000, true)],
            &[],
        );
        // Both dead: the newest is reported.
        check(
            &[("n2", 3, 2000, 20, false, false), ("n2", 2, 2000, 20, false, false)],
            &[("n2", 3, 2000, false)],
            &[],
        );
        // Restart on a new client address: a conflict only while both look alive.
        check(
            &[("n2", 1, 2000, 20, true, false), ("n2", 2, 3000, 30, true, false)],
            &[("n2", 2, 3000, true)],
            &["n2"],
        );
        check(
            &[("n2", 1, 2000, 20, false, false), ("n2", 2, 3000, 30, true, false)],
            &[("n2", 2, 3000, true)],
            &[],
        );
    }

    #[test]
    fn duplicate_node_id_is_a_conflict() {
        // Seen from a third node.
        check(
            &[
                ("n1", 5, 1000, 10, true, false),
                ("n1", 5, 1001, 11, true, false),
                ("n3", 1, 3000, 30, true, true),
            ],
            &[("n1", 5, 1001, true), ("n3", 1, 3000, true)],
            &["n1"],
        );
        // Seen from one of the twins: its own info wins, even with a lower generation.
        check(
            &[("n1", 4, 1000, 10, true, true), ("n1", 5, 1001, 11, true, false)],
            &[("n1", 4, 1000, true)],
            &["n1"],
        );
    }
}
