//! [`Gossip`]: a running chitchat instance plus the task that turns its state
//! into a [`MemberView`].
//!
//! chitchat runs its own task: every gossip interval it exchanges digests with
//! a few peers and updates its failure detector. Ours (`Refresher`) reads
//! chitchat's state when the set of live nodes changes and at least once per
//! gossip interval (a death or a garbage collection does not always change
//! what chitchat's own watcher reports), decodes each incarnation's
//! key-values once per version, and publishes the folded view on a `watch`
//! channel only when it changed.
//!
//! Lock order: the refresher's lock, then chitchat's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chitchat::transport::{Transport, UdpTransport};
use chitchat::{spawn_chitchat, Chitchat, ChitchatHandle, ChitchatId};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

use crate::member::{DecodeError, KEY_STATUS};
use crate::view::{self, Incarnation};
use crate::{GossipConfig, GossipError, MemberInfo, MemberStatus, MemberView};

/// A node's membership in a gossip cluster.
///
/// Starting it binds the gossip socket and publishes this node's
/// [`MemberInfo`]; from then on [`members`](Gossip::members) follows who is in
/// the cluster. Dropping it stops gossip too, without waiting;
/// [`shutdown`](Gossip::shutdown) waits.
///
/// ```no_run
/// use ringkv_gossip::{Gossip, GossipConfig, MemberInfo, MemberStatus};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = GossipConfig::new("n1", "prod", 1_700_000_000_000, "10.0.0.5:7946".parse()?);
/// config.seeds = vec!["10.0.0.6:7946".to_string()];
/// let me = MemberInfo {
///     node_id: "n1".to_string(),
///     generation: 1_700_000_000_000,
///     client_addr: "10.0.0.5:7000".parse()?,
///     replica_addr: "10.0.0.5:7001".parse()?,
///     vnodes: 256,
///     zone: None,
///     status: MemberStatus::Joining,
/// };
/// let gossip = Gossip::start(config, me).await?;
/// let mut members = gossip.members();
/// members.wait_for(|view| view.members.len() >= 2).await?;
/// gossip.set_status(MemberStatus::Up).await;
/// gossip.shutdown().await?;
/// # Ok(())
/// # }
/// ```
pub struct Gossip {
    /// `None` only after `shutdown` took it.
    handle: Option<ChitchatHandle>,
    chitchat: Arc<Mutex<Chitchat>>,
    refresher: Arc<Mutex<Refresher>>,
    /// `None` only after `shutdown` took it.
    refresh_task: Option<JoinHandle<()>>,
    members: watch::Receiver<MemberView>,
}

impl Gossip {
    /// Validates `config` and `me`, binds the gossip UDP socket on
    /// `config.gossip_addr`, publishes `me` and starts gossiping with the
    /// seeds. Must be called within a Tokio runtime.
    ///
    /// Unreachable seeds are not an error: the node then sees only itself
    /// until a peer finds it.
    ///
    /// # Errors
    /// [`GossipError::InvalidConfig`], [`GossipError::InvalidSeed`] or
    /// [`GossipError::InvalidMember`] (`me` must be valid and carry the
    /// config's node id and generation) for bad input, and
    /// [`GossipError::Bind`] if the socket cannot be bound.
    pub async fn start(config: GossipConfig, me: MemberInfo) -> Result<Gossip, GossipError> {
        Gossip::start_with_transport(config, me, &UdpTransport).await
    }

