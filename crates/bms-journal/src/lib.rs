//! bms-journal: durable JSON-lines journals: the protection event record and
//! the plugin runtime's record.
//!
//! Owns: the file discipline. Each record is one line, written and
//! `fsync`ed before `append` returns (the protection record), or shortly
//! after by a writer thread ([`Journal::write_in_background`], the plugin
//! record, journaled from the control thread). The disk side ([`file`])
//! never glues a record to a fragment: after a failed write it cuts the
//! file back to its last whole record and writes the queued records again.
//! On open, a torn tail (a crash mid-write) is truncated and reported, and
//! every unparsable line inside the file is reported by number ([`read`]).
//! Memory and disk are bounded ([`Retention`]): the file is sealed into
//! segments, old segments are deleted (never one holding a pinned record,
//! such as a latch that must survive restarts), and only recent records
//! stay in memory; older ones are read back from disk
//! ([`Journal::since`], [`Feed::since`]).
//!
//! May not touch: what the records mean.

pub mod feed;
pub mod file;
pub mod read;
pub mod segments;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bms_protection::events::{EventRecord, EventSink};
use serde::{de::DeserializeOwned, Serialize};

pub use feed::Feed;
pub use file::{Health, HealthSnapshot, MAX_QUEUED_BYTES};
pub use read::ReadJournal;
pub use segments::Retention;

use file::{DurableFile, Held};

/// A journal line: the journal assigns its sequence number and wall time.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + 'static {
    fn seq(&self) -> u64;
    fn stamp(&mut self, seq: u64, unix_ms: u64);
    /// Kept in memory and on disk whatever the retention: a record the
    /// owner needs at every start (a persistent latch and its reset).
    fn pinned(&self) -> bool {
        false
    }
}

/// Why a journal file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What opening a journal found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a torn final record cut from the end of the file.
    pub torn_tail_bytes: u64,
    /// 1-based numbers of lines inside the active file that do not parse.
    pub corrupt_lines: Vec<usize>,
    /// Sealed segments with lines that do not parse (kept, reported).
    pub corrupt_sealed_segments: usize,
}

/// Records as opening reads them, oldest first: pinned ones always, the
/// rest only the last `window` of them.
struct Loaded<R> {
    window: usize,
    pinned_before: Vec<R>,
    recent: std::collections::VecDeque<R>,
    last_seq: u64,
}

impl<R: Record> Loaded<R> {
    fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            pinned_before: Vec::new(),
            recent: std::collections::VecDeque::new(),
            last_seq: 0,
        }
    }

    fn extend(&mut self, records: Vec<R>) {
        for r in records {
            self.last_seq = self.last_seq.max(r.seq());
            self.recent.push_back(r);
            if self.recent.len() > self.window {
                if let Some(old) = self.recent.pop_front().filter(Record::pinned) {
                    self.pinned_before.push(old);
                }
            }
        }
    }

    /// (records, first seq of the window, last seq seen).
    fn finish(self) -> (Vec<R>, u64, u64) {
        let window_from = self
            .recent
            .front()
            .map_or(self.last_seq.saturating_add(1), Record::seq);
        let mut records = self.pinned_before;
        records.extend(self.recent);
        (records, window_from, self.last_seq)
    }
}

enum Disk {
    Memory,
    Inline(DurableFile),
    Background(Background),
}

/// A journal: in memory always, on disk when opened with a path.
pub struct Journal<R> {
    disk: Disk,
    /// Readers' copies: every record is sent on, never waited for.
    feeds: Vec<std::sync::mpsc::Sender<R>>,
    health: Arc<Health>,
    /// Pinned records older than the window, then the window of recent
    /// records (from `window_from` on), in sequence order.
    records: Vec<R>,
    window_from: u64,
    next_seq: u64,
    recovery: Recovery,
    retention: Retention,
    path: Option<PathBuf>,
    /// Caller's clock at the last [`Journal::retry`] attempt, ms.
    last_retry_ms: Option<u64>,
}

/// A line for the disk: bytes, sequence number, pinned.
type Line = (Vec<u8>, u64, bool);

struct Background {
    tx: Option<std::sync::mpsc::Sender<Line>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        // Close the channel, then wait for the queued lines to be written.
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl<R: Record> Journal<R> {
    /// A log kept only in memory (tests, dry runs), bounded like the
    /// window of a journal on disk.
    pub fn memory() -> Self {
        Self {
            disk: Disk::Memory,
            feeds: Vec::new(),
            health: Arc::default(),
            records: Vec::new(),
            window_from: 1,
            next_seq: 1,
            recovery: Recovery::default(),
            retention: Retention::default(),
            path: None,
            last_retry_ms: None,
        }
    }

    /// [`Journal::open_with`] the default [`Retention`].
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        Self::open_with(path, Retention::default())
    }

