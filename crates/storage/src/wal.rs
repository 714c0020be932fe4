//! The on-disk format of a durable store: checksummed entries, each a record (or a
//! snapshot's closing count), and how a file of them is read back.
//!
//! An entry is `len: u32 LE | crc32(len): u32 LE | crc32(payload): u32 LE | payload`.
//! The length has a checksum of its own so that a corrupt length is recognised as
//! corruption rather than read as "the file ends inside this entry". Reading stops
//! at the first entry that does not check out. That is a torn tail (a write the
//! crash cut short, to be cut off) only if it can be one: nothing valid follows it
//! (appends only ever extend the file), and it starts at or after the `synced`
//! length the caller knows reached the disk (a crash cannot take back what a sync
//! put there). Anything else is damage, refused.

use dida_core::{Record, Version};

/// The first bytes of every log segment.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"DIDAWAL1";
/// The first bytes of every snapshot, followed by the number of the first log
/// segment the snapshot does not cover (u64 LE).
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"DIDASNP1";

const HEADER_BYTES: usize = 12;
/// Larger entries are taken for corruption: no record comes near it (a message,
/// and so a value, is far smaller).
const MAX_PAYLOAD_BYTES: usize = 1 << 30;

const KIND_RECORD: u8 = 1;
const KIND_END: u8 = 2;

/// What one entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A record the store held at some point.
    Record(Record),
    /// The last entry of a snapshot: how many records precede it. A snapshot
    /// without it was not written to the end.
    End { records: u64 },
}

/// Appends `record`, framed, to `out`.
pub(crate) fn encode_record(record: &Record, out: &mut Vec<u8>) {
    frame(out, |out| {
        out.push(KIND_RECORD);
        out.extend_from_slice(&record.version.number.to_le_bytes());
        out.extend_from_slice(&record.version.replica.to_le_bytes());
        for text in [&record.key, &record.value] {
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    });
}

/// Appends a snapshot's end entry, counting the `records` before it, to `out`.
pub(crate) fn encode_end(records: u64, out: &mut Vec<u8>) {
    frame(out, |out| {
        out.push(KIND_END);
        out.extend_from_slice(&records.to_le_bytes());
    });
}

/// Appends the payload `write` produces to `out`, behind its header.
fn frame(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_BYTES]);
    write(out);
    let len = ((out.len() - start - HEADER_BYTES) as u32).to_le_bytes();
    let payload_crc = crc32fast::hash(&out[start + HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc32fast::hash(&len).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&payload_crc.to_le_bytes());
}

/// How a file of entries ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Every byte belonged to a valid entry.
    Clean,
    /// The entries stop being valid at this offset, past what was synced, and
    /// nothing valid follows: a write cut short by a crash.
    Torn { at: usize },
}

/// Why the entries of a file cannot be read back: damage, not a write a crash cut
/// short. Each variant says where; the caller names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Damage {
    /// An entry passes its checksum but does not decode.
    #[error("the entry at byte {at} passes its checksum but {why}")]
    Undecodable {
        /// Where the entry starts.
        at: usize,
        /// What is wrong with its content.
        why: String,
    },
    /// An invalid entry with a valid one after it.
    #[error(
        "at byte {at} it holds {found}, but a valid entry follows at byte {next}: damage \
         before the end of the file, not a write cut short"
    )]
    ValidEntryFollows {
        /// Where the invalid entry starts.
        at: usize,
        /// What the bytes there hold.
        found: String,
        /// Where the next valid entry starts.
        next: usize,
    },
    /// An invalid entry within what was synced.
    #[error(
        "at byte {at} it holds {found}, but its first {synced} bytes were synced: damage \
         to entries already on disk, not a write a crash cut short"
    )]
    WithinSynced {
        /// Where the invalid entry starts.
        at: usize,
        /// What the bytes there hold.
        found: String,
        /// How many bytes were synced.
        synced: usize,
    },
    /// The file is shorter than what was synced.
    #[error(
        "it ends at byte {len} but its first {synced} bytes were synced: it was cut after \
         the sync, which no crash does"
    )]
    CutAfterSync {
        /// The file's length.
        len: usize,
        /// How many bytes were synced.
        synced: usize,
    },
    /// A valid entry the reader does not expect where it is (told by the caller).
    #[error("{0}")]
    Misplaced(&'static str),
}

