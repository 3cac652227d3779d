//! [`Ring`]: the immutable token table built from a membership.
//!
//! Each member gets `vnodes` tokens at deterministic positions derived from its
//! id, so every node that sees the same membership builds an equal ring, in
//! any insertion order, without coordination. The table is a sorted
//! `Vec<(Position, node index)>`; finding the token that owns a position is a
//! binary search, O(log V).
//!
//! This module builds the table and answers "which token owns this position".
//! Walking it into preference lists lives in `preference.rs`, ownership
//! accounting in `ownership.rs`, ring comparison in `diff.rs`. A ring never
//! changes: a membership change builds a new ring, and `diff` tells what moved.

use std::collections::BTreeMap;

use crate::error::validate_name;
use crate::member::{NODES_MAX, VNODES_PER_NODE_MAX, ZONE_BYTES_MAX};
use crate::position::RING_WIDTH;
use crate::{Member, NodeId, Position, PositionRange, RingError};

/// The index of a member in [`Ring::members`]; fits because of `NODES_MAX`.
pub(crate) type NodeIndex = u16;

/// Consistent-hash ring of virtual nodes over a fixed membership.
///
/// Build it with [`Ring::new`], then ask for a key's
/// [`preference_list`](Ring::preference_list). Cloning copies the token table
/// (16 bytes a token); share a ring behind an `Arc` if it is read from many places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    /// Sorted by id, no duplicates; a token's node index points in here.
    members: Vec<Member>,
    /// Sorted by (position, node index). Node indexes follow id order, so this
    /// is the documented (position, node id) order and ties are deterministic.
    tokens: Vec<(Position, NodeIndex)>,
    /// The zone number of each member, parallel to `members`. A member without
    /// a zone gets a number of its own.
    zone_of: Vec<u16>,
    /// How many distinct zone numbers there are.
    zone_count: usize,
}

impl Ring {
    /// Builds the ring of `members`.
    ///
    /// Insertion order does not matter: members are sorted by id and tokens by
    /// position. An empty membership gives an empty ring, whose preference
    /// lists are empty.
    ///
    /// Token `i` of node `id` sits at `xxh3_64(id bytes ++ [0] ++ (i as u32).to_le_bytes())`.
    ///
    /// # Errors
    /// [`RingError::ZeroVnodes`], [`RingError::TooManyVnodes`] and
    /// [`RingError::InvalidZone`] for a bad member, [`RingError::DuplicateNode`]
    /// when an id repeats, and [`RingError::TooManyNodes`] over [`NODES_MAX`].
    ///
    /// ```
    /// use ringkv_ring::{key_position, Member, NodeId, Ring, VNODES_DEFAULT};
    ///
    /// let members = ["n1", "n2", "n3", "n4"]
    ///     .into_iter()
    ///     .map(|id| Ok(Member::new(id.parse()?, VNODES_DEFAULT)))
    ///     .collect::<Result<Vec<_>, ringkv_ring::RingError>>()?;
    /// let ring = Ring::new(members)?;
    /// assert_eq!(ring.physical_node_count(), 4);
    /// assert_eq!(ring.token_count(), 4 * 256);
    ///
    /// let replicas = ring.preference_list(key_position(b"user:42"), 3);
    /// assert_eq!(replicas.len(), 3);
    /// assert!(replicas.has_distinct_physical_nodes());
    ///
    /// let twin = NodeId::new("n1")?;
    /// assert!(Ring::new([Member::new(twin.clone(), 8), Member::new(twin, 8)]).is_err());
    /// # Ok::<(), ringkv_ring::RingError>(())
    /// ```
    pub fn new(members: impl IntoIterator<Item = Member>) -> Result<Ring, RingError> {
        let mut members: Vec<Member> = members.into_iter().collect();
        if members.len() > NODES_MAX {
            return Err(RingError::TooManyNodes {
                count: members.len(),
                max: NODES_MAX,
            });
        }
        for member in &members {
            validate_member(member)?;
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(pair) = members.windows(2).find(|pair| pair[0].id == pair[1].id) {
            return Err(RingError::DuplicateNode {
                node: pair[0].id.clone(),
            });
        }

        let token_count: usize = members.iter().map(|m| usize::from(m.vnodes)).sum();
        let mut tokens = Vec::with_capacity(token_count);
        for (index, member) in members.iter().enumerate() {
            let index = NodeIndex::try_from(index).expect("NODES_MAX fits a node index");
            for vnode in 0..member.vnodes {
                tokens.push((token_position(&member.id, u32::from(vnode)), index));
            }
        }
        tokens.sort_unstable();

        let (zone_of, zone_count) = number_zones(&members);
        let ring = Ring {
            members,
            tokens,
            zone_of,
            zone_count,
        };
        debug_assert_eq!(ring.tokens.len(), token_count);
        debug_assert!(ring.tokens.windows(2).all(|pair| pair[0] <= pair[1]));
        Ok(ring)
    }

    /// The members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with this id, if it is in the ring.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.node_index(id).map(|index| &self.members[usize::from(index)])
    }

