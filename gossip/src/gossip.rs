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
use crate::roster::Roster;
use crate::view::{self, Incarnation};
use crate::{GossipConfig, GossipError, MemberInfo, MemberStatus, MemberView, RosterError};

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
        let (members_tx, members) = watch::channel(MemberView::default());
        let mut refresher = Refresher {
            chitchat: chitchat.clone(),
            self_id: self_id.clone(),
            published: me,
            published_roster: Roster::default(),
            decoded: HashMap::new(),
            members_tx,
        };
        refresher.refresh().await;
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
        let mut refresher = self.refresher.lock().await;
        refresher.published.status = status;
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(KEY_STATUS, status.as_str());
        refresher.refresh().await;
    }

    /// Publishes this node's [`Roster`] (the whole of it, one gossip key per member;
    /// chitchat ships only the entries that changed). Every node merges the rosters it
    /// sees, its own included, into [`MemberView::roster`].
    ///
    /// # Errors
    /// [`RosterError::Full`] if the roster holds more than
    /// [`ROSTER_ENTRIES_MAX`](crate::ROSTER_ENTRIES_MAX) members (nothing is published).
    pub async fn set_roster(&self, roster: &Roster) -> Result<(), RosterError> {
        if roster.len() > crate::ROSTER_ENTRIES_MAX {
            return Err(RosterError::Full);
        }
        let mut refresher = self.refresher.lock().await;
        {
            let mut chitchat = self.chitchat.lock().await;
            let state = chitchat.self_node_state();
            for (key, value) in roster.to_key_values() {
                state.set(key, value);
            }
        }
        refresher.published_roster = roster.clone();
        refresher.refresh().await;
        Ok(())
    }

    /// Stops gossiping through a shared reference: this node stops answering and
    /// sending, so peers soon declare it dead. Idempotent; [`Gossip::shutdown`] is the
    /// owning equivalent.
    pub async fn stop(&self) {
        if let Some(task) = &self.refresh_task {
            task.abort();
        }
        self.refresher.lock().await.mark_peers_unknown();
        if let Some(handle) = &self.handle {
            // An error means the server already stopped: nothing left to do.
            let _ = handle.initiate_shutdown();
        }
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

// The node crate shares one `Gossip` between tasks.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Gossip>();
};

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
    /// The roster it publishes, and how many of its entries did not decode.
    roster: (Roster, usize),
    /// The last decode error logged for this incarnation, so a peer that keeps
    /// publishing the same garbage is logged once.
    logged: Option<DecodeError>,
}

struct Refresher {
    chitchat: Arc<Mutex<Chitchat>>,
    self_id: ChitchatId,
    /// What this node publishes; its own entry in every view.
    published: MemberInfo,
    /// The roster this node publishes (see [`Gossip::set_roster`]).
    published_roster: Roster,
    /// One entry per incarnation chitchat holds; pruned on every refresh, so
    /// it is bounded by chitchat's own state.
    decoded: HashMap<ChitchatId, Decoded>,
    members_tx: watch::Sender<MemberView>,
}

impl Refresher {
    /// Rebuilds the view and publishes it if it changed.
    async fn refresh(&mut self) {
        let view = self.read_view().await;
        self.members_tx.send_if_modified(|current| {
            if *current == view {
                return false;
            }
            *current = view;
            true
        });
    }

