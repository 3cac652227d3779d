//! A network partition of the lab: groups of node indexes, written `1,2/3,4,5`.
//!
//! Each listed group goes onto a bridge of its own (`br1`, `br2`, ...); nodes not listed
//! stay together on the main bridge `br0`, so `lab partition 5` isolates node 5 from the
//! rest. Parsing checks everything before the network is touched: indexes in range, no
//! node twice, no empty group, and at least two sides.

use std::fmt;

use crate::lab::layout::NODES_MAX;

/// Groups of node indexes, each on its own side of the cut.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Partition {
    groups: Vec<Vec<u8>>,
}

/// A partition that cannot be applied to the lab.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    /// The text is not `a,b/c,d`.
    #[error("partition {text:?} is not groups of node numbers like 1,2/3,4,5: {reason}")]
    Syntax {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A node index is outside the lab.
    #[error("node {index} in partition {text:?} does not exist: the lab has nodes 1..={nodes}")]
    OutOfRange {
        /// The partition as written.
        text: String,
        /// The bad index.
        index: u8,
        /// How many nodes the lab has.
        nodes: u8,
    },
    /// A node appears in two groups (or twice in one).
    #[error("node {index} appears twice in partition {text:?}")]
    Duplicate {
        /// The partition as written.
        text: String,
        /// The repeated index.
        index: u8,
    },
    /// Everything is on one side.
    #[error("partition {text:?} leaves every node on one side: nothing would be cut")]
    OneSide {
        /// The partition as written.
        text: String,
    },
}

impl Partition {
    /// Parses `1,2/3,4,5` and checks it against a lab of `nodes` nodes.
    pub fn parse(text: &str, nodes: u8) -> Result<Partition, PartitionError> {
        let syntax = |reason: &str| PartitionError::Syntax {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut groups = Vec::new();
        for group_text in text.split(['/', '|']) {
            let mut group = Vec::new();
            for item in group_text.split(',') {
                let item = item.trim();
                if item.is_empty() {
                    return Err(syntax("empty group or trailing comma"));
                }
                let index: u8 = item
                    .parse()
                    .map_err(|_| syntax(&format!("{item:?} is not a node number 1..={NODES_MAX}")))?;
                group.push(index);
            }
            groups.push(group);
        }
        Partition::new(groups, nodes).map_err(|e| match e {
            PartitionError::OutOfRange { index, nodes, .. } => PartitionError::OutOfRange {
                text: text.to_owned(),
                index,
                nodes,
            },
            PartitionError::Duplicate { index, .. } => PartitionError::Duplicate {
                text: text.to_owned(),
                index,
            },
            PartitionError::OneSide { .. } => PartitionError::OneSide { text: text.to_owned() },
            other => other,
        })
    }

    /// Checks `groups` against a lab of `nodes` nodes.
    pub(crate) fn new(groups: Vec<Vec<u8>>, nodes: u8) -> Result<Partition, PartitionError> {
        let text = groups
            .iter()
            .map(|g| g.iter().map(u8::to_string).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
            .join("/");
        let mut seen = vec![false; usize::from(nodes) + 1];
        let mut listed = 0usize;
        for group in &groups {
            if group.is_empty() {
                return Err(PartitionError::Syntax {
                    text,
                    reason: "empty group".to_owned(),
                });
            }
            for &index in group {
                if index == 0 || index > nodes {
                    return Err(PartitionError::OutOfRange { text, index, nodes });
                }
                if seen[usize::from(index)] {
                    return Err(PartitionError::Duplicate { text, index });
                }
                seen[usize::from(index)] = true;
                listed += 1;
            }
        }
        let unlisted = usize::from(nodes) - listed;
        let sides = groups.len() + usize::from(unlisted > 0);
        if sides < 2 {
            return Err(PartitionError::OneSide { text });
        }
        Ok(Partition { groups })
    }

    /// The listed groups.
    pub(crate) fn groups(&self) -> &[Vec<u8>] {
        &self.groups
    }

    /// The side (0 = the main bridge, k = the k-th listed group) node `index` is on.
    pub(crate) fn side_of(&self, index: u8) -> usize {
        self.groups
            .iter()
            .position(|g| g.contains(&index))
            .map_or(0, |position| position + 1)
    }

    /// This partition restricted to nodes `1..=nodes` (etcd runs on fewer nodes than
    /// ringkv); `None` when nothing is cut any more.
    pub(crate) fn restricted(&self, nodes: u8) -> Option<Partition> {
        let groups: Vec<Vec<u8>> = self
            .groups
            .iter()
            .map(|g| g.iter().copied().filter(|&i| i <= nodes).collect::<Vec<u8>>())
            .filter(|g| !g.is_empty())
            .collect();
        Partition::new(groups, nodes).ok()
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Vec<String> = self
            .groups
            .iter()
            .map(|g| g.iter().map(u8::to_string).collect::<Vec<_>>().join(","))
            .collect();
        f.write_str(&text.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, nodes: u8, expected: Result<Vec<Vec<u8>>, &str>) {
        let got = Partition::parse(text, nodes);
        match (got, expected) {
            (Ok(p), Ok(groups)) => assert_eq!(p.groups(), groups.as_slice()),
            (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{text}: {e}"),
            (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parses_and_validates() {
        check("1,2/3,4,5", 5, Ok(vec![vec![1, 2], vec![3, 4, 5]]));
        check("1,2|3", 5, Ok(vec![vec![1, 2], vec![3]]));
        check("5", 5, Ok(vec![vec![5]]));
        check("1,2/3,6", 5, Err("node 6"));
        check("0/1", 5, Err("node 0"));
        check("1,2/2,3", 5, Err("appears twice"));
        check("1,2,3", 3, Err("one side"));
        check("1,/2", 5, Err("trailing comma"));
        check("a/b", 5, Err("not a node number"));
    }

    #[test]
    fn sides_and_restriction() {
        let p = Partition::parse("1,2/3,4,5", 5).expect("valid");
        assert_eq!(p.side_of(1), 1);
        assert_eq!(p.side_of(4), 2);
        let r = p.restricted(3).expect("still cut");
        assert_eq!(r.groups(), &[vec![1, 2], vec![3]]);
        assert!(Partition::parse("4/5", 5).expect("valid").restricted(3).is_none());
        assert_eq!(p.to_string(), "1,2/3,4,5");
    }
}
