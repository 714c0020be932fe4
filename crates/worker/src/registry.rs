//! Finding operators by class name, compiling each once, and noticing replaced files.
//!
//! An operator comes from one of three places, in this order of precedence:
//!
//! 1. **Deployed** (`dida operator deploy`): the scheduler fixes, when an execution
//!    is submitted, the SHA-256 digest of the component each deployed name runs, and
//!    the worker fetches that blob from the storage cluster (see
//!    `dida_storage_client::registry`), checks its digest and compiles it on first
//!    use, within the budget of untrusted compilation ([`crate::bounded`]: a child
//!    process). Compiled deployed operators are cached by digest — content, not
//!    name — so a redeploy never changes what an execution submitted earlier runs,
//!    and at most [`DEPLOYED_CACHE_ENTRIES`] stay compiled (least recently used go
//!    first). Files and built-ins are the cluster administrator's, and are compiled
//!    in the worker's own process.
//! 2. **A file**: `<dir>/Name.wasm` when the worker has an operators directory
//!    holding that file.
//! 3. **A built-in** of that name (the sample operators embedded in `dida`).
//!
//! A file thus takes precedence over a built-in, so users can replace any sample. Compiled operators are cached; a cached file is checked (size,
//! modification time, inode) on every use, so a file replaced on disk is recompiled on
//! its next use, without restarting the worker.
//!
//! Only a regular file of at most [`MAX_OPERATOR_FILE_BYTES`] is read: a FIFO, a
//! device or a directory named `<ClassName>.wasm` is refused with a clear error before
//! it is opened (opening a FIFO would block until someone writes to it), and the file
//! is opened without blocking and checked again once open, in case it was swapped
//! meanwhile. A compilation runs in a task of its own, so a caller that stops waiting
//! (its wall-time limit passed) leaves the result cached for the next one.

use crate::metrics::{count_load, LoadCounter};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use dida_core::app::check_operator_name;
use dida_core::limits::MAX_OPERATOR_FILE_BYTES;
use dida_storage_client::registry::{check_digest, Registry};
use dida_storage_client::StorageClient;
use nix::fcntl::OFlag;

use crate::runtime::{OperatorPre, OperatorRuntime};

/// Why an operator cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The name is not a valid class name.
    #[error("{0}")]
    InvalidName(String),
    /// No file and no built-in has that name.
    #[error(
        "unknown operator {name:?}: no {name}.wasm in {dir} and no built-in operator of that name"
    )]
    Unknown {
        /// The name asked for.
        name: String,
        /// Where files were looked for.
        dir: String,
    },
    /// The file or built-in is not a usable operator component.
    #[error("operator {name} ({source_desc}) cannot be loaded: {cause}")]
    Load {
        /// The operator.
        name: String,
        /// Built-in or file path.
        source_desc: String,
        /// What went wrong (boxed: the other variants are small).
        #[source]
        cause: Box<LoadError>,
    },
}

/// Why an operator could not be loaded: the cause of [`RegistryError::Load`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its file cannot be used.
    #[error(transparent)]
    File(#[from] OperatorFileError),
    /// The binary has no built-in of that name (a build without the fixtures).
    #[error("the built-in is missing")]
    MissingBuiltin,
    /// The bytes are not a valid component of the `dida:operator` world.
    #[error("{0:#}")]
    Compile(anyhow::Error),
    /// A deployed component could not be compiled within its budget.
    #[error(transparent)]
    Bounded(#[from] crate::bounded::CompileError),
    /// The digest an assignment names is malformed.
    #[error("{0}")]
    BadDigest(String),
    /// This worker has no storage cluster to fetch deployed operators from.
    #[error("this worker has no storage cluster to fetch deployed operators from")]
    NoStorage,
    /// The deployed component could not be fetched from the storage cluster.
    #[error("cannot fetch it: {0}")]
    Fetch(#[source] dida_storage_client::registry::RegistryError),
    /// The task that compiles it failed (panicked or was cancelled).
    #[error("compilation task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why an operator file cannot be used ([`read_operator_file`]).
#[derive(Debug, thiserror::Error)]
pub enum OperatorFileError {
    /// It could not be looked up, opened or read.
    #[error("cannot {doing} it: {source}")]
    Io {
        /// `read` or `open`.
        doing: &'static str,
        /// What the system said.
        source: std::io::Error,
    },
    /// It is not a regular file (a FIFO would block the reader forever).
    #[error("it is {what}; an operator must be a regular .wasm file")]
    NotRegular {
        /// What it is: `a directory`, `a FIFO (named pipe)`, …
        what: &'static str,
    },
    /// It is larger than [`MAX_OPERATOR_FILE_BYTES`].
    #[error(
        "it is {len} bytes, larger than the limit of {MAX_OPERATOR_FILE_BYTES} bytes for an \
         operator file"
    )]
    TooLarge {
        /// Its size.
        len: u64,
    },
}

impl OperatorFileError {
    fn io(doing: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| OperatorFileError::Io { doing, source }
    }
}

/// Deployed operators kept compiled at most: each holds its compiled code (a few
/// MiB), and a long-running cluster may see many redeploys.
pub const DEPLOYED_CACHE_ENTRIES: usize = 64;

/// Identity of an operator's code, to notice when a file changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Builtin,
    /// A deployed component, by digest.
    Deployed(String),
    File {
        path: PathBuf,
        len: u64,
        modified: Option<SystemTime>,
        inode: u64,
    },
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Builtin => "built-in".to_string(),
            Source::Deployed(digest) => format!("deployed, sha256 {}", &digest[..12]),
            Source::File { path, .. } => path.display().to_string(),
        }
    }
}

