//! Preference lists: the ordered replicas of a position, and the fallbacks
//! after them.
//!
//! The list for a position is the first `n` distinct physical nodes met
//! walking the tokens clockwise from the position's owner, preferring nodes
//! from zones not yet in the list. Cassandra's `NetworkTopologyStrategy`
//! places replicas across racks the same greedy way, down to appending the
//! skipped nodes once every rack is used. The fallbacks are the nodes the
//! walk meets after the list, which a coordinator writes hinted replicas to
//! when a preferred node is down.
//!
//! This module does not know which nodes are alive; it only says who should
//! hold a position. Every list depends only on the owning token, so the
//! accounting in `ownership.rs` and `diff.rs` computes one walk per token
//! segment instead of sampling.

use std::iter::FusedIterator;

use crate::ring::NodeIndex;
use crate::{NodeId, Position, Ring, REPLICAS_MAX};

const REPLICAS_MAX_USIZE: usize = REPLICAS_MAX as usize;

/// The nodes that should hold a position's replicas, in preference order.
///
/// The first node is the owner of the position's token (the natural
/// coordinator); the nodes are distinct physical nodes. Obtained from
/// [`Ring::preference_list`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PreferenceList {
    nodes: Vec<NodeId>,
}

impl PreferenceList {
    /// The nodes in preference order.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// The number of nodes: `min(n, physical node count)`.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the list is empty, which happens only on an empty ring.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether `node` is one of the replicas.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.nodes.contains(node)
    }

    /// The nodes in preference order.
    pub fn iter(&self) -> std::slice::Iter<'_, NodeId> {
        self.nodes.iter()
    }

    /// The first node, the owner of the position; `None` on an empty ring.
    pub fn first(&self) -> Option<&NodeId> {
        self.nodes.first()
    }

    /// Whether no node appears twice. Always true for lists this crate builds;
    /// it is here so callers and assertions can say so.
    pub fn has_distinct_physical_nodes(&self) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .all(|(i, node)| !self.nodes[..i].contains(node))
    }

    /// The nodes, by value.
    pub fn into_vec(self) -> Vec<NodeId> {
        self.nodes
    }
}

impl<'a> IntoIterator for &'a PreferenceList {
    type Item = &'a NodeId;
    type IntoIter = std::slice::Iter<'a, NodeId>;

    fn into_iter(self) -> Self::IntoIter {
        self.nodes.iter()
    }
}

/// Up to [`REPLICAS_MAX`] node indexes on the stack: the result of a walk,
/// built without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Picks {
    len: usize,
    nodes: [NodeIndex; REPLICAS_MAX_USIZE],
}

impl Picks {
    fn new() -> Picks {
        Picks {
            len: 0,
            nodes: [0; REPLICAS_MAX_USIZE],
        }
    }

    fn push(&mut self, node: NodeIndex) {
        assert!(self.len < REPLICAS_MAX_USIZE);
        self.nodes[self.len] = node;
        self.len += 1;
    }