/// Reads the entries of `bytes` from `start`, handing each to `visit`, and tells how
/// the file ended. The first `synced` bytes are known to have reached the disk, so
/// they must all be there and valid. An invalid entry before `synced`, or followed
/// by a valid one, is an error (the file was damaged, not cut short by a crash), as
/// are a file shorter than `synced` and a checksummed entry that does not decode.
pub(crate) fn read_entries(
    bytes: &[u8],
    start: usize,
    synced: usize,
    mut visit: impl FnMut(Entry) -> Result<(), Damage>,
) -> Result<Ending, Damage> {
    let mut at = start;
    while at < bytes.len() {
        let Some(end) = valid_entry_at(bytes, at) else {
            return torn_or_damaged(bytes, at, synced);
        };
        let entry = decode(&bytes[at + HEADER_BYTES..end])
            .map_err(|why| Damage::Undecodable { at, why })?;
        visit(entry)?;
        at = end;
    }
    if bytes.len() < synced {
        return Err(Damage::CutAfterSync {
            len: bytes.len(),
            synced,
        });
    }
    Ok(Ending::Clean)
}

/// Whether the invalid entry at `at` is a torn tail or damage.
fn torn_or_damaged(bytes: &[u8], at: usize, synced: usize) -> Result<Ending, Damage> {
    let found = describe_damage(bytes, at);
    if let Some(next) = (at + 1..bytes.len()).find(|&p| valid_entry_at(bytes, p).is_some()) {
        return Err(Damage::ValidEntryFollows { at, found, next });
    }
    if at < synced {
        return Err(Damage::WithinSynced { at, found, synced });
    }
    Ok(Ending::Torn { at })
}

/// What the bytes from `at` on hold, for an error: zeros up to the end (what a
/// zeroed or lost stretch of the disk looks like), or an entry that does not
/// check out.
fn describe_damage(bytes: &[u8], at: usize) -> String {
    let rest = &bytes[at..];
    let zeros = rest.iter().rev().take_while(|&&b| b == 0).count();
    let entry = match rest.get(..HEADER_BYTES) {
        None => format!("{} bytes, too few for an entry", rest.len()),
        Some(header) if crc32fast::hash(&header[0..4]).to_le_bytes() != header[4..8] => {
            "an entry header whose length fails its checksum".to_string()
        }
        Some(_) => "an entry that is cut short or fails its checksum".to_string(),
    };
    if zeros == rest.len() {
        format!("{zeros} zero bytes up to the end of the file")
    } else if zeros >= HEADER_BYTES {
        format!(
            "{entry}, and zero bytes from byte {} to the end of the file ({zeros} bytes)",
            bytes.len() - zeros
        )
    } else {
        entry
    }
}

/// The end of the entry starting at `at`, if a whole, valid one starts there.
fn valid_entry_at(bytes: &[u8], at: usize) -> Option<usize> {
    let header = bytes.get(at..at + HEADER_BYTES)?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if crc32fast::hash(&header[0..4]) != word(4) {
        return None;
    }
    let len = word(0) as usize;
    if len > MAX_PAYLOAD_BYTES {
        return None;
    }
    let end = at + HEADER_BYTES + len;
    let payload = bytes.get(at + HEADER_BYTES..end)?;
    (crc32fast::hash(payload) == word(8)).then_some(end)
}

/// The entry a payload holds, or what is wrong with it.
fn decode(payload: &[u8]) -> Result<Entry, String> {
    let mut reader = Reader(payload);
    let entry = match reader.u8()? {
        KIND_RECORD => {
            let number = reader.u64()?;
            let replica = reader.u32()?;
            let key = reader.text()?;
            let value = reader.text()?;
            Entry::Record(Record {
                key,
                version: Version::new(number, replica),
                value,
            })
        }
        KIND_END => Entry::End {
            records: reader.u64()?,
        },
        kind => return Err(format!("has unknown kind {kind}")),
    };
    if !reader.0.is_empty() {
        return Err(format!("has {} bytes after its content", reader.0.len()));
    }
    Ok(entry)
}

