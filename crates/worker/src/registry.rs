//! Finding operators by class name, compiling each once, and noticing replaced files.
//!
//! An operator `Name` is `<dir>/Name.wasm` when the worker has an operators directory
//! holding that file, otherwise the built-in of that name (the sample operators
//! embedded in `dida`). A file thus takes precedence over a built-in, so users can
//! replace any sample. Compiled operators are cached; a cached file is checked (size,
//! modification time, inode) on every use, so a file replaced on disk is recompiled on
//! its next use, without restarting the worker.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use dida_core::app::check_operator_name;

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
    #[error("operator {name} ({source_desc}) cannot be loaded: {message}")]
    Load {
        /// The operator.
        name: String,
        /// Built-in or file path.
        source_desc: String,
        /// What went wrong.
        message: String,
    },
}

/// Identity of an operator's code, to notice when a file changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Builtin,
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
            Source::File { path, .. } => path.display().to_string(),
        }
    }
}

/// The operators a worker can run.
pub struct OperatorRegistry {
    runtime: OperatorRuntime,
    builtins: BTreeMap<String, &'static [u8]>,
    dir: Option<PathBuf>,
    cache: Mutex<HashMap<String, (Source, OperatorPre)>>,
    compiling: tokio::sync::Mutex<()>,
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
            cache: Mutex::new(HashMap::new()),
            compiling: tokio::sync::Mutex::new(()),
        }
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
    /// if needed.
    pub async fn get(&self, name: &str) -> Result<OperatorPre, RegistryError> {
        check_operator_name(name).map_err(RegistryError::InvalidName)?;
        let source = self.locate(name)?;
        if let Some(pre) = self.cached(name, &source) {
            return Ok(pre);
        }
        // One compilation at a time: compiling is CPU-bound, and two requests for the
        // same new operator should compile it once.
        let _compiling = self.compiling.lock().await;
        if let Some(pre) = self.cached(name, &source) {
            return Ok(pre);
        }
        let load_error = |message: String| RegistryError::Load {
            name: name.to_string(),
            source_desc: source.describe(),
            message,
        };
        let wasm: Vec<u8> = match &source {
            Source::Builtin => self.builtins[name].to_vec(),
            Source::File { path, .. } => tokio::fs::read(path)
                .await
                .map_err(|e| load_error(e.to_string()))?,
        };
        let runtime = self.runtime.clone();
        let pre = tokio::task::spawn_blocking(move || runtime.compile(&wasm))
            .await
            .map_err(|e| load_error(format!("compilation task failed: {e}")))?
            .map_err(|e| load_error(format!("{e:#}")))?;
        tracing::info!(operator = name, source = %source.describe(), "operator compiled");
        self.cache
            .lock()
            .expect("operator cache lock poisoned")
            .insert(name.to_string(), (source, pre.clone()));
        Ok(pre)
    }

    fn cached(&self, name: &str, source: &Source) -> Option<OperatorPre> {
        let cache = self.cache.lock().expect("operator cache lock poisoned");
        cache
            .get(name)
            .filter(|(cached, _)| cached == source)
            .map(|(_, pre)| pre.clone())
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