    pub(crate) fn as_slice(&self) -> &[NodeIndex] {
        &self.nodes[..self.len]
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn contains(&self, node: NodeIndex) -> bool {
        self.as_slice().contains(&node)
    }
}

impl Ring {
    /// The first `min(n, node count)` distinct physical nodes clockwise from
    /// `position`, zone-aware.
    ///
    /// The owner of `position` (the node of the first token at or after it,
    /// wrapping) comes first. When members declare zones, the walk takes a
    /// node only if its zone is not yet in the list; once the zones run out
    /// (or the walk completes), it fills the list with the skipped nodes in walk
    /// order. A member without a zone counts as a zone of its own, so a ring
    /// without zones gives the plain clockwise walk. The walk visits each token
    /// at most once. An empty ring gives an empty list.
    ///
    /// # Panics
    /// If `n` is 0 or above [`REPLICAS_MAX`].
    ///
    /// ```
    /// use ringkv_ring::{key_position, Member, Ring};
    ///
    /// let ring = Ring::new([
    ///     Member::new("a1".parse()?, 64).with_zone("az-a"),
    ///     Member::new("a2".parse()?, 64).with_zone("az-a"),
    ///     Member::new("b1".parse()?, 64).with_zone("az-b"),
    ///     Member::new("c1".parse()?, 64).with_zone("az-c"),
    /// ])?;
    /// let position = key_position(b"user:42");
    /// let list = ring.preference_list(position, 3);
    /// assert_eq!(list.first(), ring.owner(position));
    /// // One replica per zone: b1 and c1 are always in, plus one of a1/a2.
    /// assert!(list.contains(&"b1".parse()?));
    /// assert!(list.contains(&"c1".parse()?));
    ///
    /// // Asking for more replicas than nodes gives every node once.
    /// assert_eq!(ring.preference_list(position, 7).len(), 4);
    /// # Ok::<(), ringkv_ring::RingError>(())
    /// ```
    pub fn preference_list(&self, position: Position, n: u8) -> PreferenceList {
        assert!(n >= 1, "replica count n must be at least 1");
        assert!(n <= REPLICAS_MAX, "replica count n={n} is above REPLICAS_MAX");
        let Some(owner) = self.owner_token(position) else {
            return PreferenceList { nodes: Vec::new() };
        };
        let picks = self.walk(owner, n);
        let list = self.list_of(&picks);
        debug_assert_eq!(list.len(), usize::from(n).min(self.physical_node_count()));
        debug_assert!(list.has_distinct_physical_nodes());
        debug_assert_eq!(list.first(), self.owner(position));
        list
    }

    /// The nodes after `position`'s preference list (size `n`), in clockwise
    /// walk order, each once, never one of the list's members: where a
    /// coordinator sends hinted replicas when a preferred node is unreachable.
    ///
    /// Together with the preference list it names every member exactly once.
    /// The iterator is lazy; it ends after the walk has visited every node (at
    /// most one full turn of the ring).
    ///
    /// # Panics
    /// If `n` is 0 or above [`REPLICAS_MAX`].
    ///
    /// ```
    /// use ringkv_ring::{key_position, Member, Ring};
    ///
    /// let ring = Ring::new(
    ///     ["n1", "n2", "n3", "n4", "n5"].map(|id| Member::new(id.parse().expect("valid id"), 32)),
    /// )?;
    /// let position = key_position(b"k");
    /// let list = ring.preference_list(position, 3);
    /// let fallbacks: Vec<_> = ring.fallbacks(position, 3).collect();
    /// assert_eq!(fallbacks.len(), 2);
    /// assert!(fallbacks.iter().all(|node| !list.contains(node)));
    /// # Ok::<(), ringkv_ring::RingError>(())
    /// ```
    pub fn fallbacks(&self, position: Position, n: u8) -> Fallbacks<'_> {
        assert!(n >= 1, "replica count n must be at least 1");
        assert!(n <= REPLICAS_MAX, "replica count n={n} is above REPLICAS_MAX");
        let (start, picks) = match self.owner_token(position) {
            Some(owner) => (owner, self.walk(owner, n)),
            None => (0, Picks::new()),
        };
        let mut seen = vec![false; self.physical_node_count()];
        for &node in picks.as_slice() {
            seen[usize::from(node)] = true;
        }
        Fallbacks {
            ring: self,
            next_token: start,
            steps_left: self.token_count(),
            seen,
            remaining: self.physical_node_count() - picks.len(),
        }
    }

    /// Turns node indexes into a list of ids.
    pub(crate) fn list_of(&self, picks: &Picks) -> PreferenceList {
        PreferenceList {
            nodes: picks
                .as_slice()
                .iter()
                .map(|&node| self.node_id(node).clone())
                .collect(),
        }
    }