    /// [`Gossip::start`] over another chitchat transport instead of UDP, for
    /// fault injection and simulation. This ties the caller to the chitchat
    /// version this crate uses: take `chitchat` from the workspace
    /// dependencies.
    ///
    /// # Errors
    /// As [`Gossip::start`]; [`GossipError::Bind`] if the transport refuses
    /// to open `config.gossip_addr`.
    pub async fn start_with_transport(
        config: GossipConfig,
        me: MemberInfo,
        transport: &dyn Transport,
    ) -> Result<Gossip, GossipError> {
        config.validate()?;
        check_me(&config, &me)?;
        let self_id = config.chitchat_id();
        let interval = config.gossip_interval;
        let handle = spawn_chitchat(config.to_chitchat(), me.to_key_values(), transport)
            .await
            .map_err(|error| GossipError::Bind {
                addr: config.gossip_addr,
                reason: format!("{error:#}"),
            })?;
        let chitchat = handle.chitchat();
        let live_nodes = chitchat.lock().await.live_nodes_watcher();
        let mut refresher = Refresher::new(chitchat.clone(), self_id.clone());
        let (members_tx, members) = watch::channel(refresher.read_view().await);
        refresher.members_tx = Some(members_tx);
        let refresher = Arc::new(Mutex::new(refresher));
        let refresh_task = tokio::spawn(refresh_loop(
            refresher.clone(),
            live_nodes,
            handle.termination_watcher(),
            interval,
        ));
        info!(node = ?self_id, cluster = %config.cluster_name, "gossip started");
        Ok(Gossip {
            handle: Some(handle),
            chitchat,
            refresher,
            refresh_task: Some(refresh_task),
            members,
        })
    }

    /// Publishes a new status for this node. Peers learn it within a few
    /// gossip rounds; this node's own view has it when this returns.
    pub async fn set_status(&self, status: MemberStatus) {
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(KEY_STATUS, status.as_str());
        self.refresher.lock().await.refresh().await;
    }

    /// Follows the members this node knows (see [`MemberView`]). The
    /// receiver starts with the current view, which always contains this
    /// node. After [`shutdown`](Gossip::shutdown) it keeps the last view and
    /// `changed()` returns an error.
    ///
    /// As with any `watch` channel, do not hold `borrow()` across an
    /// `.await`: it blocks the task that publishes views.
    pub fn members(&self) -> watch::Receiver<MemberView> {
        self.members.clone()
    }

    /// Stops gossiping and waits for the gossip task to end, which releases
    /// the socket. Peers are not told: they see this node go silent and
    /// declare it dead. Publish [`MemberStatus::Leaving`] first for a planned
    /// departure.
    ///
    /// # Errors
    /// [`GossipError::ServerFailed`] if the gossip task had already failed.
    pub async fn shutdown(mut self) -> Result<(), GossipError> {
        if let Some(task) = self.refresh_task.take() {
            task.abort();
            // The task holds no resource of its own: being cancelled is its
            // normal end, and it only panics on a bug that already logged.
            let _ = task.await;
        }
        let handle = self.handle.take().expect("shutdown takes the handle once");
        let id = handle.chitchat_id().clone();
        handle.shutdown().await.map_err(|error| GossipError::ServerFailed {
            reason: format!("{error:#}"),
        })?;
        info!(node = ?id, "gossip stopped");
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn chitchat(&self) -> Arc<Mutex<Chitchat>> {
        self.chitchat.clone()
    }
}

impl Drop for Gossip {
    fn drop(&mut self) {
        // Dropping the chitchat handle closes its command channel, which stops
        // its task; ours has to be stopped by hand.
        if let Some(task) = self.refresh_task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.handle.as_ref().map(ChitchatHandle::chitchat_id);
        f.debug_struct("Gossip").field("node", &id).finish_non_exhaustive()
    }
}

fn check_me(config: &GossipConfig, me: &MemberInfo) -> Result<(), GossipError> {
    let invalid = |reason: String| GossipError::InvalidMember {
        node_id: me.node_id.clone(),
        reason,
    };
    if me.node_id != config.node_id {
        return Err(invalid(format!("the config's node id is {:?}", config.node_id)));
    }
    if me.generation != config.generation {
        return Err(invalid(format!(
            "generation is {}, the config's is {}",
            me.generation, config.generation
        )));
    }
    me.validate().map_err(invalid)
}

/// Refreshes the view when chitchat's live set changes, at every gossip
/// interval, and stops when chitchat's task ends.
async fn refresh_loop<T, E: std::fmt::Display>(
    refresher: Arc<Mutex<Refresher>>,
    mut live_nodes: watch::Receiver<T>,
    termination: impl std::future::Future<Output = Result<(), E>>,
    interval: std::time::Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(termination);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = live_nodes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            result = &mut termination => {
                if let Err(reason) = result {
                    error!(%reason, "gossip server failed; peers are no longer tracked");
                }
                refresher.lock().await.mark_peers_unknown();
                return;
            }
        }
        refresher.lock().await.refresh().await;
    }
}