    /// Whether a member has this id.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.node_index(id).is_some()
    }

    /// The number of members (physical nodes).
    pub fn physical_node_count(&self) -> usize {
        self.members.len()
    }

    /// The number of tokens (virtual nodes): the sum of the members' vnodes.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the ring has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The number of distinct zones, counting each member without a zone as its own.
    pub fn zone_count(&self) -> usize {
        self.zone_count
    }

    /// The node that owns `position`: the node of the first token at or after
    /// it, clockwise. `None` on an empty ring.
    pub fn owner(&self, position: Position) -> Option<&NodeId> {
        self.owner_token(position)
            .map(|token_index| self.node_id(self.tokens[token_index].1))
    }

    /// The tokens in ring order, as (position, node).
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = (Position, &NodeId)> + '_ {
        self.tokens
            .iter()
            .map(|&(position, node)| (position, self.node_id(node)))
    }

    // ----- crate-internal accessors for the walking and accounting modules -----

    pub(crate) fn token_table(&self) -> &[(Position, NodeIndex)] {
        &self.tokens
    }

    pub(crate) fn node_id(&self, node: NodeIndex) -> &NodeId {
        &self.members[usize::from(node)].id
    }

    pub(crate) fn node_index(&self, id: &NodeId) -> Option<NodeIndex> {
        let index = self.members.binary_search_by(|m| m.id.cmp(id)).ok()?;
        Some(NodeIndex::try_from(index).expect("NODES_MAX fits a node index"))
    }

    pub(crate) fn zone_of(&self, node: NodeIndex) -> u16 {
        self.zone_of[usize::from(node)]
    }

    /// The index of the token that owns `position`: the first token whose
    /// position is `>= position`, wrapping to token 0 past the last one. Among
    /// tokens at the same position the first in table order owns it; the others
    /// own empty arcs.
    pub(crate) fn owner_token(&self, position: Position) -> Option<usize> {
        if self.tokens.is_empty() {
            return None;
        }
        let index = self.tokens.partition_point(|&(token, _)| token < position);
        Some(if index == self.tokens.len() { 0 } else { index })
    }

    /// The arc token `index` owns, or `None` if it is empty (the token shares
    /// its position with the token before it).
    ///
    /// Token `i` owns `(position of i-1, position of i]`, token 0 the arc from
    /// the last token across the wrap. When every token sits at one position,
    /// token 0 owns the whole ring.
    pub(crate) fn token_segment(&self, index: usize) -> Option<PositionRange> {
        let end = self.tokens[index].0;
        let start = if index == 0 {
            self.tokens[self.tokens.len() - 1].0
        } else {
            self.tokens[index - 1].0
        };
        if index != 0 && start == end {
            return None;
        }
        let segment = PositionRange::new(start, end);
        debug_assert!(index == 0 || !segment.is_full());
        debug_assert!(segment.width() <= RING_WIDTH);
        Some(segment)
    }
}

