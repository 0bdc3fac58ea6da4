//! A disk that refuses a write part-way must never leave a record glued to
//! a fragment: the journal cuts the file back to its last whole record and
//! writes the refused records again once the disk takes them.
//!
//! The refusal is real: this process's file-size limit (RLIMIT_FSIZE), so
//! `write` stores part of the line and then fails with EFBIG, as on a full
//! disk. One test in this binary, because the limit is process-wide.

use std::path::Path;

use bms_journal::{Journal, Record};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rec {
    seq: u64,
    unix_ms: u64,
    text: String,
}

impl Record for Rec {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn stamp(&mut self, seq: u64, unix_ms: u64) {
        self.seq = seq;
        self.unix_ms = unix_ms;
    }
}

fn rec(text: &str) -> Rec {
    Rec {
        seq: 0,
        unix_ms: 0,
        text: text.to_string(),
    }
}

fn set_file_size_limit(bytes: Option<u64>) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim), 0);
        lim.rlim_cur = bytes.map_or(lim.rlim_max, |b| b as libc::rlim_t);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
}

fn seqs(path: &Path) -> (Vec<u64>, usize, u64) {
    let read = Journal::<Rec>::read(path).unwrap();
    (
        read.records.iter().map(|r| r.seq).collect(),
        read.corrupt_lines.len(),
        read.torn_tail_bytes,
    )
}

#[test]
fn a_write_refused_part_way_is_cut_back_and_written_again_whole() {
    // SAFETY: ignoring SIGXFSZ turns the limit into an EFBIG error.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut j = Journal::<Rec>::open(&path).unwrap();
    j.append(rec("first"));
    let len = std::fs::metadata(&path).unwrap().len();

    // The disk takes 40 more bytes: the next record is cut inside.
    set_file_size_limit(Some(len + 40));
    j.append(rec(&"deep under-voltage latched ".repeat(4)));
    let h = j.health();
    assert!(h.write_errors >= 1 && h.queued == 1 && h.failing(), "{h:?}");
    assert!(
        h.last_error.as_deref().unwrap_or("").contains("large"),
        "{h:?}"
    );
    // On disk meanwhile: one whole record and a fragment a restart would cut.
    assert_eq!(seqs(&path), (vec![1], 0, 40));
    j.append(rec("third, while the disk is still full"));
    assert_eq!(j.health().queued, 2);
    assert_eq!(j.records().len(), 3, "every record stays in memory");

    // Room again: the queue goes out whole, nothing glued to the fragment.
    set_file_size_limit(None);
    j.append(rec("fourth"));
    let h = j.health();
    assert!(!h.failing(), "{h:?}");
    assert_eq!(seqs(&path), (vec![1, 2, 3, 4], 0, 0));
    drop(j);
    let j = Journal::<Rec>::open(&path).unwrap();
    assert_eq!(j.records().len(), 4);
    assert_eq!(j.recovery(), &bms_journal::Recovery::default());
    assert_eq!(j.next_seq(), 5);
}
