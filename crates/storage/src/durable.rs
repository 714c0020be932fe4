//! Persistence of the multi-version store: an append-only log of the
//! records it takes in, a snapshot that compaction rewrites, and recovery of both.
//!
//! The log holds records, not operations. A key's versions in the store are always
//! the `max_versions` highest of every version it ever took in (a write, a
//! conditional update, a merge), whatever their order — so replaying the snapshot
//! and the log in any order, even with records repeated, rebuilds the same state,
//! and a version discarded by `max_versions` needs no entry of its own: replay
//! discards it again. That is what makes compaction simple: a snapshot is just the
//! records held, written while writes go on into a new log segment.
//!
//! When a record reaches the disk is the [`FsyncPolicy`]'s. With `always`, a writer
//! waits after releasing its shard lock for a sync that covers its entry; the first
//! waiter syncs for everyone appended so far and the others wait for it (group
//! commit), so concurrent writers share fsyncs. A log write or sync that fails stops
//! the process (see [`Durable::fail_stop`]). Each sync advances the synced mark
//! ([`crate::synced`]), against which recovery tells a torn tail (cut) from damage
//! to what was synced (refused, with the directory left as it was).
//!
//! Files and their meaning are in `docs/durability.md`.

use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use dida_core::Record;
use tracing::{error, info, warn};

use crate::config::{FsyncPolicy, StorageConfig, BATCH_INTERVAL};
use crate::data_dir::{create_private, private_file, DataDir, Identity};
use crate::error::DurabilityError;
use crate::synced::{encode_file, read_mark, MarkFile, SyncedMark};
use crate::wal::{
    encode_end, encode_record, read_entries, Damage, Ending, Entry, SEGMENT_MAGIC, SNAPSHOT_MAGIC,
};

/// The log outgrows the snapshot when it holds more than this, or more than twice
/// the snapshot, whichever is larger: compaction then keeps the disk used within a
/// small multiple of the live data, and small stores do not compact all the time.
pub const COMPACT_AFTER_BYTES: u64 = 64 << 20;

/// The exit status of a node stopped by a failed log write or sync (EX_IOERR).
const EXIT_IO_ERROR: i32 = 74;

/// Where and how a store persists its records.
#[derive(Debug, Clone)]
pub struct Persistence {
    /// The data directory.
    pub dir: PathBuf,
    /// When logged records reach the disk.
    pub fsync: FsyncPolicy,
    /// Who the directory belongs to: the node id, and the cluster it was made in
    /// (see [`Persistence::of`]). A directory created for another is refused.
    pub node: String,
    /// The cluster fingerprint stored beside the node id.
    pub cluster: String,
    /// Log bytes past which compaction starts (if they also exceed twice the
    /// snapshot); [`COMPACT_AFTER_BYTES`] unless a test wants compactions sooner.
    pub compact_after_bytes: u64,
}

impl Persistence {
    /// The persistence `config` asks for (`None` without `--data-dir`). The cluster
    /// fingerprint names the node's replica number, the virtual nodes and the
    /// replication factor: what the records' versions and placement were made
    /// with. The other members are left out — nodes join and leave, and a node
    /// hands off what it no longer replicates (`handoff`) — and so are URLs, so a
    /// cluster may move to other addresses and keep its data; which cluster the
    /// directory belongs to is checked against its `cluster.json`.
    pub fn of(config: &StorageConfig) -> Option<Self> {
        let dir = config.data_dir.clone()?;
        let replica = config
            .membership
            .get(&config.id)
            .map_or(0, |member| member.replica);
        Some(Self {
            dir,
            fsync: config.fsync,
            node: config.id.clone(),
            cluster: format!(
                "replica {replica} vnodes {} replication-factor {}",
                config.vnodes, config.replication_factor
            ),
            compact_after_bytes: COMPACT_AFTER_BYTES,
        })
    }
}

/// Hands every record a snapshot must hold to the visitor it is given.
pub(crate) type RecordSource<'a> = dyn Fn(&mut dyn FnMut(&Record)) + 'a;

