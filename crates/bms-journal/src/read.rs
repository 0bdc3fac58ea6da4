//! Reading a journal file back: every whole record, the line number of
//! every line that does not parse, and the torn tail a crash left.
//!
//! Owns: [`ReadJournal`] and the scan. May not touch: the file (opening
//! for append, and truncating a torn tail, is [`crate::Journal::open`]'s).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::JournalError;

/// What a journal file holds.
#[derive(Debug)]
pub struct ReadJournal<R> {
    pub records: Vec<R>,
    /// Lines that did not parse, the torn tail included.
    pub torn_lines: usize,
    /// 1-based line numbers of whole (newline-terminated) lines that did
    /// not parse: damage inside the file, reported, never silently dropped.
    pub corrupt_lines: Vec<usize>,
    /// Bytes after the last newline that are not a whole record: a write
    /// the process or the disk did not finish.
    pub torn_tail_bytes: u64,
    /// Length of the file up to the end of its last whole record.
    pub good_len: u64,
    /// The last record parsed but lacks its newline (a cut exactly there).
    pub unterminated: bool,
}

impl<R> ReadJournal<R> {
    pub(crate) fn empty() -> Self {
        Self {
            records: Vec::new(),
            torn_lines: 0,
            corrupt_lines: Vec::new(),
            torn_tail_bytes: 0,
            good_len: 0,
            unterminated: false,
        }
    }
}

pub(crate) fn scan<R: DeserializeOwned>(path: &Path) -> Result<ReadJournal<R>, JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut out = ReadJournal::empty();
    let (mut offset, mut line_no, mut buf) = (0u64, 0usize, Vec::new());
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)? as u64;
        if n == 0 {
            return Ok(out);
        }
        line_no += 1;
        offset += n;
        let terminated = buf.last() == Some(&b'\n');
        let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if body.iter().all(u8::is_ascii_whitespace) {
            if terminated {
                out.good_len = offset;
            } else {
                out.torn_tail_bytes = n;
            }
            continue;
        }
        match serde_json::from_slice::<R>(body) {
            Ok(r) => {
                out.records.push(r);
                out.good_len = offset;
                out.unterminated = !terminated;
            }
            Err(_) if !terminated => {
                out.torn_lines += 1;
                out.torn_tail_bytes = n;
            }
            Err(_) => {
                out.torn_lines += 1;
                out.corrupt_lines.push(line_no);
                // Damage inside the file is kept as evidence; later
                // records still count.
                out.good_len = offset;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Journal, Record, Recovery};
    use std::io::Write;

    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    struct Rec {
        seq: u64,
        unix_ms: u64,
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
    const R: Rec = Rec { seq: 0, unix_ms: 0 };

    fn file_with(lines: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(lines)
            .unwrap();
        (dir, path)
    }

    #[test]
    fn a_torn_tail_is_truncated_on_open_and_reported() {
        let (_d, path) = file_with(b"{\"seq\":1,\"unix_ms\":0}\n{\"seq\":2,\"un");
        let mut j = Journal::<Rec>::open(&path).unwrap();
        assert_eq!(
            j.recovery(),
            &Recovery {
                torn_tail_bytes: 12,
                ..Recovery::default()
            }
        );
        assert_eq!(j.next_seq(), 2);
        j.append(R);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>().len(),
            2,
            "the fragment is gone, not merged: {text}"
        );
        let read = Journal::<Rec>::read(&path).unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.torn_lines, 0);
    }

    #[test]
    fn damage_inside_the_file_is_reported_by_line_and_kept() {
        let (_d, path) =
            file_with(b"{\"seq\":1,\"unix_ms\":0}\ngarbage\n{\"seq\":2,\"unix_ms\":0}\n{oops}\n");
        let j = Journal::<Rec>::open(&path).unwrap();
        assert_eq!(j.recovery().corrupt_lines, vec![2, 4]);
        assert_eq!(j.records().len(), 2, "records after the damage still count");
        assert!(std::fs::read_to_string(&path).unwrap().contains("garbage"));
    }

    #[test]
    fn a_whole_record_cut_before_its_newline_is_kept_and_terminated() {
        let (_d, path) = file_with(b"{\"seq\":1,\"unix_ms\":0}");
        let mut j = Journal::<Rec>::open(&path).unwrap();
        assert_eq!(j.recovery(), &Recovery::default());
        j.append(R);
        let read = Journal::<Rec>::read(&path).unwrap();
        assert_eq!(
            read.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2]
        );
    }
}
