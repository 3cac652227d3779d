//! What runs in a lab node: a ringkv node or an etcd member, its command line, and when
//! the cluster counts as ready.
//!
//! ringkv nodes use a static member list (`--seeds n1@10.77.0.1:7100,...`) rather than
//! gossip joins: every node knows the full ring from the start, all of them can start at
//! once, and a killed node restarts with the same command line. The experiments study
//! quorums under partitions, not membership changes. Nodes listen on every address of
//! their namespace (the bridge for peers, the client link for clients) and advertise their
//! bridge address to peers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lab::etcd::EtcdSession;
use crate::lab::layout::{
    bridge_ip, node_client_address, ETCD_CLIENT_PORT, ETCD_PEER_PORT, RINGKV_ADMIN_PORT, RINGKV_CLIENT_PORT,
};

/// The program every node of a lab runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum NodeProgram {
    /// `ringkv node`, with N replicas per key.
    Ringkv {
        /// The `ringkv` binary.
        binary: PathBuf,
        /// N.
        replicas: u8,
    },
    /// An etcd member.
    Etcd {
        /// The `etcd` binary.
        binary: PathBuf,
    },
}

/// The cluster did not become ready.
#[derive(Debug, thiserror::Error)]
#[error("the {program} cluster was not ready after {waited:?}: node {node}: {last}")]
pub struct NotReady {
    /// `ringkv` or `etcd`.
    pub(crate) program: &'static str,
    /// How long readiness was awaited.
    pub(crate) waited: Duration,
    /// The node that was not ready.
    pub(crate) node: u8,
    /// Why it was not, at the last probe (boxed: errors travel by value up the lab).
    pub(crate) last: Box<NotReadyYet>,
}