#[cfg(test)]
impl Ring {
    /// A ring with hand-placed tokens, for testing ties and edges that real
    /// hashes make too unlikely to meet. `tokens` name members by index in
    /// `members`, which must be sorted by id.
    pub(crate) fn with_tokens(members: Vec<Member>, mut tokens: Vec<(Position, NodeIndex)>) -> Ring {
        assert!(members.windows(2).all(|pair| pair[0].id < pair[1].id));
        tokens.sort_unstable();
        let (zone_of, zone_count) = number_zones(&members);
        Ring {
            members,
            tokens,
            zone_of,
            zone_count,
        }
    }
}

/// The position of token `vnode` of node `id`.
fn token_position(id: &NodeId, vnode: u32) -> Position {
    // Id bytes, a 0 separator (ids never contain 0, so no two (id, vnode)
    // pairs share an input), then the vnode index in a fixed width and order.
    let mut input = Vec::with_capacity(id.as_str().len() + 1 + 4);
    input.extend_from_slice(id.as_str().as_bytes());
    input.push(0);
    input.extend_from_slice(&vnode.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&input)
}

fn validate_member(member: &Member) -> Result<(), RingError> {
    if member.vnodes == 0 {
        return Err(RingError::ZeroVnodes {
            node: member.id.clone(),
        });
    }
    if member.vnodes > VNODES_PER_NODE_MAX {
        return Err(RingError::TooManyVnodes {
            node: member.id.clone(),
            vnodes: member.vnodes,
            max: VNODES_PER_NODE_MAX,
        });
    }
    if let Some(zone) = &member.zone {
        validate_name(zone, ZONE_BYTES_MAX).map_err(|reason| RingError::InvalidZone {
            node: member.id.clone(),
            zone: zone.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Numbers the zones of `members` (sorted by id): declared zones in name order
/// first, then one fresh number per member without a zone.
fn number_zones(members: &[Member]) -> (Vec<u16>, usize) {
    let declared: BTreeMap<&str, u16> = members
        .iter()
        .filter_map(|m| m.zone.as_deref())
        .collect::<std::collections::BTreeSet<&str>>()
        .into_iter()
        .zip(0..)
        .collect();
    let mut next = u16::try_from(declared.len()).expect("NODES_MAX fits a zone number");
    let zone_of: Vec<u16> = members
        .iter()
        .map(|member| match member.zone.as_deref() {
            Some(zone) => declared[zone],
            None => {
                let zone = next;
                next += 1;
                zone
            }
        })
        .collect();
    (zone_of, usize::from(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, vnodes: u16, zone: Option<&str>) -> Member {
        Member {
            id: NodeId::new(id).expect("valid id"),
            vnodes,
            zone: zone.map(str::to_owned),
        }
    }

    /// Builds a ring from `(id, vnodes, zone)` and compares the outcome with
    /// `expected`: the member ids in order and the token count, or the error.
    fn check(members: &[(&str, u16, Option<&str>)], expected: Result<(&[&str], usize), RingError>) {
        let ring = Ring::new(members.iter().map(|&(id, v, zone)| member(id, v, zone)));
        match expected {
            Ok((ids, token_count)) => {
                let ring = ring.expect("valid membership");
                let got: Vec<&str> = ring.members().iter().map(|m| m.id.as_str()).collect();
                assert_eq!(got, ids);
                assert_eq!(ring.token_count(), token_count);
                assert_eq!(ring.physical_node_count(), ids.len());
            }
            Err(error) => assert_eq!(ring.expect_err("invalid membership"), error),
        }
    }

    fn id(text: &str) -> NodeId {
        NodeId::new(text).expect("valid id")
    }

    #[test]
    fn builds_sorted() {
        check(&[], Ok((&[], 0)));
        check(&[("b", 3, None), ("a", 2, None)], Ok((&["a", "b"], 5)));
        check(&[("n1", VNODES_PER_NODE_MAX, Some("z"))], Ok((&["n1"], 4096)));
    }

    #[test]
    fn rejects_bad_members() {
        check(
            &[("a", 1, None), ("a", 2, None)],
            Err(RingError::DuplicateNode { node: id("a") }),
        );
        check(&[("a", 0, None)], Err(RingError::ZeroVnodes { node: id("a") }));
        check(
            &[("a", 4097, None)],
            Err(RingError::TooManyVnodes {
                node: id("a"),
                vnodes: 4097,
                max: 4096,
            }),
        );
        check(
            &[("a", 1, Some(""))],
            Err(RingError::InvalidZone {
                node: id("a"),
                zone: String::new(),
                reason: crate::InvalidName::Empty,
            }),
        );
    }

    #[test]
    fn rejects_too_many_nodes() {
        let members = (0..=NODES_MAX).map(|i| member(&format!("n{i}"), 1, None));
        assert_eq!(
            Ring::new(members),
            Err(RingError::TooManyNodes { count: 1025, max: 1024 })
        );
        let members = (0..NODES_MAX).map(|i| member(&format!("n{i}"), 1, None));
        assert_eq!(Ring::new(members).map(|r| r.token_count()), Ok(1024));
    }

    #[test]
    fn token_positions_are_pinned() {
        // Changing the token formula moves every key of every cluster; this
        // test makes such a change deliberate.
        let mut input = b"n1".to_vec();
        input.push(0);
        input.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(token_position(&id("n1"), 7), xxhash_rust::xxh3::xxh3_64(&input));
        let ring = Ring::new([member("n1", 1, None)]).expect("valid");
        assert_eq!(
            ring.tokens().next(),
            Some((xxhash_rust::xxh3::xxh3_64(b"n1\0\0\0\0\0"), &id("n1")))
        );
    }

    #[test]
    fn owner_is_first_token_at_or_after() {
        let ring = Ring::new([member("a", 4, None), member("b", 4, None)]).expect("valid");
        let tokens: Vec<(Position, NodeId)> = ring.tokens().map(|(p, n)| (p, n.clone())).collect();
        for (i, (position, node)) in tokens.iter().enumerate() {
            assert_eq!(ring.owner(*position), Some(node));
            assert_eq!(ring.owner(position.wrapping_sub(1)), Some(node));
            let next = &tokens[(i + 1) % tokens.len()].1;
            if *position != u64::MAX {
                assert_eq!(ring.owner(position + 1), Some(next));
            }
        }
        let last = tokens.last().expect("tokens").0;
        if last != u64::MAX {
            assert_eq!(ring.owner(u64::MAX), Some(&tokens[0].1));
        }
        assert_eq!(Ring::new([]).expect("empty").owner(5), None);
    }

    #[test]
    fn member_lookup_and_zones() {
        let ring = Ring::new([
            member("c", 1, None),
            member("a", 1, Some("z2")),
            member("b", 1, Some("z1")),
            member("d", 1, Some("z1")),
        ])
        .expect("valid");
        assert_eq!(ring.member(&id("b")).map(|m| m.vnodes), Some(1));
        assert!(ring.member(&id("x")).is_none());
        assert!(ring.contains(&id("d")));
        // z1 and z2 plus the zoneless c.
        assert_eq!(ring.zone_count(), 3);
        assert_eq!(ring.zone_of, vec![1, 0, 2, 0]);
    }

    #[test]
    fn segments_tile_the_ring() {
        let ring = Ring::new([member("a", 16, None), member("b", 16, None)]).expect("valid");
        let total: u128 = (0..ring.token_count())
            .filter_map(|i| ring.token_segment(i))
            .map(|segment| segment.width())
            .sum();
        assert_eq!(total, RING_WIDTH);
        let single = Ring::new([member("a", 1, None)]).expect("valid");
        assert!(single.token_segment(0).expect("segment").is_full());
    }

    fn list(ring: &Ring, position: Position, n: u8) -> Vec<&str> {
        ring.preference_list(position, n)
            .iter()
            .map(|node| match node.as_str() {
                "a" => "a",
                "b" => "b",
                _ => "c",
            })
            .collect()
    }

    #[test]
    fn tied_tokens() {
        // a and b both sit at 10: a sorts first and owns (20, 10]; b's arc is empty.
        let ring = Ring::with_tokens(
            vec![member("a", 2, None), member("b", 1, None)],
            vec![(20, 0), (10, 1), (10, 0)],
        );
        assert_eq!(ring.owner(10), Some(&id("a")));
        assert_eq!(ring.owner(5), Some(&id("a")));
        assert_eq!(ring.owner(15), Some(&id("a")));
        assert_eq!(ring.owner(u64::MAX), Some(&id("a")));
        assert_eq!(ring.token_segment(1), None);
        assert_eq!(list(&ring, 10, 2), ["a", "b"]);
        assert_eq!(list(&ring, 15, 2), ["a", "b"]);
        assert_eq!(ring.primary_share().get("b"), Some(&0.0));
        assert_eq!(ring.primary_share().get("a"), Some(&1.0));
        assert!(ring.ranges_of(&id("b"), 1).is_empty());
        assert_eq!(ring.ranges_of(&id("b"), 2), vec![PositionRange::full()]);
        assert_eq!(ring.ranges_of(&id("a"), 1), vec![PositionRange::full()]);
        assert_eq!(ring.replica_share(2).get("b"), Some(&1.0));
    }

    #[test]
    fn all_tokens_at_one_position() {
        let ring = Ring::with_tokens(
            vec![member("a", 1, None), member("b", 1, None), member("c", 1, None)],
            vec![(7, 2), (7, 0), (7, 1)],
        );
        let full = ring.token_segment(0).expect("token 0 owns the ring");
        assert!(full.is_full());
        assert_eq!(ring.token_segment(1), None);
        assert_eq!(ring.token_segment(2), None);
        for position in [0, 7, 8, u64::MAX] {
            assert_eq!(list(&ring, position, 3), ["a", "b", "c"]);
        }
        assert_eq!(ring.primary_share().get("a"), Some(&1.0));
        assert_eq!(ring.ranges_of(&id("c"), 2), Vec::<PositionRange>::new());
        assert!(ring.ranges_of(&id("c"), 3)[0].is_full());

        // Moving c in front of the others changes the whole ring's list.
        let moved = Ring::with_tokens(
            vec![member("a", 1, None), member("b", 1, None), member("c", 1, None)],
            vec![(6, 2), (7, 0), (7, 1)],
        );
        let diff = ring.diff(&moved, 2);
        // (6, 7] still starts at a, then b; the rest of the ring now starts at c.
        assert_eq!(diff.moves.len(), 1);
        assert_eq!(diff.moves[0].range, PositionRange::new(7, 6));
        assert_eq!(diff.moves[0].from, vec![id("a"), id("b")]);
        assert_eq!(diff.moves[0].to, vec![id("c"), id("a")]);
        assert_eq!(diff.moved_fraction(), 1.0 - 1.0 / RING_WIDTH as f64);
    }

    #[test]
    fn token_at_the_top_of_the_ring() {
        let ring = Ring::with_tokens(
            vec![member("a", 1, None), member("b", 1, None)],
            vec![(u64::MAX, 0), (0, 1)],
        );
        assert_eq!(ring.owner(u64::MAX), Some(&id("a")));
        assert_eq!(ring.owner(0), Some(&id("b")));
        assert_eq!(ring.owner(1), Some(&id("a")));
        assert_eq!(ring.ranges_of(&id("b"), 1), vec![PositionRange::new(u64::MAX, 0)]);
        assert_eq!(ring.ranges_of(&id("b"), 1)[0].scan_bounds(), vec![(0, 0)]);
        assert_eq!(ring.primary_share().get("b"), Some(&(1.0 / RING_WIDTH as f64)));
    }
}
