//! Bad input to the public API: every kind gives its typed error with the
//! value and the limit named, and nothing panics, whatever the bytes.
//!
//! The happy paths are tested next to the code and in `properties.rs`; this
//! file is only about what the outside world can get wrong.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use ringkv_ring::{
    InvalidName, Member, NodeId, Ring, RingError, NODES_MAX, NODE_ID_BYTES_MAX, VNODES_PER_NODE_MAX, ZONE_BYTES_MAX,
};

fn id(text: &str) -> NodeId {
    NodeId::new(text).expect("valid id")
}

/// Builds a ring from `members` and checks the error and its message.
fn check(members: Vec<Member>, expected: RingError, message: &str) {
    let error = Ring::new(members).expect_err("membership must be rejected");
    assert_eq!(error, expected);
    assert_eq!(error.to_string(), message);
}

#[test]
fn duplicate_node() {
    check(
        vec![
            Member::new(id("b"), 4),
            Member::new(id("a"), 4),
            Member::new(id("b"), 8),
        ],
        RingError::DuplicateNode { node: id("b") },
        "node b is listed more than once",
    );
}

#[test]
fn zero_vnodes() {
    check(
        vec![Member::new(id("a"), 4), Member::new(id("z"), 0)],
        RingError::ZeroVnodes { node: id("z") },
        "node z has 0 vnodes, the minimum is 1",
    );
}

#[test]
fn too_many_vnodes() {
    check(
        vec![Member::new(id("a"), VNODES_PER_NODE_MAX + 1)],
        RingError::TooManyVnodes {
            node: id("a"),
            vnodes: 4097,
            max: 4096,
        },
        "node a has 4097 vnodes, the limit is 4096",
    );
    check(
        vec![Member::new(id("a"), u16::MAX)],
        RingError::TooManyVnodes {
            node: id("a"),
            vnodes: u16::MAX,
            max: 4096,
        },
        "node a has 65535 vnodes, the limit is 4096",
    );
}

#[test]
fn too_many_nodes() {
    let members = (0..=NODES_MAX).map(|i| Member::new(id(&format!("n{i}")), 1)).collect();
    check(
        members,
        RingError::TooManyNodes { count: 1025, max: 1024 },
        "ring has 1025 nodes, the limit is 1024",
    );
}

#[test]
fn invalid_zone() {
    check(
        vec![Member::new(id("a"), 1).with_zone("eu west")],
        RingError::InvalidZone {
            node: id("a"),
            zone: "eu west".to_owned(),
            reason: InvalidName::ForbiddenByte { byte: b' ', offset: 2 },
        },
        "invalid zone \"eu west\" of node a: has byte 0x20 at offset 2, only A-Z a-z 0-9 . _ - are allowed",
    );
    check(
        vec![Member::new(id("a"), 1).with_zone("z".repeat(ZONE_BYTES_MAX + 1))],
        RingError::InvalidZone {
            node: id("a"),
            zone: "z".repeat(65),
            reason: InvalidName::TooLong { bytes: 65, max: 64 },
        },
        &format!(
            "invalid zone \"{}\" of node a: is 65 bytes, the limit is 64",
            "z".repeat(65)
        ),
    );
}

