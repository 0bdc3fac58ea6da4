//! A reader's copy of a journal, for requests that must not hold a lock
//! the writer takes (the protection tick, the control cycle).
//!
//! Owns: [`Feed`]: the receiving end of the journal's sends and a bounded
//! window of the records received; older records are read back from the
//! journal's files. May not touch: the journal or its files (it only
//! reads them).

use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use crate::{segments, JournalError, Record};

/// Records as the journal appended them, oldest first.
pub struct Feed<R> {
    rx: Receiver<R>,
    /// Recent records, from `window_from` on (pinned older ones too).
    seen: Vec<R>,
    window_from: u64,
    keep: usize,
    path: Option<PathBuf>,
}

impl<R: Record> Feed<R> {
    pub(crate) fn new(
        rx: Receiver<R>,
        path: Option<PathBuf>,
        window_from: u64,
        keep: usize,
    ) -> Self {
        Self {
            rx,
            seen: Vec::new(),
            window_from,
            keep: keep.max(1),
            path,
        }
    }

    /// Records with a sequence number above `since_seq`, at most `limit`:
    /// from the window when it holds them, else from disk.
    pub fn since(&mut self, since_seq: u64, limit: usize) -> Result<Vec<R>, JournalError> {
        self.seen.extend(self.rx.try_iter());
        if self.path.is_some() && self.seen.len() > 2 * self.keep {
            let cut = self.seen.len() - self.keep;
            self.window_from = self.seen[cut].seq();
            self.seen.drain(..cut);
        }
        if let Some(p) = self
            .path
            .as_ref()
            .filter(|_| since_seq.saturating_add(1) < self.window_from)
        {
            return segments::read_since(p, since_seq, limit);
        }
        let start = self.seen.partition_point(|r| r.seq() <= since_seq);
        Ok(self.seen[start..].iter().take(limit).cloned().collect())
    }
}
