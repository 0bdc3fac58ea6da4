//! Orders for the control thread: installs, rollbacks and disables, sent
//! by the reloader and the operator and applied at a cycle boundary.
//!
//! Owns: the order type. May not touch: how orders are produced (the host's
//! reloader) or applied (the manager).

use std::sync::mpsc::Sender;

use crate::slot::Candidate;
use crate::Role;

/// Where the outcome of an order goes (the operator's request waits on it).
pub type Reply = Sender<Result<String, Refused>>;

/// Why an order was not carried out; the running version stays. The
/// message names the component, the trigger and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Work for the control thread, applied at a cycle boundary.
pub enum Order {
    Install(Box<Candidate>, Option<Reply>),
    Rollback(Role, Option<Reply>),
    Disable(Role, String, Option<Reply>),
}
