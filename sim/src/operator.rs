//! The operator host: membership changes (leave, remove) carried out with the SDK, as a
//! person with the CLI would, retrying until the cluster accepts them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use crate::harness::{node_name, now_ms, sdk_client};
use crate::history::EventLog;

/// Host name of the operator.
pub const OPERATOR: &str = "operator";
/// Attempts per command before the operator gives up (one a second).
const ATTEMPTS_MAX: u32 = 20;

/// Something the operator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Ask the node to leave.
    Leave(usize),
    /// Ask a member (`through`) to remove the node.
    Remove {
        /// The node removed.
        node: usize,
        /// The member asked.
        through: usize,
    },
}

/// The operator's queue of commands, shared with its host.
#[derive(Default)]
pub(crate) struct Operator {
    commands: Rc<RefCell<VecDeque<Command>>>,
    over: Rc<Cell<bool>>,
}

impl Operator {
    /// Starts the operator host; it logs every attempt into `log`.
    pub(crate) fn start(&self, sim: &mut turmoil::Sim<'_>, seed: u64, log: Rc<RefCell<EventLog>>) {
        let (commands, over) = (Rc::clone(&self.commands), Rc::clone(&self.over));
        sim.client(OPERATOR, async move {
            while !over.get() {
                let command = commands.borrow_mut().pop_front();
                let Some(command) = command else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (target, what) = match command {
                    Command::Leave(node) => (node, format!("n{} leave", node + 1)),
                    Command::Remove { node, through } => (through, format!("remove n{}", node + 1)),
                };
                let client = sdk_client(&[target], seed ^ 0x0be7)?;
                for attempt in 0..ATTEMPTS_MAX {
                    let result = match command {
                        Command::Leave(_) => client.leave().await.map(|_| ()),
                        Command::Remove { node, .. } => client.remove_node(&node_name(node)).await,
                    };
                    let line = match &result {
                        Ok(()) => format!("operator: {what} accepted"),
                        Err(e) => format!("operator: {what} failed (attempt {}): {e}", attempt + 1),
                    };
                    log.borrow_mut().push(now_ms(), line);
                    if result.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1_000)).await;
                }
            }
            Ok(())
        });
    }

    /// Queues a command.
    pub(crate) fn order(&self, command: Command) {
        self.commands.borrow_mut().push_back(command);
    }

    /// Stops the host after its current command.
    pub(crate) fn stop(&self) {
        self.over.set(true);
    }
}