/// A peer's decoded key-values, kept until its state's version changes.
struct Decoded {
    max_version: u64,
    info: Result<MemberInfo, DecodeError>,
    /// The last decode error logged for this incarnation, so a peer that keeps
    /// publishing the same garbage is logged once.
    logged: Option<DecodeError>,
}

struct Refresher {
    chitchat: Arc<Mutex<Chitchat>>,
    self_id: ChitchatId,
    /// One entry per incarnation chitchat holds; pruned on every refresh, so
    /// it is bounded by chitchat's own state.
    decoded: HashMap<ChitchatId, Decoded>,
    /// `None` only while `start` builds the first view.
    members_tx: Option<watch::Sender<MemberView>>,
}

impl Refresher {
    fn new(chitchat: Arc<Mutex<Chitchat>>, self_id: ChitchatId) -> Refresher {
        Refresher {
            chitchat,
            self_id,
            decoded: HashMap::new(),
            members_tx: None,
        }
    }

    /// Rebuilds the view and publishes it if it changed.
    async fn refresh(&mut self) {
        let view = self.read_view().await;
        let members_tx = self.members_tx.as_ref().expect("set by start");
        members_tx.send_if_modified(|current| {
            if *current == view {
                return false;
            }
            *current = view;
            true
        });
    }

    async fn read_view(&mut self) -> MemberView {
        let chitchat = self.chitchat.lock().await;
        let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        let mut previous = std::mem::take(&mut self.decoded);
        let mut incarnations = Vec::with_capacity(chitchat.node_states().len());
        for (id, state) in chitchat.node_states() {
            let max_version = state.max_version();
            let mut decoded = match previous.remove(id) {
                Some(decoded) if decoded.max_version == max_version => decoded,
                stale => Decoded {
                    max_version,
                    info: MemberInfo::decode(&id.node_id, id.generation_id, |key| state.get(key)),
                    logged: stale.and_then(|stale| stale.logged),
                },
            };
            match &decoded.info {
                Ok(info) => {
                    decoded.logged = None;
                    incarnations.push(Incarnation {
                        info: info.clone(),
                        gossip_addr: id.gossip_advertise_addr,
                        alive: live.contains(id),
                        is_self: *id == self.self_id,
                    });
                }
                // A peer known only from a digest has sent no values yet.
                Err(_) if max_version == 0 => {}
                Err(error) if decoded.logged.as_ref() != Some(error) => {
                    warn!(peer = ?id, %error, "skipping a peer whose gossip values are invalid");
                    decoded.logged = Some(error.clone());
                }
                Err(error) => debug!(peer = ?id, %error, "still skipping peer"),
            }
            self.decoded.insert(id.clone(), decoded);
        }
        drop(chitchat);
        let view = view::build(incarnations);
        debug_assert!(view.members.contains_key(&*self.self_id.node_id));
        view
    }

    /// With chitchat's task gone nobody updates liveness: say so rather than
    /// keep reporting peers alive from old news.
    fn mark_peers_unknown(&mut self) {
        let self_id = self.self_id.node_id.clone();
        if let Some(members_tx) = &self.members_tx {
            members_tx.send_modify(|view| {
                for (node_id, entry) in view.members.iter_mut() {
                    if **node_id != *self_id {
                        entry.alive = false;
                    }
                }
            });
        }
    }
}