    async fn read_view(&mut self) -> MemberView {
        let mut chitchat = self.chitchat.lock().await;
        let mut self_overwritten = false;
        let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        let mut previous = std::mem::take(&mut self.decoded);
        let mut incarnations = Vec::with_capacity(chitchat.node_states().len());
        let mut roster = self.published_roster.clone();
        let mut roster_full = false;
        for (id, state) in chitchat.node_states() {
            let max_version = state.max_version();
            let mut decoded = match previous.remove(id) {
                Some(decoded) if decoded.max_version == max_version => decoded,
                stale => {
                    let roster = Roster::from_key_values(state.key_values());
                    if roster.1 > 0 {
                        warn!(peer = ?id, skipped = roster.1, "skipping roster entries that do not decode");
                    }
                    Decoded {
                        max_version,
                        info: MemberInfo::decode(&id.node_id, id.generation_id, |key| state.get(key)),
                        roster,
                        logged: stale.and_then(|stale| stale.logged),
                    }
                }
            };
            roster_full |= roster.merge(&decoded.roster.0).is_err();
            if let Ok(info) = &decoded.info {
                roster_full |= roster.observe(info).is_err();
            }
            if *id == self.self_id {
                self_overwritten = decoded.info.as_ref() != Ok(&self.published);
                incarnations.push(Incarnation {
                    info: self.published.clone(),
                    gossip_addr: id.gossip_advertise_addr,
                    alive: true,
                    is_self: true,
                });
                self.decoded.insert(id.clone(), decoded);
                continue;
            }
            match &decoded.info {
                Ok(info) => {
                    decoded.logged = None;
                    incarnations.push(Incarnation {
                        info: info.clone(),
                        gossip_addr: id.gossip_advertise_addr,
                        alive: live.contains(id),
                        is_self: false,
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
        if self_overwritten {
            // chitchat merges what peers still hold about our exact id (same
            // node id, generation and address) into our own state, so a restart
            // that reuses a generation gets the previous run's values back.
            // Peers may also hold the previous run's value for a key at the
            // same version as ours: every key needs a newer version, even one
            // whose local value is right, and `set` skips an unchanged value.
            // Deleting first forces the bump; peers never see the tombstone,
            // because a state ships only the latest value of a key and we hold
            // the lock.
            warn!(
                node = ?self.self_id,
                "a previous run with this generation overwrote our gossip values; \
                 republishing them (the generation must be new on every start)"
            );
            let state = chitchat.self_node_state();
            for (key, value) in self
                .published
                .to_key_values()
                .into_iter()
                .chain(self.published_roster.to_key_values())
            {
                state.delete(&key);
                state.set(key, value);
            }
        }
        roster_full |= roster.observe(&self.published).is_err();
        if roster_full {
            error!(
                max = crate::ROSTER_ENTRIES_MAX,
                "the cluster's roster is full: members past the limit are not seen"
            );
        }
        drop(chitchat);
        let mut view = view::build(incarnations);
        view.roster = roster;
        debug_assert!(view.members.contains_key(&*self.self_id.node_id));
        view
    }

    /// With chitchat's task gone nobody updates liveness: say so rather than
    /// keep reporting peers alive from old news.
    fn mark_peers_unknown(&mut self) {
        let self_id = &*self.self_id.node_id;
        self.members_tx.send_modify(|view| {
            for (node_id, entry) in view.members.iter_mut() {
                if node_id != self_id {
                    entry.alive = false;
                }
            }
        });
    }
}

/// Checks chitchat's own state, which the public API hides, for the two
/// chitchat bug reports that concern us: after a restart under a higher
/// generation the old incarnation must be declared dead and garbage-collected
/// (quickwit-oss/chitchat#94), and once collected no peer may gossip it back
/// (quickwit-oss/chitchat#155, #161).
#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;

    const INTERVAL: Duration = Duration::from_millis(200);
    const GRACE: Duration = Duration::from_secs(2);

    fn info(node_id: &str, generation: u64, port: u16) -> MemberInfo {
        MemberInfo {
            node_id: node_id.to_string(),
            generation,
            client_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            replica_addr: SocketAddr::from(([127, 0, 0, 1], port + 1)),
            vnodes: 8,
            zone: None,
            status: MemberStatus::Up,
        }
    }

    async fn start(me: MemberInfo, addr: SocketAddr, seeds: &[SocketAddr]) -> Gossip {
        let mut config = GossipConfig::new(&me.node_id, "incarnations", me.generation, addr);
        config.seeds = seeds.iter().map(SocketAddr::to_string).collect();
        config.gossip_interval = INTERVAL;
        config.dead_node_grace_period = GRACE;
        Gossip::start(config, me).await.expect("start")
    }

    fn free_addr() -> SocketAddr {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.local_addr().expect("local addr")
    }

    /// The generations of `node_id` in `gossip`'s chitchat state, with
    /// whether chitchat believes each is alive.
    async fn incarnations(gossip: &Gossip, node_id: &str) -> Vec<(u64, bool)> {
        let chitchat = gossip.chitchat();
        let chitchat = chitchat.lock().await;
        let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        chitchat
            .node_states()
            .keys()
            .filter(|id| &*id.node_id == node_id)
            .map(|id| (id.generation_id, live.contains(id)))
            .collect()
    }

    /// Waits until `node_id`'s incarnations in `gossip`'s state satisfy
    /// `done`; returns how long that took.
    async fn wait_for_incarnations(
        gossip: &Gossip,
        node_id: &str,
        what: &str,
        done: impl Fn(&[(u64, bool)]) -> bool,
    ) -> Duration {
        let start = tokio::time::Instant::now();
        let deadline = start + GRACE * 5;
        let mut got = incarnations(gossip, node_id).await;
        while !done(&got) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{node_id} incarnations are {got:?}, waiting for {what}"
            );
            tokio::time::sleep(INTERVAL / 4).await;
            got = incarnations(gossip, node_id).await;
        }
        start.elapsed()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn old_incarnation_is_collected_and_never_comes_back() {
        let addrs = [free_addr(), free_addr(), free_addr()];
        let n0 = start(info("n0", 1, 10_000), addrs[0], &[]).await;
        let n1 = start(info("n1", 1, 10_010), addrs[1], &[addrs[0]]).await;
        let n2 = start(info("n2", 1, 10_020), addrs[2], &[addrs[0]]).await;
        for node in [&n0, &n1] {
            wait_for_incarnations(node, "n2", "generation 1 alive", |got| got == [(1, true)]).await;
        }
        n2.shutdown().await.expect("shutdown");
        let n2 = start(info("n2", 2, 10_020), addrs[2], &[addrs[0]]).await;
        // chitchat does not replace an incarnation: both observers hold the
        // old generation next to the live new one for a while...
        for node in [&n0, &n1] {
            wait_for_incarnations(node, "n2", "both generations", |got| {
                got.contains(&(2, true)) && got.iter().any(|&(generation, _)| generation == 1)
            })
            .await;
        }
        // ...then declare it dead and drop it once the grace period is over.
        for node in [&n0, &n1] {
            let took = wait_for_incarnations(node, "n2", "generation 1 collected", |got| got == [(2, true)]).await;
            println!("old incarnation collected {took:?} after the new one was seen");
        }
        // The restarted node itself may learn of its dead predecessor from
        // peers, but must forget it as well.
        wait_for_incarnations(&n2, "n2", "only generation 2", |got| got == [(2, true)]).await;
        // Well past the point where every node has collected generation 1, it
        // must not be gossiped back into anyone's state.
        let end = tokio::time::Instant::now() + INTERVAL * 10;
        while tokio::time::Instant::now() < end {
            for node in [&n0, &n1, &n2] {
                assert_eq!(incarnations(node, "n2").await, [(2, true)]);
            }
            tokio::time::sleep(INTERVAL / 2).await;
        }
        for node in [n0, n1, n2] {
            node.shutdown().await.expect("shutdown");
        }
    }
}