#[test]
fn invalid_node_ids() {
    let cases: [(&str, InvalidName, &str); 4] = [
        (
            "",
            InvalidName::Empty,
            "invalid node id \"\": is empty, the minimum is 1 byte",
        ),
        (
            "node/1",
            InvalidName::ForbiddenByte { byte: b'/', offset: 4 },
            "invalid node id \"node/1\": has byte 0x2f at offset 4, only A-Z a-z 0-9 . _ - are allowed",
        ),
        (
            "tab\there",
            InvalidName::ForbiddenByte { byte: b'\t', offset: 3 },
            "invalid node id \"tab\\there\": has byte 0x09 at offset 3, only A-Z a-z 0-9 . _ - are allowed",
        ),
        (
            "nœud",
            InvalidName::ForbiddenByte { byte: 0xc5, offset: 1 },
            "invalid node id \"nœud\": has byte 0xc5 at offset 1, only A-Z a-z 0-9 . _ - are allowed",
        ),
    ];
    for (text, reason, message) in cases {
        let error = NodeId::new(text).expect_err("id must be rejected");
        assert_eq!(
            error,
            RingError::InvalidNodeId {
                id: text.to_owned(),
                reason
            }
        );
        assert_eq!(error.to_string(), message);
        assert!(text.parse::<NodeId>().is_err());
        assert!(NodeId::try_from(text).is_err());
        assert!(NodeId::try_from(text.to_owned()).is_err());
    }
    let long = "n".repeat(NODE_ID_BYTES_MAX + 1);
    assert_eq!(
        NodeId::new(&long),
        Err(RingError::InvalidNodeId {
            id: long.clone(),
            reason: InvalidName::TooLong { bytes: 65, max: 64 },
        })
    );
}

/// Whether `text` is a valid id, decided independently of the crate.
fn is_valid_id(text: &str) -> bool {
    (1..=64).contains(&text.len()) && text.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        rng_seed: RngSeed::Fixed(0x6261_6469_6e70),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any string parses or fails cleanly, exactly as the rules say.
    #[test]
    fn any_string_parses_or_fails_cleanly(text in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9._-]{0,70}",
        "[A-Za-z0-9._ /:\\x00-\\x1f-]{1,66}",
    ]) {
        let parsed = text.parse::<NodeId>();
        prop_assert_eq!(parsed.is_ok(), is_valid_id(&text), "{:?}", text);
        if let Ok(id) = parsed {
            prop_assert_eq!(id.as_str(), text.as_str());
        }
    }

    /// Any membership builds or fails with a typed error; never a panic.
    #[test]
    fn any_membership_builds_or_fails_cleanly(
        members in proptest::collection::vec(
            ("[a-d]{1,2}", prop_oneof![0u16..=4, Just(4096u16), Just(4097u16), any::<u16>()],
             proptest::option::of("[a-c ]{0,2}")),
            0..8,
        ),
    ) {
        let members: Vec<Member> = members
            .into_iter()
            .map(|(text, vnodes, zone)| Member { id: id(&text), vnodes, zone })
            .collect();
        match Ring::new(members.clone()) {
            Ok(ring) => {
                prop_assert!(members.iter().all(|m| (1..=4096).contains(&m.vnodes)));
                prop_assert_eq!(ring.physical_node_count(), members.len());
                let list = ring.preference_list(12345, 3);
                prop_assert_eq!(list.len(), members.len().min(3));
            }
            Err(error) => {
                let message = error.to_string();
                prop_assert!(!message.ends_with('.'));
                prop_assert!(message.starts_with(|c: char| c.is_lowercase()), "{}", message);
                let explained = match &error {
                    RingError::ZeroVnodes { node } => members.iter().any(|m| &m.id == node && m.vnodes == 0),
                    RingError::TooManyVnodes { node, vnodes, .. } =>
                        members.iter().any(|m| &m.id == node && m.vnodes == *vnodes && *vnodes > 4096),
                    RingError::DuplicateNode { node } => members.iter().filter(|m| &m.id == node).count() > 1,
                    RingError::InvalidZone { node, zone, .. } =>
                        members.iter().any(|m| &m.id == node && m.zone.as_deref() == Some(zone.as_str())),
                    other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
                };
                prop_assert!(explained, "{:?} does not match {:?}", error, members);
            }
        }
    }
}

#[test]
#[should_panic(expected = "replica count n must be at least 1")]
fn zero_replicas_is_a_caller_bug() {
    let ring = Ring::new([Member::new(id("a"), 1)]).expect("valid membership");
    let _ = ring.ranges_of(&id("a"), 0);
}

#[test]
#[should_panic(expected = "above REPLICAS_MAX")]
fn too_many_replicas_is_a_caller_bug() {
    let ring = Ring::new([Member::new(id("a"), 1)]).expect("valid membership");
    let _ = ring.diff(&ring, 17);
}