    /// The preference list, as node indexes, of every position owned by token
    /// `owner`. The heart of placement; see [`Ring::preference_list`].
    pub(crate) fn walk(&self, owner: usize, n: u8) -> Picks {
        let tokens = self.token_table();
        let token_count = tokens.len();
        let want = usize::from(n).min(self.physical_node_count());
        debug_assert!(owner < token_count);
        debug_assert!(want <= REPLICAS_MAX_USIZE);

        let mut picks = Picks::new();
        // Nodes passed over because their zone was taken, in walk order. The
        // fill never needs more than `want` of them, so later ones are dropped
        // (they stay skipped: the zones in `picks` only grow).
        let mut skipped = Picks::new();
        let mut step = 0;

        // Phase 1: one node per zone. Every pick brings a new zone, so the list
        // covers all zones exactly when it has `zone_count` nodes.
        while step < token_count && picks.len() < want && picks.len() < self.zone_count() {
            let node = tokens[(owner + step) % token_count].1;
            step += 1;
            if picks.contains(node) || skipped.contains(node) {
                continue;
            }
            let zone = self.zone_of(node);
            if picks.as_slice().iter().any(|&p| self.zone_of(p) == zone) {
                if skipped.len() < want {
                    skipped.push(node);
                }
            } else {
                picks.push(node);
            }
        }

        // Phase 2: zones ran out (or the walk ended); fill in walk order, the
        // skipped nodes first since the walk met them first.
        for &node in skipped.as_slice() {
            if picks.len() == want {
                break;
            }
            picks.push(node);
        }
        while step < token_count && picks.len() < want {
            let node = tokens[(owner + step) % token_count].1;
            step += 1;
            if !picks.contains(node) {
                picks.push(node);
            }
        }
        debug_assert_eq!(picks.len(), want);
        picks
    }
}

/// The fallback nodes of a position, from [`Ring::fallbacks`].
#[derive(Clone, Debug)]
pub struct Fallbacks<'a> {
    ring: &'a Ring,
    next_token: usize,
    steps_left: usize,
    /// Members already yielded or in the preference list, by node index.
    seen: Vec<bool>,
    /// Members not yet seen; the walk stops when it reaches 0.
    remaining: usize,
}

impl<'a> Iterator for Fallbacks<'a> {
    type Item = &'a NodeId;

