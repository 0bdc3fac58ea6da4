//! A reader's copy of a journal, for requests that must not hold a lock
//! the writer takes (the protection tick, the control cycle).
//!
//! Owns: [`Feed`]: the receiving end of the journal's sends and the
//! records received so far. May not touch: the journal or its file.

use std::sync::mpsc::Receiver;

use crate::Record;

/// Records as the journal appended them, oldest first.
pub struct Feed<R> {
    rx: Receiver<R>,
    seen: Vec<R>,
}

impl<R: Record> Feed<R> {
    pub(crate) fn new(rx: Receiver<R>) -> Self {
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// Records with a sequence number above `since_seq`, at most `limit`.
    pub fn since(&mut self, since_seq: u64, limit: usize) -> Vec<R> {
        self.seen.extend(self.rx.try_iter());
        let start = self.seen.partition_point(|r| r.seq() <= since_seq);
        self.seen[start..].iter().take(limit).cloned().collect()
    }
}