/// Compiled operators by class name, with the source each was compiled from.
type Cache = Mutex<HashMap<String, (Source, OperatorPre)>>;

/// Compiled deployed operators by digest, with when each was last used (a counter).
#[derive(Default)]
struct DeployedCache {
    entries: HashMap<String, (OperatorPre, u64)>,
    uses: u64,
}

impl DeployedCache {
    fn get(&mut self, digest: &str) -> Option<OperatorPre> {
        self.uses += 1;
        let uses = self.uses;
        self.entries.get_mut(digest).map(|(pre, used)| {
            *used = uses;
            pre.clone()
        })
    }

    fn insert(&mut self, digest: String, pre: OperatorPre) {
        if self.entries.len() >= DEPLOYED_CACHE_ENTRIES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(digest, _)| digest.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.uses += 1;
        self.entries.insert(digest, (pre, self.uses));
    }
}

/// The operators a worker can run.
pub struct OperatorRegistry {
    runtime: OperatorRuntime,
    builtins: BTreeMap<String, &'static [u8]>,
    dir: Option<PathBuf>,
    cache: Arc<Cache>,
    /// Where deployed operators are fetched from (none: deployed operators are
    /// refused).
    storage: Option<Arc<StorageClient>>,
    deployed: Arc<Mutex<DeployedCache>>,
    compiling: Arc<tokio::sync::Mutex<()>>,
    /// Loads by compile-cache outcome (the `worker_operator_loads_total` metric).
    loads: LoadCounter,
}

impl std::fmt::Debug for OperatorRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorRegistry")
            .field("builtins", &self.builtins.keys().collect::<Vec<_>>())
            .field("dir", &self.dir)
            .finish()
    }
}

impl OperatorRegistry {
    /// A registry of `builtins` (name → component bytes) and of the `.wasm` files in
    /// `dir`, if given.
    pub fn new(
        runtime: OperatorRuntime,
        builtins: BTreeMap<String, &'static [u8]>,
        dir: Option<PathBuf>,
    ) -> Self {
        Self {
            runtime,
            builtins,
            dir,
            cache: Arc::new(Mutex::new(HashMap::new())),
            storage: None,
            deployed: Arc::new(Mutex::new(DeployedCache::default())),
            compiling: Arc::new(tokio::sync::Mutex::new(())),
            loads: LoadCounter::default(),
        }
    }

    /// Counts every load into `loads`, by whether the operator was compiled already.
    pub(crate) fn counting_loads(mut self, loads: LoadCounter) -> Self {
        self.loads = loads;
        self
    }