/// A [`RecordSource`] the background thread owns.
pub(crate) type SnapshotSource = Box<dyn Fn(&mut dyn FnMut(&Record)) + Send>;

/// The open log of a store, and what syncs and compacts it.
#[derive(Debug)]
pub(crate) struct Durable {
    dir: DataDir,
    policy: FsyncPolicy,
    compact_after_bytes: u64,
    log: Mutex<Log>,
    /// Signalled when `Log::synced` advances or a sync leader steps down.
    synced: Condvar,
    /// Wakes the background thread: compaction is due, or the store is closing.
    wake: Condvar,
    /// Held by a compaction or a clear from start to end, so they never interleave.
    exclusive: Mutex<()>,
}

/// The log's state, under the log's lock. Entries are numbered from 1 in the order
/// they were appended (in this process).
#[derive(Debug)]
struct Log {
    /// The segment appended to.
    file: Arc<File>,
    segment: u64,
    /// The segment's length: where the next entry goes.
    segment_len: u64,
    /// How far the log is known to be on disk, advanced after every sync.
    mark: MarkFile,
    /// The number of the last entry appended.
    appended: u64,
    /// Every entry up to this number is on disk.
    synced: u64,
    /// Whether a thread is syncing on everyone's behalf (the group commit leader).
    syncing: bool,
    /// Bytes in the segments the snapshot does not cover.
    log_bytes: u64,
    snapshot_bytes: u64,
    compaction_due: bool,
    closing: bool,
    /// Reused to encode entries.
    buffer: Vec<u8>,
}

impl Durable {
    /// Opens (or creates) the data directory and hands every record it holds to
    /// `recover`, in no particular order and possibly repeated. A torn last entry
    /// (past what was synced) is cut off with a warning; any other damage, another
    /// node's or cluster's directory, or one in use by another process is an error,
    /// and then nothing in the directory was changed.
    pub(crate) fn open(
        persistence: &Persistence,
        mut recover: impl FnMut(Record),
    ) -> Result<Arc<Self>, DurabilityError> {
        let identity = Identity {
            node: persistence.node.clone(),
            cluster: persistence.cluster.clone(),
        };
        let dir = DataDir::open(&persistence.dir, &identity)?;
        let found =
            read_log(&dir, &mut recover).map_err(|cause| DurabilityError::Unrecoverable {
                dir: dir.path().to_path_buf(),
                cause: Box::new(cause),
            })?;
        // Recovered: from here on the directory is changed (stale files removed,
        // a torn tail cut).
        for &number in &found.stale {
            remove_segment(&dir, number)?;
        }
        let (segment, (file, segment_len)) = match found.last {
            Some((number, good)) => (number, reopen_segment(&dir, number, good)?),
            None => (found.first_live, create_segment(&dir, found.first_live)?),
        };
        dir.sync()?;
        let mark = SyncedMark {
            segment,
            length: segment_len,
        };
        let (name, mark_path) = dir.synced_mark();
        dir.write_atomically(name, &encode_file(mark))?;
        let durable = Self {
            policy: persistence.fsync,
            compact_after_bytes: persistence.compact_after_bytes,
            log: Mutex::new(Log {
                file: Arc::new(file),
                segment,
                segment_len,
                mark: MarkFile::open(&mark_path, mark)?,
                appended: 0,
                synced: 0,
                syncing: false,
                log_bytes: found.log_bytes,
                snapshot_bytes: found.snapshot_bytes,
                compaction_due: false,
                closing: false,
                buffer: Vec::new(),
            }),
            dir,
            synced: Condvar::new(),
            wake: Condvar::new(),
            exclusive: Mutex::new(()),
        };
        {
            let mut log = durable.lock();
            durable.check_size(&mut log);
        }
        Ok(Arc::new(durable))
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().expect("log lock poisoned")
    }