    /// Open (or create) `path` for appending; recent and pinned records
    /// of every segment are loaded so sequence numbers continue and
    /// persistent latches can be restored. A torn tail is cut off (see
    /// [`Journal::recovery`]).
    pub fn open_with(path: &Path, retention: Retention) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut loaded = Loaded::new(retention.memory_records);
        let mut corrupt_sealed = 0;
        for s in segments::sealed(path).map_err(io)? {
            let seg = read::scan::<R>(&s.path)?;
            if !seg.corrupt_lines.is_empty() || seg.torn_tail_bytes > 0 {
                corrupt_sealed += 1;
                tracing::error!(segment = %s.path.display(), lines = ?seg.corrupt_lines, torn_tail_bytes = seg.torn_tail_bytes, "sealed journal segment has lines that do not parse; kept as evidence, not read");
            }
            loaded.extend(seg.records);
        }
        let active = if path.exists() {
            read::scan::<R>(path)?
        } else {
            read::ReadJournal::empty()
        };
        let mut recovery = repair(path, &active).map_err(io)?;
        recovery.corrupt_sealed_segments = corrupt_sealed;
        let held = Held {
            good_len: active.good_len,
            first_seq: active.records.first().map(Record::seq),
            pinned: active.records.iter().any(Record::pinned),
        };
        let health = Arc::new(Health::default());
        let mut disk = DurableFile::open(path, held, health.clone(), retention).map_err(io)?;
        if active.unterminated {
            disk.terminate();
        }
        loaded.extend(active.records);
        let (records, window_from, last_seq) = loaded.finish();
        Ok(Self {
            disk: Disk::Inline(disk),
            feeds: Vec::new(),
            health,
            records,
            window_from,
            next_seq: last_seq.saturating_add(1),
            recovery,
            retention,
            path: Some(path.to_owned()),
            last_retry_ms: None,
        })
    }

    /// Records with a sequence number above `since_seq`, at most `limit`:
    /// from memory when it still holds them, else read back from disk.
    pub fn since(&self, since_seq: u64, limit: usize) -> Result<Vec<R>, JournalError> {
        match &self.path {
            Some(p) if since_seq.saturating_add(1) < self.window_from => {
                segments::read_since(p, since_seq, limit)
            }
            _ => Ok(self
                .records
                .iter()
                .filter(|r| r.seq() > since_seq)
                .take(limit)
                .cloned()
                .collect()),
        }
    }

    /// Read every record of a journal file (without repairing it).
    pub fn read(path: &Path) -> Result<ReadJournal<R>, JournalError> {
        read::scan(path)
    }

    /// Append a record durably; fills in `seq` and `unix_ms`. A record the
    /// disk refuses stays in memory and queued for the next attempt; see
    /// [`Journal::health`].
    pub fn append(&mut self, mut rec: R) -> &R {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        rec.stamp(self.next_seq, unix_ms);
        self.next_seq = self.next_seq.saturating_add(1);
        let line = || {
            let mut line = serde_json::to_vec(&rec).unwrap_or_default();
            line.push(b'\n');
            line
        };
        let (seq, pinned) = (rec.seq(), rec.pinned());
        match &mut self.disk {
            Disk::Memory => {}
            Disk::Inline(f) => f.push(&line(), seq, pinned),
            Disk::Background(bg) => {
                if let Some(tx) = &bg.tx {
                    let _ = tx.send((line(), seq, pinned));
                }
            }
        }
        // Only readers that asked for a feed pay for the clone.
        self.feeds.retain(|f| f.send(rec.clone()).is_ok());
        self.records.push(rec);
        self.trim();
        self.records.last().expect("just pushed")
    }

    /// Keep the window at `memory_records` (trimmed when it doubles, so the
    /// cost is amortised) plus pinned records. A journal kept only in
    /// memory is bounded too: what falls out of its window is gone.
    fn trim(&mut self) {
        let keep = self.retention.memory_records.max(1);
        if self.records.len() <= 2 * keep {
            return;
        }
        let cut = self.records.len() - keep;
        self.window_from = self.records[cut].seq();
        let mut i = 0;
        self.records.retain(|r| {
            i += 1;
            i > cut || r.pinned()
        });
    }

    /// A reader's copy of the record, starting with the records in memory.
    /// The journal only sends to it (a channel send, never a wait), so a
    /// request served from a feed holds no lock the writer takes; a feed
    /// keeps a bounded window too, and reads older records from disk.
    pub fn feed(&mut self) -> Feed<R> {
        let (tx, rx) = std::sync::mpsc::channel();
        for r in &self.records {
            let _ = tx.send(r.clone());
        }
        self.feeds.push(tx);
        Feed::new(
            rx,
            self.path.clone(),
            self.window_from,
            self.retention.memory_records,
        )
    }

    /// Hand the file to a writer thread: `append` returns at once and the
    /// record reaches the disk (write + fsync, in order) shortly after.
    /// For callers that must not wait on a disk (the control thread); the
    /// protection record stays synchronous. Dropping the journal flushes.
    pub fn write_in_background(&mut self) -> std::io::Result<()> {
        let Disk::Inline(_) = self.disk else {
            return Ok(());
        };
        let Disk::Inline(mut file) = std::mem::replace(&mut self.disk, Disk::Memory) else {
            unreachable!("checked above");
        };
        let (tx, rx) = std::sync::mpsc::channel::<Line>();
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer(&mut file, rx))?;
        self.disk = Disk::Background(Background {
            tx: Some(tx),
            handle: Some(handle),
        });
        Ok(())
    }

    /// Try again to write queued records, at most once per [`RETRY`] of
    /// the caller's clock `now_ms` (a writer thread retries on its own).
    pub fn retry(&mut self, now_ms: u64) {
        let Disk::Inline(f) = &mut self.disk else {
            return;
        };
        let due = self
            .last_retry_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= RETRY.as_millis() as u64);
        if self.health.failing() && due {
            self.last_retry_ms = Some(now_ms);
            f.flush();
        }
    }

    /// Sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The records in memory: every pinned one, and the recent ones from
    /// [`Journal::window_from`] on. Older ones: [`Journal::since`].
    pub fn records(&self) -> &[R] {
        &self.records
    }

    /// Every record from this sequence number on is in memory.
    pub fn window_from(&self) -> u64 {
        self.window_from
    }

    /// What opening the file repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Write failures and records not yet durable.
    pub fn health(&self) -> HealthSnapshot {
        self.health.snapshot()
    }
}

