//! The synced mark: how far the newest log segment is known to be on disk, so that
//! recovery can tell a torn tail (damage past the mark: appends no sync had covered,
//! which a crash of the machine may lose or leave half-written) from damage to the
//! log (before the mark: bytes a sync had put on the disk, which no crash takes
//! back).
//!
//! The file `SYNCED` is `DIDASYN1`, then two slots, each `segment: u64 LE |
//! length: u64 LE | crc32 of both: u32 LE`. Each update overwrites the older slot in
//! place, without a sync of its own, after the log sync it records has returned:
//! so whatever version of the file reaches the disk never claims more than the log
//! holds there, and a crash that loses or tears an update leaves the other slot, an
//! older and smaller mark. Recovery takes the valid slot with the highest (segment,
//! length); a mark that is behind only makes the check weaker, never wrong.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::data_dir::private_file;
use crate::error::DurabilityError;

const MAGIC: &[u8; 8] = b"DIDASYN1";
const SLOT_BYTES: usize = 20;
const FILE_BYTES: usize = MAGIC.len() + 2 * SLOT_BYTES;

/// A point of the log known to be on disk: the first `length` bytes of segment
/// `segment`. Ordered as the log grows: by segment, then by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SyncedMark {
    /// The segment's number.
    pub segment: u64,
    /// How many of its bytes, from its start, were synced.
    pub length: u64,
}

/// The contents of a new `SYNCED` file holding `mark` in both slots.
pub(crate) fn encode_file(mark: SyncedMark) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    for _ in 0..2 {
        bytes.extend_from_slice(&encode_slot(mark));
    }
    bytes
}

/// Reads the mark at `path`: `None` if there is no such file (a new directory, or
/// one an older dida wrote), an error if it is not one this node writes or neither
/// slot checks out (a crash tears at most one of them).
pub(crate) fn read_mark(path: &Path) -> Result<Option<SyncedMark>, DurabilityError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DurabilityError::io("read", path)(e)),
    };
    let corrupt = |reason: String| DurabilityError::Corrupt {
        what: "synced mark",
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() != FILE_BYTES || !bytes.starts_with(MAGIC) {
        return Err(corrupt(format!(
            "it is not a synced mark ({} bytes; a mark is {FILE_BYTES}, starting with {:?})",
            bytes.len(),
            String::from_utf8_lossy(MAGIC)
        )));
    }
    let slots = bytes[MAGIC.len()..].chunks_exact(SLOT_BYTES);
    slots
        .filter_map(decode_slot)
        .max()
        .map(Some)
        .ok_or_else(|| corrupt("neither of its two slots passes its checksum".to_string()))
}

fn encode_slot(mark: SyncedMark) -> [u8; SLOT_BYTES] {
    let mut slot = [0; SLOT_BYTES];
    slot[0..8].copy_from_slice(&mark.segment.to_le_bytes());
    slot[8..16].copy_from_slice(&mark.length.to_le_bytes());
    let crc = crc32fast::hash(&slot[0..16]);
    slot[16..20].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn decode_slot(slot: &[u8]) -> Option<SyncedMark> {
    let (body, crc) = (slot.get(0..16)?, slot.get(16..20)?);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let (segment, length) = body.split_at(8);
    Some(SyncedMark {
        segment: u64::from_le_bytes(segment.try_into().ok()?),
        length: u64::from_le_bytes(length.try_into().ok()?),
    })
}

/// The open `SYNCED` file of a running store, advanced after every sync of the log.
#[derive(Debug)]
pub(crate) struct MarkFile {
    file: File,
    /// The slot the next update overwrites: the one holding the older mark.
    next_slot: usize,
    /// The mark last recorded.
    last: SyncedMark,
}

impl MarkFile {
    /// Opens the mark at `path`, which was just written whole with `mark` in both
    /// slots (by [`encode_file`]).
    pub(crate) fn open(path: &Path, mark: SyncedMark) -> Result<Self, DurabilityError> {
        let file = private_file()
            .open(path)
            .map_err(DurabilityError::io("open", path))?;
        Ok(Self {
            file,
            next_slot: 0,
            last: mark,
        })
    }

    /// Records that the log is on disk up to `mark`, unless a later mark was
    /// recorded already (a sync that raced with a rotation to the next segment).
    pub(crate) fn advance(&mut self, mark: SyncedMark) -> std::io::Result<()> {
        if mark <= self.last {
            return Ok(());
        }
        let offset = MAGIC.len() + self.next_slot * SLOT_BYTES;
        self.file.write_all_at(&encode_slot(mark), offset as u64)?;
        self.next_slot = 1 - self.next_slot;
        self.last = mark;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(segment: u64, length: u64) -> SyncedMark {
        SyncedMark { segment, length }
    }

    #[test]
    fn the_newest_mark_reads_back_and_a_torn_update_leaves_the_older() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("SYNCED");
        fs::write(&path, encode_file(mark(3, 8))).unwrap();
        assert_eq!(read_mark(&path).unwrap(), Some(mark(3, 8)));
        let mut file = MarkFile::open(&path, mark(3, 8)).unwrap();
        for (segment, length) in [(3, 100), (3, 90), (3, 200), (4, 8)] {
            file.advance(mark(segment, length)).unwrap();
        }
        assert_eq!(read_mark(&path).unwrap(), Some(mark(4, 8)));
        // The update to (4, 8) went to the first slot; tearing it leaves (3, 200).
        let mut bytes = fs::read(&path).unwrap();
        bytes[MAGIC.len() + 3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read_mark(&path).unwrap(), Some(mark(3, 200)));
        bytes[MAGIC.len() + SLOT_BYTES + 3] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let error = read_mark(&path).unwrap_err();
        assert!(
            matches!(&error, DurabilityError::Corrupt { what: "synced mark", path: p, reason }
                if *p == path && reason.contains("neither of its two slots")),
            "{error:?}"
        );
    }

    #[test]
    fn no_file_is_no_mark_and_another_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("SYNCED");
        assert_eq!(read_mark(&path).unwrap(), None);
        fs::write(&path, "hello").unwrap();
        let error = read_mark(&path).unwrap_err();
        assert!(
            matches!(&error, DurabilityError::Corrupt { what: "synced mark", reason, .. }
                if reason.contains("is not a synced mark")),
            "{error:?}"
        );
    }
}