    /// Appends `record` to the log (to the operating system, not yet necessarily
    /// to the disk) and returns its entry number for [`Durable::wait`].
    pub(crate) fn append(&self, record: &Record) -> u64 {
        let mut guard = self.lock();
        let log = &mut *guard;
        log.buffer.clear();
        encode_record(record, &mut log.buffer);
        if let Err(e) = (&*log.file).write_all(&log.buffer) {
            self.fail_stop("cannot append to the log", e);
        }
        log.appended += 1;
        log.log_bytes += log.buffer.len() as u64;
        log.segment_len += log.buffer.len() as u64;
        self.check_size(log);
        log.appended
    }

    /// The number of the last entry appended: waiting for it covers everything
    /// the store has logged so far.
    pub(crate) fn appended(&self) -> u64 {
        self.lock().appended
    }

    /// Marks compaction due, and wakes the background thread, when the log has
    /// outgrown the snapshot.
    fn check_size(&self, log: &mut Log) {
        let limit = self.compact_after_bytes.max(2 * log.snapshot_bytes);
        if !log.compaction_due && log.log_bytes > limit {
            log.compaction_due = true;
            self.wake.notify_all();
        }
    }

    /// Returns once entry `entry` is as durable as the policy asks before a record
    /// is acknowledged: on disk with `always`, at once otherwise. Inside a
    /// multi-threaded tokio runtime the wait moves the runtime's other tasks off
    /// this thread first, so that more writers can join the next sync.
    pub(crate) fn wait(&self, entry: u64) {
        if self.policy != FsyncPolicy::Always {
            return;
        }
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.wait_synced(entry))
            }
            _ => self.wait_synced(entry),
        }
    }

    fn wait_synced(&self, entry: u64) {
        let mut log = self.lock();
        while log.synced < entry {
            log = if log.syncing {
                self.synced.wait(log).expect("log lock poisoned")
            } else {
                self.sync_appended(log)
            };
        }
    }

    /// Syncs every entry appended so far, as the group commit's leader: the lock
    /// is released during the sync, so that others append meanwhile (and wait for
    /// the next one).
    fn sync_appended<'a>(&'a self, mut log: MutexGuard<'a, Log>) -> MutexGuard<'a, Log> {
        log.syncing = true;
        let target = log.appended;
        let reached = SyncedMark {
            segment: log.segment,
            length: log.segment_len,
        };
        let file = log.file.clone();
        drop(log);
        if let Err(e) = file.sync_data() {
            self.fail_stop("cannot sync the log", e);
        }
        let mut log = self.lock();
        log.syncing = false;
        log.synced = log.synced.max(target);
        self.advance_mark(&mut log, reached);
        self.synced.notify_all();
        log
    }

    /// Records that the log is on disk up to `reached` (see [`crate::synced`]).
    fn advance_mark(&self, log: &mut Log, reached: SyncedMark) {
        if let Err(e) = log.mark.advance(reached) {
            self.fail_stop("cannot record how far the log is synced", e);
        }
    }

    /// Starts the thread that syncs the log every [`BATCH_INTERVAL`] (with the
    /// `batch` policy) and compacts it when due, reading the store through `source`.
    pub(crate) fn start(
        self: &Arc<Self>,
        source: SnapshotSource,
    ) -> Result<DurableLog, DurabilityError> {
        let durable = self.clone();
        let thread = std::thread::Builder::new()
            .name("dida-durable".into())
            .spawn(move || durable.background(&source))
            .map_err(DurabilityError::Thread)?;
        Ok(DurableLog {
            durable: self.clone(),
            thread: Some(thread),
        })
    }

    fn background(&self, source: &SnapshotSource) {
        let interval = match self.policy {
            FsyncPolicy::Batch => BATCH_INTERVAL,
            FsyncPolicy::Always | FsyncPolicy::Never => Duration::from_secs(1),
        };
        let mut log = self.lock();
        while !log.closing {
            if log.compaction_due {
                drop(log);
                if let Err(e) = self.compact(source) {
                    self.fail_stop("cannot compact the log", e);
                }
                log = self.lock();
                continue;
            }
            if self.policy == FsyncPolicy::Batch && log.synced < log.appended && !log.syncing {
                log = self.sync_appended(log);
            }
            log = self
                .wake
                .wait_timeout(log, interval)
                .expect("log lock poisoned")
                .0;
        }
        if self.policy != FsyncPolicy::Never && log.synced < log.appended && !log.syncing {
            drop(self.sync_appended(log));
        }
    }

    /// Writes a snapshot of what `source` holds and drops the log it covers. Writes
    /// go on meanwhile, into a new segment that the snapshot does not cover: a crash
    /// at any point leaves the old snapshot with every segment, or the new one with
    /// the segments after it (and maybe stale ones, which recovery removes).
    pub(crate) fn compact(&self, source: &RecordSource<'_>) -> Result<(), DurabilityError> {
        let _alone = self.exclusive.lock().expect("compaction lock poisoned");
        let first_live = self.rotate()?;
        let snapshot_bytes = self.write_snapshot(first_live, source)?;
        self.remove_segments_before(first_live)?;
        let mut log = self.lock();
        info!(
            dir = %self.dir.path().display(),
            snapshot_bytes,
            log_bytes = log.log_bytes,
            "compacted the log into a snapshot"
        );
        log.snapshot_bytes = snapshot_bytes;
        log.compaction_due = false;
        Ok(())
    }

    /// Syncs the current segment and starts the next; returns its number.
    fn rotate(&self) -> Result<u64, DurabilityError> {
        let mut log = self.lock();
        let current = self.dir.segment(log.segment);
        log.file
            .sync_data()
            .map_err(DurabilityError::io("sync log segment", current))?;
        log.synced = log.appended;
        self.synced.notify_all();
        let next = log.segment + 1;
        let (file, segment_len) = create_segment(&self.dir, next)?;
        self.dir.sync()?;
        log.file = Arc::new(file);
        log.segment = next;
        log.segment_len = segment_len;
        log.log_bytes = 0;
        let reached = SyncedMark {
            segment: next,
            length: segment_len,
        };
        self.advance_mark(&mut log, reached);
        Ok(next)
    }

    /// Writes a snapshot of `source`'s records that covers the segments before
    /// `first_live`, and puts it in place; returns its size.
    fn write_snapshot(
        &self,
        first_live: u64,
        source: &RecordSource<'_>,
    ) -> Result<u64, DurabilityError> {
        let (tmp, name) = self.dir.snapshot_tmp();
        let context = || DurabilityError::io("write snapshot", &tmp);
        let mut out = BufWriter::new(create_private(&tmp).map_err(context())?);
        out.write_all(SNAPSHOT_MAGIC)
            .and_then(|()| out.write_all(&first_live.to_le_bytes()))
            .map_err(context())?;
        let (mut count, mut buffer, mut failed) = (0, Vec::new(), None);
        source(&mut |record| {
            if failed.is_none() {
                buffer.clear();
                encode_record(record, &mut buffer);
                match out.write_all(&buffer) {
                    Ok(()) => count += 1,
                    Err(e) => failed = Some(e),
                }
            }
        });
        if let Some(e) = failed {
            return Err(context()(e));
        }
        buffer.clear();
        encode_end(count, &mut buffer);
        out.write_all(&buffer).map_err(context())?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(context())?;
        file.sync_all().map_err(context())?;
        let bytes = file.metadata().map_err(context())?.len();
        self.dir.install(&tmp, name)?;
        Ok(bytes)
    }

    fn remove_segments_before(&self, first_live: u64) -> Result<(), DurabilityError> {
        for number in self.dir.segments()? {
            if number < first_live {
                remove_segment(&self.dir, number)?;
            }
        }
        self.dir.sync()
    }

    /// Stops the process after a failed write or sync of the log. The store has
    /// applied a record it cannot keep, and the page cache's state after a failed
    /// fsync is unknown (the write may be dropped silently), so going on could
    /// acknowledge writes a restart would not find; a crash is what the cluster
    /// already tolerates (SPEC §2.5: storage nodes fail by crashing).
    fn fail_stop(&self, what: &str, cause: impl Display) -> ! {
        error!(
            dir = %self.dir.path().display(),
            "{what}: {cause}; stopping the node, which cannot keep what it would acknowledge"
        );
        std::process::exit(EXIT_IO_ERROR)
    }
}