/// Retry interval of a writer thread whose disk refused a record.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

fn writer(file: &mut DurableFile, rx: std::sync::mpsc::Receiver<Line>) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        match rx.recv_timeout(RETRY) {
            Ok((line, seq, pinned)) => file.push(&line, seq, pinned),
            Err(RecvTimeoutError::Timeout) => file.flush(),
            Err(RecvTimeoutError::Disconnected) => return file.flush(),
        }
    }
}

/// Cut a torn tail and report damage inside the file.
fn repair<R>(path: &Path, found: &ReadJournal<R>) -> std::io::Result<Recovery> {
    if found.torn_tail_bytes > 0 {
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(found.good_len)?;
        f.sync_all()?;
        tracing::warn!(path = %path.display(), bytes = found.torn_tail_bytes, "journal ended in a torn record (a write that did not finish); truncated");
    }
    if !found.corrupt_lines.is_empty() {
        tracing::error!(path = %path.display(), lines = ?found.corrupt_lines, "journal has lines that do not parse; kept as evidence, not read");
    }
    Ok(Recovery {
        torn_tail_bytes: found.torn_tail_bytes,
        corrupt_lines: found.corrupt_lines.clone(),
        corrupt_sealed_segments: 0,
    })
}

// Protection may not depend on an I/O crate, so the journal carries the
// glue that makes it protection's durable sink.
impl Record for EventRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn stamp(&mut self, seq: u64, unix_ms: u64) {
        self.seq = seq;
        self.unix_ms = unix_ms;
    }
    /// A persistent latch and its reset decide whether the contactors may
    /// close after a restart: they outlive any retention.
    fn pinned(&self) -> bool {
        use bms_protection::events::EventKind;
        self.quantity.is_some_and(|q| q.is_persistent())
            && matches!(self.kind, EventKind::Latched | EventKind::Reset)
    }
}

impl EventSink for Journal<EventRecord> {
    fn append(&mut self, rec: EventRecord) {
        Journal::append(self, rec);
    }
    fn records(&self) -> &[EventRecord] {
        Journal::records(self)
    }
    fn failing(&self) -> bool {
        self.health.failing()
    }
    fn retry(&mut self, now_ms: u64) {
        Journal::retry(self, now_ms);
    }
}
