//! The segment files of a journal: the active file and the sealed ones
//! beside it.
//!
//! Owns: their names (`events.jsonl` is active; a sealed segment is
//! `events.<first seq, 16 digits>.jsonl`, or `….pinned.jsonl` when it holds
//! a pinned record), listing them in order, sealing the active file,
//! retention (the oldest unpinned sealed segments beyond `keep_segments`
//! are deleted; a pinned one never is), and reading records after a
//! sequence number back from disk.
//!
//! May not touch: the active file's content (that is [`crate::file`]'s) or
//! what a record means (the record says whether it is pinned).

use std::path::{Path, PathBuf};

use crate::{read, JournalError, Record};

/// How a journal bounds its memory and its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// The active file is sealed once it holds this many bytes.
    pub segment_bytes: u64,
    /// Sealed segments kept besides pinned ones; older ones are deleted.
    pub keep_segments: usize,
    /// Records kept in memory (besides pinned ones); older ones are read
    /// back from disk when asked for.
    pub memory_records: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            segment_bytes: 4 << 20,
            keep_segments: 32,
            memory_records: 10_000,
        }
    }
}

/// A sealed segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    pub first_seq: u64,
    pub pinned: bool,
}

fn parts(active: &Path) -> (PathBuf, String, String) {
    let dir = active.parent().unwrap_or(Path::new(".")).to_path_buf();
    let stem = active
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let ext = active
        .extension()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    (dir, stem, ext)
}

fn name(active: &Path, first_seq: u64, pinned: bool) -> PathBuf {
    let (dir, stem, ext) = parts(active);
    let pin = if pinned { ".pinned" } else { "" };
    dir.join(format!("{stem}.{first_seq:016}{pin}.{ext}"))
}