/// The log of a store, with its background thread; dropping it stops the thread
/// (after a last sync, unless the policy is `never`) and releases the directory.
#[derive(Debug)]
pub(crate) struct DurableLog {
    durable: Arc<Durable>,
    thread: Option<JoinHandle<()>>,
}

impl std::ops::Deref for DurableLog {
    type Target = Durable;

    fn deref(&self) -> &Durable {
        &self.durable
    }
}

impl Drop for DurableLog {
    fn drop(&mut self) {
        self.durable.lock().closing = true;
        self.durable.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the log's background thread panicked");
            }
        }
    }
}

/// Reads the snapshot, if any, into `recover`; returns the number of the first
/// segment it does not cover (0 without a snapshot) and its size.
fn read_snapshot(
    dir: &DataDir,
    recover: &mut impl FnMut(Record),
) -> Result<(u64, u64), DurabilityError> {
    let path = dir.snapshot();
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(DurabilityError::io("read", &path)(e)),
    };
    let corrupt = |reason: String| DurabilityError::Corrupt {
        what: "snapshot",
        path: path.clone(),
        reason,
    };
    let header = SNAPSHOT_MAGIC.len() + 8;
    if bytes.len() < header || &bytes[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return Err(corrupt("it is not a dida snapshot".to_string()));
    }
    let mut first_live = [0; 8];
    first_live.copy_from_slice(&bytes[SNAPSHOT_MAGIC.len()..header]);
    let (mut count, mut end) = (0, None);
    // The snapshot was synced whole before it was put in place.
    let ending = read_entries(&bytes, header, bytes.len(), |entry| {
        if end.is_some() {
            return Err(Damage::Misplaced("an entry follows the end entry"));
        }
        match entry {
            Entry::Record(record) => {
                count += 1;
                recover(record);
            }
            Entry::End { records } => end = Some(records),
        }
        Ok(())
    })
    .map_err(|damage| corrupt(damage.to_string()))?;
    if ending != Ending::Clean || end != Some(count) {
        return Err(corrupt(format!(
            "it is damaged or incomplete ({count} records read, end entry {end:?})"
        )));
    }
    Ok((u64::from_le_bytes(first_live), bytes.len() as u64))
}

