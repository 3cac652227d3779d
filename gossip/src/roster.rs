//! [`Roster`]: every member the cluster ever had, with its fate, as a state-based CRDT
//! that every node publishes, persists and merges.
//!
//! chitchat forgets a dead node after its grace period, and a node's view of who is live
//! lives in memory. Ring membership must not depend on either: a member that has been
//! dead for an hour is still a member (its ranges are served by fallbacks and handed
//! back when it returns), and a node that restarts, or joins later, must build the same
//! ring as everyone else. So membership is a roster that only moves forward:
//!
//! - each entry is a member's id with its last known generation, addresses, weight,
//!   zone and [`Fate`];
//! - two entries for one id merge to the greater under one total order: a removal wins
//!   over everything (a removed id stays out for good); otherwise the higher generation
//!   wins (a member that left may come back under a new generation); at one generation
//!   the later fate wins (joining, then up, then left, then gone);
//! - every node publishes its whole roster under `roster/<id>` keys, merges what every
//!   peer publishes (dead or alive, as long as chitchat holds it) and persists the
//!   result, so forgetting a member is only ever the operator's explicit removal.
//!
//! The merge is a join on a semilattice (commutative, associative, idempotent: the
//! property tests check it), so rosters converge whatever order gossip delivers them in.
//! Decoding is as defensive as [`MemberInfo`]'s: every entry is parsed and checked
//! against the ring's rules, and a peer's roster is bounded by [`ROSTER_ENTRIES_MAX`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use crate::{MemberInfo, MemberStatus};

/// The most entries a roster holds: every member the cluster may have
/// ([`ringkv_ring::NODES_MAX`]) four times over, for members that left or were removed.
pub const ROSTER_ENTRIES_MAX: usize = ringkv_ring::NODES_MAX * 4;

/// The prefix of the gossip keys that publish a roster, one key per member.
pub(crate) const KEY_ROSTER_PREFIX: &str = "roster/";

/// The longest entry value we parse: a generation, a fate, two IPv6 socket addresses, a
/// vnode count and a 64-byte zone fit with room to spare.
const ENTRY_BYTES_MAX: usize = 256;

/// Where a member stands in the cluster's history, as the roster records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fate {
    /// Announced itself, still pulling its ranges: in the ring.
    Joining,
    /// Serving its ranges: in the ring.
    Up,
    /// Announced that it is leaving: out of the ring, but it may still hold data (it
    /// hands it over, or stopped before it was done). It may come back under a newer
    /// generation.
    Left,
    /// Left and handed everything over: holds no data any more.
    Gone,
    /// Removed by an operator: out of the ring for good, whatever its generation.
    Removed,
}