    /// Fetches deployed operators from `storage`'s cluster.
    pub fn with_deployed_from(mut self, storage: Arc<StorageClient>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The operator an assignment names: the deployed component `digest` when it is
    /// not empty, else the worker's own file or built-in `name`.
    pub async fn get_assigned(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<OperatorPre, RegistryError> {
        if digest.is_empty() {
            self.get(name).await
        } else {
            self.get_deployed(name, digest).await
        }
    }

    /// The deployed operator `name` whose component has SHA-256 `digest`, fetched
    /// from the storage cluster and compiled on first use. Fetching and compiling run
    /// in a task of their own, like [`Self::get`].
    pub async fn get_deployed(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<OperatorPre, RegistryError> {
        check_operator_name(name).map_err(RegistryError::InvalidName)?;
        let source = Source::Deployed(digest.to_string());
        let load_error = |cause: LoadError| RegistryError::Load {
            name: name.to_string(),
            source_desc: source.describe(),
            cause: Box::new(cause),
        };
        check_digest(digest).map_err(|e| load_error(LoadError::BadDigest(e)))?;
        let found = self
            .deployed
            .lock()
            .expect("deployed cache lock poisoned")
            .get(digest);
        count_load(&self.loads, found.is_some());
        if let Some(pre) = found {
            return Ok(pre);
        }
        let storage = self
            .storage
            .clone()
            .ok_or_else(|| load_error(LoadError::NoStorage))?;
        let task = tokio::spawn(fetch_and_compile(
            self.runtime.clone(),
            storage,
            self.deployed.clone(),
            self.compiling.clone(),
            name.to_string(),
            digest.to_string(),
        ));
        task.await
            .map_err(|e| load_error(e.into()))?
            .map_err(load_error)
    }

    /// The runtime operators are compiled for.
    pub fn runtime(&self) -> &OperatorRuntime {
        &self.runtime
    }

    /// Every operator name this worker can run now: built-ins and files.
    pub fn names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.builtins.keys().cloned().collect();
        if let Some(dir) = &self.dir {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "wasm") {
                        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                            if check_operator_name(stem).is_ok() {
                                names.insert(stem.to_string());
                            }
                        }
                    }
                }
            }
        }
        names.into_iter().collect()
    }

    /// The compiled operator `name`, compiling (or recompiling a changed file) first
    /// if needed. Reading and compiling run in a task of their own: if the caller
    /// stops waiting, the operator is still compiled and cached.
    pub async fn get(&self, name: &str) -> Result<OperatorPre, RegistryError> {
        check_operator_name(name).map_err(RegistryError::InvalidName)?;
        let source = self.locate(name)?;
        let found = cached(&self.cache, name, &source);
        count_load(&self.loads, found.is_some());
        if let Some(pre) = found {
            return Ok(pre);
        }
        let task = tokio::spawn(compile(
            self.runtime.clone(),
            self.cache.clone(),
            self.compiling.clone(),
            name.to_string(),
            source.clone(),
            self.builtins.get(name).copied(),
        ));
        task.await.map_err(|e| RegistryError::Load {
            name: name.to_string(),
            source_desc: source.describe(),
            cause: Box::new(e.into()),
        })?
    }

    fn locate(&self, name: &str) -> Result<Source, RegistryError> {
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{name}.wasm"));
            if let Ok(meta) = std::fs::metadata(&path) {
                return Ok(Source::File {
                    len: meta.len(),
                    modified: meta.modified().ok(),
                    inode: meta.ino(),
                    path,
                });
            }
        }
        if self.builtins.contains_key(name) {
            return Ok(Source::Builtin);
        }
        Err(RegistryError::Unknown {
            name: name.to_string(),
            dir: self.dir.as_deref().map_or_else(
                || "(no operators directory)".to_string(),
                |d: &Path| d.display().to_string(),
            ),
        })
    }
}

/// Fetches the deployed component `digest` from the storage cluster and compiles
/// it, one compilation at a time (see [`compile`]), and caches it by digest.
async fn fetch_and_compile(
    runtime: OperatorRuntime,
    storage: Arc<StorageClient>,
    deployed: Arc<Mutex<DeployedCache>>,
    compiling: Arc<tokio::sync::Mutex<()>>,
    name: String,
    digest: String,
) -> Result<OperatorPre, LoadError> {
    let _compiling = compiling.lock().await;
    if let Some(pre) = deployed
        .lock()
        .expect("deployed cache lock poisoned")
        .get(&digest)
    {
        return Ok(pre);
    }
    // Patience for a blob still travelling to the replicas is bounded by the
    // caller's wall-time limit (it stops waiting for this task then).
    let wasm = Registry::new(&storage)
        .get_blob(&digest, runtime.limits().wall_time)
        .await
        .map_err(LoadError::Fetch)?;
    // A deployed component came from a client: it is compiled within the budget of
    // untrusted compilation, in a child process.
    let pre = crate::bounded::compile(&runtime, wasm).await?;
    tracing::info!(operator = %name, %digest, "deployed operator compiled");
    deployed
        .lock()
        .expect("deployed cache lock poisoned")
        .insert(digest, pre.clone());
    Ok(pre)
}

