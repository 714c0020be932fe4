//! The on-disk format of a durable store: checksummed entries, each a record (or a
//! snapshot's closing count), and how a file of them is read back.
//!
//! An entry is `len: u32 LE | crc32(len): u32 LE | crc32(payload): u32 LE | payload`.
//! The length has a checksum of its own so that a corrupt length is recognised as
//! corruption rather than read as "the file ends inside this entry". Reading stops
//! at the first entry that does not check out; whether that is a torn tail (a
//! write the crash cut short, to be cut off) or corruption before the tail (to be
//! refused) depends on whether any valid entry follows it: appends only ever
//! extend the file, so a crash leaves at most one bad entry, at the very end.

use anyhow::{bail, Context};
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
    /// The entries stop being valid at this offset and nothing valid follows: a
    /// write cut short by a crash.
    Torn { at: usize },
}

/// Reads the entries of `bytes` from `start`, handing each to `visit`, and tells how
/// the file ended. An invalid entry followed by a valid one is an error (the file
/// was damaged, not cut short), as is a checksummed entry that does not decode.
pub(crate) fn read_entries(
    bytes: &[u8],
    start: usize,
    mut visit: impl FnMut(Entry) -> anyhow::Result<()>,
) -> anyhow::Result<Ending> {
    let mut at = start;
    while at < bytes.len() {
        let Some(end) = valid_entry_at(bytes, at) else {
            if let Some(next) = (at + 1..bytes.len()).find(|&p| valid_entry_at(bytes, p).is_some())
            {
                bail!(
                    "the entry at byte {at} is corrupt but a valid entry follows at byte \
                     {next}: damage before the end of the file, not a write cut short"
                );
            }
            return Ok(Ending::Torn { at });
        };
        let entry = decode(&bytes[at + HEADER_BYTES..end])
            .with_context(|| format!("the entry at byte {at} passes its checksum but"))?;
        visit(entry)?;
        at = end;
    }
    Ok(Ending::Clean)
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

fn decode(payload: &[u8]) -> anyhow::Result<Entry> {
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
        kind => bail!("has unknown kind {kind}"),
    };
    if !reader.0.is_empty() {
        bail!("has {} bytes after its content", reader.0.len());
    }
    Ok(entry)
}

/// The unread rest of a payload.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> anyhow::Result<&[u8]> {
        if self.0.len() < n {
            bail!("ends early");
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> anyhow::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> anyhow::Result<u32> {
        let mut word = [0; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }

    fn u64(&mut self) -> anyhow::Result<u64> {
        let mut word = [0; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(word))
    }

    fn text(&mut self) -> anyhow::Result<String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?.to_vec();
        String::from_utf8(bytes).context("holds text that is not UTF-8")
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

    fn read_all(bytes: &[u8]) -> anyhow::Result<(Vec<Entry>, Ending)> {
        let mut entries = Vec::new();
        let ending = read_entries(bytes, 0, |e| {
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
            let error = read_all(&damaged).unwrap_err().to_string();
            assert!(
                error.contains("a valid entry follows"),
                "byte {flip}: {error}"
            );
        }
    }
}