/// What [`read_log`] found in a data directory.
struct FoundLog {
    /// The number of the first segment the snapshot does not cover.
    first_live: u64,
    snapshot_bytes: u64,
    /// Segments the snapshot covers, left by a compaction the crash interrupted.
    stale: Vec<u64>,
    /// The last segment and how many of its bytes are good, if there is one.
    last: Option<(u64, u64)>,
    /// Bytes in the segments the snapshot does not cover.
    log_bytes: u64,
}

/// Reads the snapshot and the segments it does not cover into `recover`, checking
/// each segment against the synced mark, and changes nothing.
fn read_log(dir: &DataDir, recover: &mut impl FnMut(Record)) -> Result<FoundLog, DurabilityError> {
    let (first_live, snapshot_bytes) = read_snapshot(dir, recover)?;
    let mark = read_mark(&dir.synced_mark().1)?;
    let segments = dir.segments()?;
    let (stale, live): (Vec<u64>, Vec<u64>) = segments.into_iter().partition(|&n| n < first_live);
    match mark {
        Some(mark) if mark.segment >= first_live && !live.contains(&mark.segment) => {
            return Err(DurabilityError::MissingSegment {
                path: dir.segment(mark.segment),
                synced: mark.length,
            })
        }
        None if !live.is_empty() => info!(
            dir = %dir.path().display(),
            "no synced mark (a directory an older dida wrote): the last segment's \
             damage is taken for a torn tail until the next sync records one"
        ),
        _ => {}
    }
    let mut found = FoundLog {
        first_live,
        snapshot_bytes,
        stale,
        last: None,
        log_bytes: 0,
    };
    for (i, &number) in live.iter().enumerate() {
        let is_last = i + 1 == live.len();
        let synced = mark.filter(|m| m.segment == number).map_or(0, |m| m.length);
        let good = read_segment(dir, number, is_last, synced, recover)?;
        found.log_bytes += good;
        if is_last {
            found.last = Some((number, good));
        }
    }
    Ok(found)
}