/// The unread rest of a payload.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("ends early".to_string());
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut word = [0; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut word = [0; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(word))
    }

    fn text(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?.to_vec();
        String::from_utf8(bytes).map_err(|e| format!("holds text that is not UTF-8 ({e})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, number: u64, value: &str) -> Entry {
        Entry::Record(Record {
            key: key.into(),
            version: Version::new(number, 2),
            value: value.into(),
        })
    }

    /// Reads `bytes` of which none are known to be synced: every damage that
    /// nothing valid follows counts as a torn tail.
    fn read_all(bytes: &[u8]) -> Result<(Vec<Entry>, Ending), Damage> {
        read_synced(bytes, 0)
    }

    fn read_synced(bytes: &[u8], synced: usize) -> Result<(Vec<Entry>, Ending), Damage> {
        let mut entries = Vec::new();
        let ending = read_entries(bytes, 0, synced, |e| {
            entries.push(e);
            Ok(())
        })?;
        Ok((entries, ending))
    }

    fn three_entries() -> (Vec<Entry>, Vec<u8>, Vec<usize>) {
        let entries = vec![
            record("a", 1, "x"),
            record("bé", 7, ""),
            Entry::End { records: 2 },
        ];
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for e in &entries {
            starts.push(bytes.len());
            match e {
                Entry::Record(r) => encode_record(r, &mut bytes),
                Entry::End { records } => encode_end(*records, &mut bytes),
            }
        }
        (entries, bytes, starts)
    }

    /// A log of `n` records, with the offset each entry starts at.
    fn log_of(n: u64) -> (Vec<u8>, Vec<usize>) {
        let (mut bytes, mut starts) = (Vec::new(), Vec::new());
        for i in 0..n {
            starts.push(bytes.len());
            encode_record(
                &Record {
                    key: format!("key-{i}"),
                    version: Version::new(i + 1, 1),
                    value: "value".into(),
                },
                &mut bytes,
            );
        }
        (bytes, starts)
    }

    #[test]
    fn entries_read_back_as_written() {
        let (entries, bytes, _) = three_entries();
        assert_eq!(read_all(&bytes).unwrap(), (entries, Ending::Clean));
    }

    #[test]
    fn a_cut_or_damaged_last_entry_is_a_torn_tail() {
        let (entries, bytes, starts) = three_entries();
        for cut in starts[2] + 1..bytes.len() {
            let (read, ending) = read_all(&bytes[..cut]).unwrap();
            assert_eq!(read, entries[..2]);
            assert_eq!(ending, Ending::Torn { at: starts[2] });
        }
        for flip in starts[2]..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[flip] ^= 0x40;
            let (read, ending) = read_all(&damaged).unwrap();
            assert_eq!(read, entries[..2], "byte {flip} flipped");
            assert_eq!(ending, Ending::Torn { at: starts[2] });
        }
    }

    #[test]
    fn damage_before_the_last_entry_is_an_error() {
        let (_, bytes, starts) = three_entries();
        for flip in 0..starts[2] {
            let mut damaged = bytes.clone();
            damaged[flip] ^= 0x01;
            let error = read_all(&damaged).unwrap_err();
            assert!(
                matches!(error, Damage::ValidEntryFollows { .. }),
                "byte {flip}: {error}"
            );
        }
    }

    #[test]
    fn a_synced_log_whose_second_half_was_zeroed_is_refused() {
        let (mut bytes, starts) = log_of(300);
        let synced = bytes.len();
        let half = bytes.len() / 2;
        bytes[half..].fill(0);
        let error = read_synced(&bytes, synced).unwrap_err();
        let at = *starts.iter().rev().find(|&&s| s <= half).unwrap();
        let Damage::WithinSynced {
            at: found_at,
            found,
            synced: found_synced,
        } = &error
        else {
            panic!("damage within what was synced, not {error:?}");
        };
        assert_eq!((*found_at, *found_synced), (at, synced));
        assert!(
            found.contains(&format!("zero bytes from byte {half} to the end")),
            "{found}"
        );
        // Garbage rather than zeros is refused too.
        for b in &mut bytes[half..] {
            *b = 0x5a;
        }
        let error = read_synced(&bytes, synced).unwrap_err();
        assert!(matches!(error, Damage::WithinSynced { .. }), "{error:?}");
    }

    #[test]
    fn a_cut_unsynced_last_entry_is_a_torn_tail() {
        let (bytes, starts) = log_of(300);
        let last = starts[299];
        for cut in [last + 1, last + HEADER_BYTES, bytes.len() - 1] {
            let (read, ending) = read_synced(&bytes[..cut], last).unwrap();
            assert_eq!(read.len(), 299);
            assert_eq!(ending, Ending::Torn { at: last });
        }
    }

    #[test]
    fn zeros_in_the_unsynced_suffix_only_are_a_torn_tail() {
        // With `--fsync never` or between group commits, a machine crash may lose any
        // suffix past the last sync, whatever its length: here 200 entries.
        let (mut bytes, starts) = log_of(300);
        let synced = starts[100];
        bytes[synced..].fill(0);
        let (read, ending) = read_synced(&bytes, synced).unwrap();
        assert_eq!(read.len(), 100);
        assert_eq!(ending, Ending::Torn { at: synced });
        // One byte more, and the zeros reach into what was synced.
        let error = read_synced(&bytes, synced + 1).unwrap_err();
        assert!(matches!(error, Damage::WithinSynced { .. }), "{error:?}");
    }

    #[test]
    fn a_log_shorter_than_what_was_synced_is_refused() {
        let (bytes, starts) = log_of(10);
        let error = read_synced(&bytes[..starts[5]], bytes.len()).unwrap_err();
        assert_eq!(
            error,
            Damage::CutAfterSync {
                len: starts[5],
                synced: bytes.len()
            }
        );
    }
}