/// Reads (a file) and compiles operator `name` from `source`, one compilation at a
/// time, and caches it: compiling is CPU-bound, and two requests for the same new
/// operator should compile it once.
async fn compile(
    runtime: OperatorRuntime,
    cache: Arc<Cache>,
    compiling: Arc<tokio::sync::Mutex<()>>,
    name: String,
    source: Source,
    builtin: Option<&'static [u8]>,
) -> Result<OperatorPre, RegistryError> {
    let _compiling = compiling.lock().await;
    if let Some(pre) = cached(&cache, &name, &source) {
        return Ok(pre);
    }
    let load_error = |cause: LoadError| RegistryError::Load {
        name: name.clone(),
        source_desc: source.describe(),
        cause: Box::new(cause),
    };
    let path = match &source {
        Source::Builtin | Source::Deployed(_) => None,
        Source::File { path, .. } => Some(path.clone()),
    };
    let pre = tokio::task::spawn_blocking(move || {
        let wasm = match (path, builtin) {
            (Some(path), _) => read_operator_file(&path)?,
            (None, Some(bytes)) => bytes.to_vec(),
            (None, None) => return Err(LoadError::MissingBuiltin),
        };
        runtime.compile(&wasm).map_err(LoadError::Compile)
    })
    .await
    .map_err(|e| load_error(e.into()))?
    .map_err(load_error)?;
    tracing::info!(operator = %name, source = %source.describe(), "operator compiled");
    cache
        .lock()
        .expect("operator cache lock poisoned")
        .insert(name, (source, pre.clone()));
    Ok(pre)
}

fn cached(cache: &Cache, name: &str, source: &Source) -> Option<OperatorPre> {
    let cache = cache.lock().expect("operator cache lock poisoned");
    cache
        .get(name)
        .filter(|(cached, _)| cached == source)
        .map(|(_, pre)| pre.clone())
}

/// Reads an operator file, refusing anything but a regular file of at most
/// [`MAX_OPERATOR_FILE_BYTES`] without blocking (see the module documentation).
pub fn read_operator_file(path: &Path) -> Result<Vec<u8>, OperatorFileError> {
    let metadata = std::fs::metadata(path).map_err(OperatorFileError::io("read"))?;
    check_operator_file(metadata.file_type(), metadata.len())?;
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(OperatorFileError::io("open"))?;
    // It may have been replaced between the look-up and the open.
    let metadata = file.metadata().map_err(OperatorFileError::io("read"))?;
    check_operator_file(metadata.file_type(), metadata.len())?;
    let mut wasm = Vec::new();
    file.take(MAX_OPERATOR_FILE_BYTES + 1)
        .read_to_end(&mut wasm)
        .map_err(OperatorFileError::io("read"))?;
    check_operator_file(metadata.file_type(), wasm.len() as u64)?;
    Ok(wasm)
}

/// Refuses what is not a regular file, or is larger than
/// [`MAX_OPERATOR_FILE_BYTES`].
fn check_operator_file(kind: FileType, len: u64) -> Result<(), OperatorFileError> {
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(OperatorFileError::NotRegular { what });
    }
    if len > MAX_OPERATOR_FILE_BYTES {
        return Err(OperatorFileError::TooLarge { len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_under_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("Fifo.wasm");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let started = std::time::Instant::now();
        let error = read_operator_file(&fifo).unwrap_err();
        assert!(
            matches!(
                error,
                OperatorFileError::NotRegular {
                    what: "a FIFO (named pipe)"
                }
            ),
            "{error}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "no blocking"
        );

        let error = read_operator_file(dir.path()).unwrap_err();
        assert!(
            matches!(
                error,
                OperatorFileError::NotRegular {
                    what: "a directory"
                }
            ),
            "{error}"
        );
        let error = read_operator_file(Path::new("/dev/zero")).unwrap_err();
        assert!(
            matches!(
                error,
                OperatorFileError::NotRegular {
                    what: "a character device"
                }
            ),
            "{error}"
        );
        let error = read_operator_file(&dir.path().join("Absent.wasm")).unwrap_err();
        assert!(
            matches!(error, OperatorFileError::Io { doing: "read", .. }),
            "{error}"
        );

        let big = dir.path().join("Big.wasm");
        let file = File::create(&big).unwrap();
        file.set_len(MAX_OPERATOR_FILE_BYTES + 1).unwrap();
        let error = read_operator_file(&big).unwrap_err();
        assert!(
            matches!(error, OperatorFileError::TooLarge { len } if len == MAX_OPERATOR_FILE_BYTES + 1),
            "{error}"
        );

        let small = dir.path().join("Small.wasm");
        std::fs::write(&small, b"\0asm").unwrap();
        assert_eq!(read_operator_file(&small).unwrap(), b"\0asm");
    }
}