/// Reads log segment `number`, whose first `synced` bytes are known to be on disk,
/// into `recover`; returns how many of its bytes are good. Only the last segment
/// may end in a torn entry, and only past `synced`.
fn read_segment(
    dir: &DataDir,
    number: u64,
    is_last: bool,
    synced: u64,
    recover: &mut impl FnMut(Record),
) -> Result<u64, DurabilityError> {
    let path = dir.segment(number);
    let bytes = fs::read(&path).map_err(DurabilityError::io("read", &path))?;
    let corrupt = |reason: String| DurabilityError::Corrupt {
        what: "log segment",
        path: path.clone(),
        reason,
    };
    let never_written = bytes.len() < SEGMENT_MAGIC.len() && SEGMENT_MAGIC.starts_with(&bytes);
    if never_written && is_last && synced == 0 {
        warn!(segment = %path.display(), "the last log segment was created but never written");
        return Ok(0);
    }
    if !bytes.starts_with(SEGMENT_MAGIC) {
        return Err(corrupt(format!(
            "it is not a dida log segment (it does not start with {:?})",
            String::from_utf8_lossy(SEGMENT_MAGIC)
        )));
    }
    let synced = usize::try_from(synced).unwrap_or(usize::MAX);
    let ending = read_entries(&bytes, SEGMENT_MAGIC.len(), synced, |entry| match entry {
        Entry::Record(record) => {
            recover(record);
            Ok(())
        }
        Entry::End { .. } => Err(Damage::Misplaced("it holds a snapshot's end entry")),
    })
    .map_err(|damage| corrupt(damage.to_string()))?;
    match ending {
        Ending::Clean => Ok(bytes.len() as u64),
        Ending::Torn { at } if is_last => {
            warn!(
                segment = %path.display(),
                at,
                synced,
                cut = bytes.len() - at,
                "the log ends in a torn entry past what was synced (a write cut short by \
                 a crash); cutting it off"
            );
            Ok(at as u64)
        }
        Ending::Torn { at } => Err(corrupt(format!(
            "it has a damaged entry at byte {at} but later segments follow: damage before \
             the end of the log"
        ))),
    }
}

/// Opens segment `number` for appending after its first `good` bytes, cutting off
/// what follows (a torn entry) and writing the header if it has none; returns it
/// with its length, on disk.
fn reopen_segment(dir: &DataDir, number: u64, good: u64) -> Result<(File, u64), DurabilityError> {
    let path = dir.segment(number);
    let context = || DurabilityError::io("reopen log segment", &path);
    let mut file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(context())?;
    if file.metadata().map_err(context())?.len() != good {
        file.set_len(good).map_err(context())?;
    }
    let mut len = good;
    if good == 0 {
        file.write_all(SEGMENT_MAGIC).map_err(context())?;
        len = SEGMENT_MAGIC.len() as u64;
    }
    file.seek(SeekFrom::End(0)).map_err(context())?;
    file.sync_data().map_err(context())?;
    Ok((file, len))
}

/// Creates segment `number`, with its header on disk (the directory entry is the
/// caller's to sync); returns it with its length.
fn create_segment(dir: &DataDir, number: u64) -> Result<(File, u64), DurabilityError> {
    let path = dir.segment(number);
    let context = || DurabilityError::io("create log segment", &path);
    let mut file = private_file()
        .create_new(true)
        .open(&path)
        .map_err(context())?;
    file.write_all(SEGMENT_MAGIC).map_err(context())?;
    file.sync_data().map_err(context())?;
    Ok((file, SEGMENT_MAGIC.len() as u64))
}

fn remove_segment(dir: &DataDir, number: u64) -> Result<(), DurabilityError> {
    let path = dir.segment(number);
    fs::remove_file(&path).map_err(DurabilityError::io("remove", &path))
}