/// Why one node was not ready at a probe.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotReadyYet {
    /// The SDK could not ask it (not listening yet, say).
    #[error(transparent)]
    Client(#[from] ringkv_client::ClientError),
    /// It knows fewer members than the cluster has.
    #[error("{known} of {nodes} members known")]
    Members {
        /// Members it lists.
        known: usize,
        /// Members the cluster has.
        nodes: u8,
    },
    /// It still believes a running member down.
    #[error("sees {0} as not alive yet")]
    NotAlive(String),
    /// An etcd member did not commit the probe write.
    #[error(transparent)]
    Etcd(#[from] super::etcd::EtcdError),
}

impl NodeProgram {
    /// `ringkv` or `etcd`.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeProgram::Ringkv { .. } => "ringkv",
            NodeProgram::Etcd { .. } => "etcd",
        }
    }

    /// The binary this program needs.
    pub(crate) fn binary(&self) -> &Path {
        match self {
            NodeProgram::Ringkv { binary, .. } | NodeProgram::Etcd { binary } => binary,
        }
    }

    /// The port clients connect to on each node's client link.
    pub(crate) fn client_port(&self) -> u16 {
        match self {
            NodeProgram::Ringkv { .. } => RINGKV_CLIENT_PORT,
            NodeProgram::Etcd { .. } => ETCD_CLIENT_PORT,
        }
    }

    /// The command line of node `index` of `nodes`, with its data under `data_dir`.
    pub(crate) fn argv(&self, index: u8, nodes: u8, data_dir: &Path) -> Vec<String> {
        let data = data_dir.display().to_string();
        match self {
            NodeProgram::Ringkv { binary, replicas } => {
                let seeds: Vec<String> = (1..=nodes)
                    .map(|i| format!("n{i}@{}:{RINGKV_CLIENT_PORT}", bridge_ip(i)))
                    .collect();
                vec![
                    binary.display().to_string(),
                    "node".into(),
                    "--id".into(),
                    format!("n{index}"),
                    "--listen".into(),
                    format!("0.0.0.0:{RINGKV_CLIENT_PORT}"),
                    "--advertise".into(),
                    format!("{}:{RINGKV_CLIENT_PORT}", bridge_ip(index)),
                    "--admin".into(),
                    format!("0.0.0.0:{RINGKV_ADMIN_PORT}"),
                    "--data-dir".into(),
                    data,
                    "--cluster-name".into(),
                    "ringkv-lab".into(),
                    "--replicas".into(),
                    replicas.to_string(),
                    "--seeds".into(),
                    seeds.join(","),
                ]
            }
            NodeProgram::Etcd { binary } => {
                let cluster: Vec<String> = (1..=nodes)
                    .map(|i| format!("m{i}=http://{}:{ETCD_PEER_PORT}", bridge_ip(i)))
                    .collect();
                let peer = format!("http://{}:{ETCD_PEER_PORT}", bridge_ip(index));
                let client = format!("http://{}", node_client_address(index, ETCD_CLIENT_PORT));
                vec![
                    binary.display().to_string(),
                    "--name".into(),
                    format!("m{index}"),
                    "--data-dir".into(),
                    data,
                    "--listen-client-urls".into(),
                    format!("http://0.0.0.0:{ETCD_CLIENT_PORT}"),
                    "--advertise-client-urls".into(),
                    client,
                    "--listen-peer-urls".into(),
                    peer.clone(),
                    "--initial-advertise-peer-urls".into(),
                    peer,
                    "--initial-cluster".into(),
                    cluster.join(","),
                    "--initial-cluster-state".into(),
                    "new".into(),
                    "--initial-cluster-token".into(),
                    "ringkv-lab".into(),
                    // Like ringkv's default (fsync off): compare replication, not disks.
                    "--unsafe-no-fsync".into(),
                ]
            }
        }
    }

    /// Waits until every node in `up` serves requests: for ringkv, each node's status
    /// lists all `nodes` members alive; for etcd, a write through each member commits.
    /// Must run where the client links are (the client namespace).
    pub(crate) async fn wait_ready(&self, up: &[u8], nodes: u8, timeout: Duration) -> Result<(), NotReady> {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        for &index in up {
            loop {
                let last = match self.probe(index, up, nodes).await {
                    Ok(()) => break,
                    Err(error) => Box::new(error),
                };
                if tokio::time::Instant::now() >= deadline {
                    return Err(NotReady {
                        program: self.kind(),
                        waited: started.elapsed(),
                        node: index,
                        last,
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    async fn probe(&self, index: u8, up: &[u8], nodes: u8) -> Result<(), NotReadyYet> {
        let address = node_client_address(index, self.client_port());
        match self {
            NodeProgram::Ringkv { .. } => {
                let client = ringkv_client::Client::builder()
                    .endpoints([address.to_string()])
                    .request_timeout(Duration::from_secs(1))
                    .retries(0)
                    .build()?;
                let status = client.status().await?;
                if status.members.len() != usize::from(nodes) {
                    return Err(NotReadyYet::Members {
                        known: status.members.len(),
                        nodes,
                    });
                }
                for member in &status.members {
                    let member_index: Option<u8> = member.id.strip_prefix('n').and_then(|i| i.parse().ok());
                    let expected_alive = member_index.is_some_and(|i| up.contains(&i));
                    if expected_alive && !member.alive {
                        return Err(NotReadyYet::NotAlive(member.id.clone()));
                    }
                }
                Ok(())
            }
            NodeProgram::Etcd { .. } => {
                let mut session = EtcdSession::new(address, Duration::from_secs(2));
                Ok(session.put(b"ringkv-lab-ready", b"1").await?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringkv_command_line() {
        let program = NodeProgram::Ringkv {
            binary: "/bin/ringkv".into(),
            replicas: 3,
        };
        let argv = program.argv(2, 3, Path::new("/d"));
        let text = argv.join(" ");
        assert!(text.starts_with("/bin/ringkv node --id n2 "), "{text}");
        assert!(text.contains("--advertise 10.77.0.2:7100"), "{text}");
        assert!(
            text.contains("--seeds n1@10.77.0.1:7100,n2@10.77.0.2:7100,n3@10.77.0.3:7100"),
            "{text}"
        );
    }

    #[test]
    fn etcd_command_line() {
        let program = NodeProgram::Etcd {
            binary: "/usr/bin/etcd".into(),
        };
        let text = program.argv(1, 3, Path::new("/d")).join(" ");
        assert!(
            text.contains(
                "--initial-cluster m1=http://10.77.0.1:2380,m2=http://10.77.0.2:2380,m3=http://10.77.0.3:2380"
            ),
            "{text}"
        );
        assert!(text.contains("--advertise-client-urls http://10.78.1.2:2379"), "{text}");
    }
}