impl Fate {
    /// The name used in the encoding and by `ringkv status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Joining => "joining",
            Fate::Up => "up",
            Fate::Left => "left",
            Fate::Gone => "gone",
            Fate::Removed => "removed",
        }
    }

    fn parse(text: &str) -> Option<Fate> {
        match text {
            "joining" => Some(Fate::Joining),
            "up" => Some(Fate::Up),
            "left" => Some(Fate::Left),
            "gone" => Some(Fate::Gone),
            "removed" => Some(Fate::Removed),
            _ => None,
        }
    }

    /// Whether a member with this fate is in the ring.
    pub fn in_ring(self) -> bool {
        matches!(self, Fate::Joining | Fate::Up)
    }

    /// Whether a member with this fate may hold data: every fate but gone and removed.
    pub fn may_hold_data(self) -> bool {
        matches!(self, Fate::Joining | Fate::Up | Fate::Left)
    }

    fn of(status: MemberStatus) -> Fate {
        match status {
            MemberStatus::Joining => Fate::Joining,
            MemberStatus::Up => Fate::Up,
            MemberStatus::Leaving => Fate::Left,
        }
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member of a [`Roster`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RosterEntry {
    /// The member's last known generation (incarnation).
    pub generation: u64,
    /// Its fate.
    pub fate: Fate,
    /// Where clients reach it.
    pub client_addr: SocketAddr,
    /// Where replica traffic goes.
    pub replica_addr: SocketAddr,
    /// Its weight in the ring.
    pub vnodes: u16,
    /// Its failure domain.
    pub zone: Option<String>,
}

impl RosterEntry {
    /// The total order merges follow (see the module docs).
    fn rank(&self) -> impl Ord + '_ {
        (
            self.fate == Fate::Removed,
            self.generation,
            self.fate,
            self.client_addr,
            self.replica_addr,
            self.vnodes,
            &self.zone,
        )
    }

    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {}",
            self.generation,
            self.fate,
            self.client_addr,
            self.replica_addr,
            self.vnodes,
            self.zone.as_deref().unwrap_or("")
        )
    }

    fn decode(node_id: &str, text: &str) -> Result<RosterEntry, RosterError> {
        let invalid = |reason: String| RosterError::Invalid {
            node_id: node_id.chars().take(64).collect(),
            reason,
        };
        if text.len() > ENTRY_BYTES_MAX {
            return Err(invalid(format!(
                "the entry is {} bytes, over {ENTRY_BYTES_MAX}",
                text.len()
            )));
        }
        let mut fields = text.splitn(6, ' ');
        let mut field = |name: &'static str| fields.next().ok_or_else(|| invalid(format!("{name} is missing")));
        let generation = field("the generation")?
            .parse::<u64>()
            .map_err(|_| invalid("the generation is not a u64".to_owned()))?;
        let fate = Fate::parse(field("the fate")?).ok_or_else(|| invalid("the fate is unknown".to_owned()))?;
        let client_addr = field("the client address")?
            .parse::<SocketAddr>()
            .map_err(|_| invalid("the client address is not a socket address".to_owned()))?;
        let replica_addr = field("the replica address")?
            .parse::<SocketAddr>()
            .map_err(|_| invalid("the replica address is not a socket address".to_owned()))?;
        let vnodes = field("the vnode count")?
            .parse::<u16>()
            .map_err(|_| invalid("the vnode count is not a u16".to_owned()))?;
        let zone = match field("the zone")? {
            "" => None,
            zone => Some(zone.to_owned()),
        };
        let entry = RosterEntry {
            generation,
            fate,
            client_addr,
            replica_addr,
            vnodes,
            zone,
        };
        entry.info(node_id).validate().map_err(invalid)?;
        Ok(entry)
    }

    /// The entry as the [`MemberInfo`] its member would publish (a departed member is
    /// shown as leaving), for validation and for callers that route by it.
    pub fn info(&self, node_id: &str) -> MemberInfo {
        MemberInfo {
            node_id: node_id.to_owned(),
            generation: self.generation,
            client_addr: self.client_addr,
            replica_addr: self.replica_addr,
            vnodes: self.vnodes,
            zone: self.zone.clone(),
            status: match self.fate {
                Fate::Joining => MemberStatus::Joining,
                Fate::Up => MemberStatus::Up,
                Fate::Left | Fate::Gone | Fate::Removed => MemberStatus::Leaving,
            },
        }
    }
}

/// Why a roster, or one entry of it, was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    /// An entry does not parse, or breaks the ring's rules.
    #[error("invalid roster entry for {node_id:?}: {reason}")]
    Invalid {
        /// The entry's node id (at most 64 characters of it).
        node_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The roster would hold more than [`ROSTER_ENTRIES_MAX`] members.
    #[error("a roster holds at most {ROSTER_ENTRIES_MAX} members")]
    Full,
}

/// Every member the cluster had, with its fate (see the module docs).
///
/// ```
/// use ringkv_gossip::{Fate, Roster, RosterEntry};
///
/// let entry = |generation, fate| RosterEntry {
///     generation,
///     fate,
///     client_addr: "10.0.0.5:7000".parse().unwrap(),
///     replica_addr: "10.0.0.5:7000".parse().unwrap(),
///     vnodes: 16,
///     zone: None,
/// };
/// let mut here = Roster::default();
/// here.merge_entry("n1", entry(1, Fate::Up))?;
/// let mut there = Roster::default();
/// there.merge_entry("n1", entry(1, Fate::Left))?;
/// here.merge(&there)?;
/// assert_eq!(here.get("n1").map(|e| e.fate), Some(Fate::Left));
/// // A newer generation comes back; a removal is for good.
/// here.merge_entry("n1", entry(2, Fate::Joining))?;
/// assert_eq!(here.get("n1").map(|e| e.fate), Some(Fate::Joining));
/// here.merge_entry("n1", entry(0, Fate::Removed))?;
/// here.merge_entry("n1", entry(3, Fate::Up))?;
/// assert_eq!(here.get("n1").map(|e| e.fate), Some(Fate::Removed));
/// # Ok::<(), ringkv_gossip::RosterError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roster {
    entries: BTreeMap<String, RosterEntry>,
}

impl Roster {
    /// The entry for `node_id`.
    pub fn get(&self, node_id: &str) -> Option<&RosterEntry> {
        self.entries.get(node_id)
    }