    fn next(&mut self) -> Option<&'a NodeId> {
        let tokens = self.ring.token_table();
        while self.remaining > 0 && self.steps_left > 0 {
            let node = tokens[self.next_token].1;
            self.next_token = (self.next_token + 1) % tokens.len();
            self.steps_left -= 1;
            let seen = &mut self.seen[usize::from(node)];
            if !*seen {
                *seen = true;
                self.remaining -= 1;
                return Some(self.ring.node_id(node));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // A full turn visits every member, so exactly `remaining` are left.
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Fallbacks<'_> {}

impl FusedIterator for Fallbacks<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Member;

    fn ring(members: &[(&str, u16, Option<&str>)]) -> Ring {
        Ring::new(members.iter().map(|&(id, vnodes, zone)| Member {
            id: NodeId::new(id).expect("valid id"),
            vnodes,
            zone: zone.map(str::to_owned),
        }))
        .expect("valid membership")
    }

    fn ids(nodes: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<String> {
        nodes.into_iter().map(|n| n.as_ref().to_owned()).collect()
    }

    /// The node order met walking clockwise from `position`, each node once.
    fn walk_order(ring: &Ring, position: Position) -> Vec<String> {
        let start = ring.owner_token(position).expect("non-empty");
        let tokens: Vec<_> = ring.tokens().collect();
        let mut order: Vec<String> = Vec::new();
        for step in 0..tokens.len() {
            let node = tokens[(start + step) % tokens.len()].1.as_str();
            if !order.iter().any(|seen| seen == node) {
                order.push(node.to_owned());
            }
        }
        order
    }

    /// Checks the list and the fallbacks of `position` against `expected`, a
    /// function of the plain walk order.
    fn check(ring: &Ring, position: Position, n: u8, expected: &[String]) {
        let list = ring.preference_list(position, n);
        assert_eq!(ids(list.iter()), expected, "list at {position:#x}, n={n}");
        let fallbacks = ids(ring.fallbacks(position, n));
        let order = walk_order(ring, position);
        let expected_fallbacks: Vec<String> = order.iter().filter(|node| !expected.contains(node)).cloned().collect();
        assert_eq!(fallbacks, expected_fallbacks, "fallbacks at {position:#x}");
    }

    #[test]
    fn plain_walk_without_zones() {
        let ring = ring(&[("a", 8, None), ("b", 8, None), ("c", 8, None), ("d", 8, None)]);
        for position in [0, 1 << 62, 1 << 63, u64::MAX] {
            let order = walk_order(&ring, position);
            for n in 1..=4u8 {
                check(&ring, position, n, &order[..usize::from(n)]);
            }
            check(&ring, position, 9, &order);
        }
    }

    #[test]
    fn zones_first_then_skipped_in_walk_order() {
        let ring = ring(&[
            ("a1", 8, Some("a")),
            ("a2", 8, Some("a")),
            ("a3", 8, Some("a")),
            ("b1", 8, Some("b")),
        ]);
        for position in [0, 1 << 62, 1 << 63, u64::MAX] {
            let order = walk_order(&ring, position);
            // Zone-diverse picks: the first node, then the first of the other zone.
            let first = order[0].clone();
            let other = order
                .iter()
                .find(|node| node.as_bytes()[0] != first.as_bytes()[0])
                .expect("two zones")
                .clone();
            let rest: Vec<String> = order
                .iter()
                .filter(|node| **node != first && **node != other)
                .cloned()
                .collect();
            let mut expected = vec![first, other];
            expected.extend(rest);
            check(&ring, position, 1, &expected[..1]);
            check(&ring, position, 2, &expected[..2]);
            check(&ring, position, 3, &expected[..3]);
            check(&ring, position, 16, &expected);
        }
    }

    #[test]
    fn zoneless_member_is_its_own_zone() {
        let ring = ring(&[("a1", 8, Some("a")), ("a2", 8, Some("a")), ("x", 8, None)]);
        for position in [0, 1 << 63] {
            let list = ring.preference_list(position, 2);
            assert!(list.contains(&NodeId::new("x").expect("valid id")));
        }
    }

    #[test]
    fn empty_ring() {
        let ring = ring(&[]);
        assert!(ring.preference_list(42, 3).is_empty());
        assert_eq!(ring.preference_list(42, 3).first(), None);
        assert_eq!(ring.fallbacks(42, 3).count(), 0);
    }

    #[test]
    fn single_node() {
        let ring = ring(&[("solo", 1, None)]);
        check(&ring, 0, 3, &ids(["solo"]));
        check(&ring, u64::MAX, 1, &ids(["solo"]));
    }

    #[test]
    #[should_panic(expected = "at least 1")]
    fn zero_replicas_is_a_bug() {
        let _ = ring(&[("a", 1, None)]).preference_list(0, 0);
    }

    #[test]
    #[should_panic(expected = "above REPLICAS_MAX")]
    fn too_many_replicas_is_a_bug() {
        let _ = ring(&[("a", 1, None)]).fallbacks(0, REPLICAS_MAX + 1);
    }

    #[test]
    fn list_accessors() {
        let ring = ring(&[("a", 4, None), ("b", 4, None)]);
        let list = ring.preference_list(7, 2);
        assert_eq!(list.len(), 2);
        assert!(!list.is_empty());
        assert!(list.has_distinct_physical_nodes());
        assert_eq!(list.first(), list.nodes().first());
        assert_eq!((&list).into_iter().count(), 2);
        assert_eq!(list.clone().into_vec(), list.nodes());
        let repeated = PreferenceList {
            nodes: vec![list.nodes()[0].clone(), list.nodes()[0].clone()],
        };
        assert!(!repeated.has_distinct_physical_nodes());
        assert_eq!(ring.fallbacks(7, 1).len(), 1);
    }
}
