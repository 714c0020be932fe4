//! `ListRecords`: every record a node holds, streamed in pages of bounded size.
//!
//! A listing is the one request whose answer grows with the node. Sent as one
//! message, 100k records of 1 KiB overflowed the transport's message limit, and a
//! few dozen listings in parallel held gigabytes and starved the node's failure
//! detector until its peers declared it failed. So a listing:
//!
//! - snapshots only the key names, then reads and sends the records a page at a
//!   time (each page at most [`LIST_PAGE_BYTES`] plus one record), so the node
//!   holds about one page per listing and no message nears the transport's limit;
//! - waits for its reader: pages go through a one-page queue, and a reader that takes
//!   no page for [`READER_STALL_LIMIT`] ends its listing;
//! - runs only [`MAX_CONCURRENT_LISTINGS`] at a time per node. A listing that cannot
//!   start within [`LISTING_QUEUE_WAIT`] is refused with `RESOURCE_EXHAUSTED`, so
//!   callers learn the node is busy instead of piling up work.
//!
//! Records of a key are read under the store's lock of that key's shard, one key at
//! a time, so the listing is not an atomic snapshot of the node: a key written while
//! it runs shows either version. Listing is for inspection, not for transactions.

use std::sync::Arc;
use std::time::Duration;

use dida_proto::convert::record_to_wire;
use dida_proto::storage::ListRecordsReply;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::node_core::Node;

/// Records per page, by size: far below the transport's message limit, large enough
/// that a page's overhead is negligible.
pub const LIST_PAGE_BYTES: usize = 256 * 1024;

/// Listings a node serves at once. Each costs a page of memory and the CPU to encode
/// it; more at once would not list faster, only take more from the node's own work.
pub const MAX_CONCURRENT_LISTINGS: usize = 4;

/// How long a listing waits for one of the [`MAX_CONCURRENT_LISTINGS`] slots before
/// it is refused: well within clients' deadlines (5 s by default), so a caller hears
/// "busy" rather than timing out.
pub const LISTING_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// How long a listing waits for its reader to take a page before giving up, so a
/// reader that stopped reading does not hold a slot for ever.
pub const READER_STALL_LIMIT: Duration = Duration::from_secs(30);

/// The wire size a record adds to a page, near enough to bound pages.
fn record_bytes(key: &str, value: &str) -> usize {
    key.len() + value.len() + 24
}

/// The slots of a node's concurrent listings, shared by its API's clones.
#[derive(Debug, Clone)]
pub(crate) struct Listings {
    slots: Arc<Semaphore>,
}

impl Default for Listings {
    fn default() -> Self {
        Self {
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_LISTINGS)),
        }
    }
}

impl Listings {
    /// Starts streaming every record of `node` in pages, or refuses: the node is
    /// fenced, or too many listings are running. The stream ends early if `stop`
    /// fires (the node is shutting down) or the reader stalls.
    pub async fn start(
        &self,
        node: Arc<Node>,
        mut stop: watch::Receiver<()>,
    ) -> Result<ReceiverStream<Result<ListRecordsReply, Status>>, Status> {
        node.peering.check_serving()?;
        let slot = tokio::time::timeout(LISTING_QUEUE_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                Status::resource_exhausted(format!(
                    "storage node {} is already serving {MAX_CONCURRENT_LISTINGS} listings and \
                     none ended within {LISTING_QUEUE_WAIT:?}; try again later",
                    node.id()
                ))
            })?
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        let keys = node.store.sorted_keys();
        let (pages, reader) = mpsc::channel(1);
        tokio::spawn(async move {
            let _slot = slot;
            let mut page = Vec::new();
            let mut bytes = 0;
            for key in keys {
                for record in node.store.records_of(&key, |_| true) {
                    let size = record_bytes(&record.key, &record.value);
                    if !page.is_empty() && bytes + size > LIST_PAGE_BYTES {
                        let full = std::mem::take(&mut page);
                        if !send(&pages, full, &mut stop).await {
                            return;
                        }
                        bytes = 0;
                    }
                    bytes += size;
                    page.push(record_to_wire(&record));
                }
            }
            if !page.is_empty() {
                send(&pages, page, &mut stop).await;
            }
        });
        Ok(ReceiverStream::new(reader))
    }
}

/// Sends one page; false if the listing must end (reader gone or stalled, node
/// stopping).
async fn send(
    pages: &mpsc::Sender<Result<ListRecordsReply, Status>>,
    records: Vec<dida_proto::storage::Record>,
    stop: &mut watch::Receiver<()>,
) -> bool {
    let page = Ok(ListRecordsReply { records });
    tokio::select! {
        sent = tokio::time::timeout(READER_STALL_LIMIT, pages.send(page)) => {
            matches!(sent, Ok(Ok(())))
        }
        _ = stop.changed() => false,
    }
}