    /// Every entry, in node id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RosterEntry)> {
        self.entries.iter().map(|(id, entry)| (id.as_str(), entry))
    }

    /// How many members the roster holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the roster holds no member.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Merges one entry; returns whether the roster changed.
    ///
    /// # Errors
    /// [`RosterError::Full`] for a new member when the roster is full (nothing changes).
    pub fn merge_entry(&mut self, node_id: &str, entry: RosterEntry) -> Result<bool, RosterError> {
        let full = self.entries.len() >= ROSTER_ENTRIES_MAX;
        match self.entries.get_mut(node_id) {
            Some(current) if entry.rank() > current.rank() => {
                *current = entry;
                Ok(true)
            }
            Some(_) => Ok(false),
            None if full => Err(RosterError::Full),
            None => {
                self.entries.insert(node_id.to_owned(), entry);
                Ok(true)
            }
        }
    }

    /// Merges another roster; returns whether this one changed. On
    /// [`RosterError::Full`] the entries that fit are merged.
    ///
    /// # Errors
    /// [`RosterError::Full`] if some new member did not fit.
    pub fn merge(&mut self, other: &Roster) -> Result<bool, RosterError> {
        let mut changed = false;
        let mut full = false;
        for (id, entry) in &other.entries {
            match self.merge_entry(id, entry.clone()) {
                Ok(c) => changed |= c,
                Err(_) => full = true,
            }
        }
        if full {
            return Err(RosterError::Full);
        }
        Ok(changed)
    }

    /// Merges what a member publishes about itself: joining and up are themselves, a
    /// member that announced it is leaving has left.
    ///
    /// # Errors
    /// As [`Roster::merge_entry`].
    pub fn observe(&mut self, info: &MemberInfo) -> Result<bool, RosterError> {
        self.merge_entry(
            &info.node_id,
            RosterEntry {
                generation: info.generation,
                fate: Fate::of(info.status),
                client_addr: info.client_addr,
                replica_addr: info.replica_addr,
                vnodes: info.vnodes,
                zone: info.zone.clone(),
            },
        )
    }

    /// Records that `node_id` left and holds nothing any more (fate gone, at its current
    /// generation); returns whether the roster changed.
    pub fn gone(&mut self, node_id: &str) -> bool {
        match self.entries.get_mut(node_id) {
            Some(entry) if entry.fate < Fate::Gone => {
                entry.fate = Fate::Gone;
                true
            }
            _ => false,
        }
    }

    /// Records the operator's removal of `node_id`; returns whether the roster changed
    /// (`false` also when the member is unknown).
    pub fn remove(&mut self, node_id: &str) -> bool {
        match self.entries.get_mut(node_id) {
            Some(entry) if entry.fate != Fate::Removed => {
                entry.fate = Fate::Removed;
                true
            }
            _ => false,
        }
    }

    /// The roster as text, one `<id> <entry>` line per member, for a node's data
    /// directory. [`Roster::decode`] reads it back.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        for (id, entry) in &self.entries {
            text.push_str(id);
            text.push(' ');
            text.push_str(&entry.encode());
            text.push('\n');
        }
        text
    }

    /// Reads what [`Roster::encode`] wrote.
    ///
    /// # Errors
    /// [`RosterError`] for a line that does not parse or too many lines.
    pub fn decode(text: &str) -> Result<Roster, RosterError> {
        let mut roster = Roster::default();
        for line in text.lines().filter(|line| !line.is_empty()) {
            let (id, entry) = line.split_once(' ').ok_or_else(|| RosterError::Invalid {
                node_id: line.chars().take(64).collect(),
                reason: "the line has no entry".to_owned(),
            })?;
            roster.merge_entry(id, RosterEntry::decode(id, entry)?)?;
        }
        Ok(roster)
    }

    /// The gossip key-values that publish the roster, one per member.
    pub(crate) fn to_key_values(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.entries
            .iter()
            .map(|(id, entry)| (format!("{KEY_ROSTER_PREFIX}{id}"), entry.encode()))
    }

    /// A peer's published roster, from its key-values. Entries that do not decode are
    /// skipped and counted in the second value; past [`ROSTER_ENTRIES_MAX`] the rest is
    /// skipped too.
    pub(crate) fn from_key_values<'a>(key_values: impl Iterator<Item = (&'a str, &'a str)>) -> (Roster, usize) {
        let mut roster = Roster::default();
        let mut skipped = 0;
        for (key, value) in key_values {
            let Some(id) = key.strip_prefix(KEY_ROSTER_PREFIX) else {
                continue;
            };
            match RosterEntry::decode(id, value).and_then(|entry| roster.merge_entry(id, entry)) {
                Ok(_) => {}
                Err(_) => skipped += 1,
            }
        }
        (roster, skipped)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(generation: u64, fate: Fate, port: u16) -> RosterEntry {
        RosterEntry {
            generation,
            fate,
            client_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            replica_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            vnodes: 8,
            zone: None,
        }
    }

    fn fate() -> impl Strategy<Value = Fate> {
        prop_oneof![
            Just(Fate::Joining),
            Just(Fate::Up),
            Just(Fate::Left),
            Just(Fate::Gone),
            Just(Fate::Removed)
        ]
    }

    fn roster() -> impl Strategy<Value = Roster> {
        proptest::collection::vec(("n[0-3]", 0u64..4, fate(), 7000u16..7003), 0..8).prop_map(|rows| {
            let mut roster = Roster::default();
            for (id, generation, fate, port) in rows {
                roster.merge_entry(&id, entry(generation, fate, port)).expect("small");
            }
            roster
        })
    }

    fn merged(a: &Roster, b: &Roster) -> Roster {
        let mut out = a.clone();
        out.merge(b).expect("small");
        out
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in roster(), b in roster()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in roster(), b in roster(), c in roster()) {
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent_and_reports_change(a in roster(), b in roster()) {
            prop_assert_eq!(merged(&a, &a), a.clone());
            let mut out = a.clone();
            let changed = out.merge(&b).expect("small");
            prop_assert_eq!(changed, out != a);
        }

        #[test]
        fn a_removal_is_never_undone(a in roster(), b in roster()) {
            let ab = merged(&a, &b);
            for (id, e) in a.iter().chain(b.iter()) {
                if e.fate == Fate::Removed {
                    prop_assert_eq!(ab.get(id).map(|e| e.fate), Some(Fate::Removed));
                }
            }
        }

        #[test]
        fn encoding_round_trips(a in roster()) {
            prop_assert_eq!(Roster::decode(&a.encode()).expect("decodes"), a.clone());
            let text: Vec<(String, String)> = a.to_key_values().collect();
            let (back, skipped) = Roster::from_key_values(text.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            prop_assert_eq!(skipped, 0);
            prop_assert_eq!(back, a);
        }

        #[test]
        fn decoding_never_panics(text in "\\PC{0,300}") {
            let _ = Roster::decode(&text);
            let (_, _) = Roster::from_key_values([("roster/n1", text.as_str())].into_iter());
        }
    }

    #[test]
    fn a_left_member_comes_back_only_under_a_newer_generation() {
        let mut roster = Roster::default();
        roster.merge_entry("n1", entry(5, Fate::Left, 7000)).expect("fits");
        assert!(!roster.merge_entry("n1", entry(5, Fate::Up, 7000)).expect("fits"));
        assert!(!roster.merge_entry("n1", entry(4, Fate::Up, 7000)).expect("fits"));
        assert!(roster.merge_entry("n1", entry(6, Fate::Joining, 7000)).expect("fits"));
        assert_eq!(roster.get("n1").map(|e| e.fate), Some(Fate::Joining));
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "",
            "x up 127.0.0.1:1 127.0.0.1:1 8 ",
            "1 vanished 127.0.0.1:1 127.0.0.1:1 8 ",
            "1 up nowhere 127.0.0.1:1 8 ",
            "1 up 127.0.0.1:1 127.0.0.1:1 0 ",
            "1 up 0.0.0.0:1 127.0.0.1:1 8 ",
            "1 up 127.0.0.1:1 127.0.0.1:1 8 bad zone",
        ] {
            assert!(RosterEntry::decode("n1", bad).is_err(), "{bad:?} was accepted");
        }
        assert!(RosterEntry::decode("bad id", "1 up 127.0.0.1:1 127.0.0.1:1 8 ").is_err());
        let (roster, skipped) = Roster::from_key_values(
            [
                ("roster/n1", "1 up 127.0.0.1:1 127.0.0.1:1 8 "),
                ("roster/n2", "garbage"),
                ("status", "up"),
            ]
            .into_iter(),
        );
        assert_eq!((roster.len(), skipped), (1, 1));
    }

    #[test]
    fn a_full_roster_refuses_new_members_and_keeps_merging_known_ones() {
        let mut roster = Roster::default();
        for i in 0..ROSTER_ENTRIES_MAX {
            roster
                .merge_entry(&format!("n{i}"), entry(1, Fate::Up, 7000))
                .expect("fits");
        }
        assert_eq!(
            roster.merge_entry("extra", entry(1, Fate::Up, 7000)),
            Err(RosterError::Full)
        );
        assert_eq!(roster.merge_entry("n0", entry(2, Fate::Up, 7000)), Ok(true));
        assert_eq!(roster.len(), ROSTER_ENTRIES_MAX);
    }
}