/// The sealed segments of the journal whose active file is `active`,
/// oldest first.
pub fn sealed(active: &Path) -> std::io::Result<Vec<Segment>> {
    let (dir, stem, ext) = parts(active);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let file = entry?.file_name();
        let file = file.to_string_lossy();
        let Some(middle) = file
            .strip_prefix(&format!("{stem}."))
            .and_then(|m| m.strip_suffix(&format!(".{ext}")))
        else {
            continue;
        };
        let (digits, pinned) = match middle.strip_suffix(".pinned") {
            Some(d) => (d, true),
            None => (middle, false),
        };
        if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        out.push(Segment {
            path: dir.join(&*file),
            first_seq: digits.parse().unwrap_or(0),
            pinned,
        });
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// Rename the active file to its sealed name and make the rename durable.
pub(crate) fn seal(active: &Path, first_seq: u64, pinned: bool) -> std::io::Result<PathBuf> {
    let to = name(active, first_seq, pinned);
    std::fs::rename(active, &to)?;
    sync_dir(active)?;
    Ok(to)
}

fn sync_dir(active: &Path) -> std::io::Result<()> {
    let (dir, _, _) = parts(active);
    std::fs::File::open(dir)?.sync_all()
}

/// Delete the oldest unpinned sealed segments beyond `keep`; returns how
/// many went.
pub(crate) fn enforce(active: &Path, keep: usize) -> std::io::Result<usize> {
    let unpinned: Vec<Segment> = sealed(active)?.into_iter().filter(|s| !s.pinned).collect();
    let excess = unpinned.len().saturating_sub(keep);
    for s in &unpinned[..excess] {
        std::fs::remove_file(&s.path)?;
        tracing::info!(segment = %s.path.display(), "journal segment past retention deleted");
    }
    if excess > 0 {
        sync_dir(active)?;
    }
    Ok(excess)
}

/// Records with a sequence number above `since_seq`, at most `limit`, from
/// every segment on disk (sealed, then active), oldest first.
pub fn read_since<R: Record>(
    active: &Path,
    since_seq: u64,
    limit: usize,
) -> Result<Vec<R>, JournalError> {
    let io = |source| JournalError::Io {
        path: active.to_owned(),
        source,
    };
    let segments = sealed(active).map_err(io)?;
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        // A segment whose successor starts at or before the first record
        // wanted holds nothing wanted.
        let next_first = segments.get(i + 1).map(|n| n.first_seq);
        if next_first.is_none_or(|n| n > since_seq.saturating_add(1)) {
            files.push(s.path.clone());
        }
    }
    if active.exists() {
        files.push(active.to_owned());
    }
    let mut out = Vec::new();
    for f in files {
        for r in read::scan::<R>(&f)?.records {
            if r.seq() > since_seq {
                out.push(r);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Journal;

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Rec {
        seq: u64,
        unix_ms: u64,
        pin: bool,
        pad: String,
    }
    impl Record for Rec {
        fn seq(&self) -> u64 {
            self.seq
        }
        fn stamp(&mut self, seq: u64, unix_ms: u64) {
            self.seq = seq;
            self.unix_ms = unix_ms;
        }
        fn pinned(&self) -> bool {
            self.pin
        }
    }

    fn rec(pin: bool) -> Rec {
        Rec {
            seq: 0,
            unix_ms: 0,
            pin,
            pad: "x".repeat(60),
        }
    }

    const SMALL: Retention = Retention {
        segment_bytes: 1024,
        keep_segments: 2,
        memory_records: 10,
    };

    #[test]
    fn segments_rotate_old_ones_go_and_a_pinned_one_stays_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut j = Journal::<Rec>::open_with(&path, SMALL).unwrap();
        for i in 1..=500u64 {
            j.append(rec(i == 5));
            assert!(j.records().len() <= 2 * 10 + 1, "memory bounded at {i}");
        }
        let segs = sealed(&path).unwrap();
        let pinned: Vec<_> = segs.iter().filter(|s| s.pinned).collect();
        assert_eq!(pinned.len(), 1, "{segs:?}");
        assert_eq!(pinned[0].first_seq, 1);
        assert_eq!(segs.len(), 1 + 2, "two unpinned kept: {segs:?}");
        assert!(
            j.records().iter().any(|r| r.seq == 5),
            "pinned stays in memory"
        );
        assert_eq!(j.health().write_errors, 0);

        // Older than memory: read back from disk, in order, paged.
        let from_disk = j.since(0, 3).unwrap();
        assert_eq!(from_disk.iter().map(|r| r.seq).collect::<Vec<_>>()[0], 1);
        let oldest_unpinned = segs[1].first_seq;
        let page = j.since(oldest_unpinned - 1, 5).unwrap();
        assert_eq!(
            page.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (oldest_unpinned..oldest_unpinned + 5).collect::<Vec<_>>()
        );
        let tail = j.since(490, 100).unwrap();
        assert_eq!(tail.len(), 10);

        // A restart: sequence numbers continue, the pinned record is back.
        drop(j);
        let mut j = Journal::<Rec>::open_with(&path, SMALL).unwrap();
        assert_eq!(j.next_seq(), 501);
        assert!(j.records().iter().any(|r| r.seq == 5));
        assert!(j.records().len() <= 10 + 1);
        assert_eq!(j.window_from(), 491);
        j.append(rec(false));
        assert_eq!(j.since(499, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_feed_keeps_a_window_and_reads_older_records_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut j = Journal::<Rec>::open_with(&path, SMALL).unwrap();
        let mut feed = j.feed();
        for _ in 0..200 {
            j.append(rec(false));
        }
        let recent = feed.since(195, 100).unwrap();
        assert_eq!(
            recent.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [196, 197, 198, 199, 200]
        );
        let segs = sealed(&path).unwrap();
        let first_on_disk = segs[0].first_seq;
        let old = feed.since(first_on_disk, 2).unwrap();
        assert_eq!(
            old.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [first_on_disk + 1, first_on_disk + 2]
        );
    }
}
