//! Compiled operators kept on disk, so a worker compiles a component once per machine
//! and engine, not once per start.
//!
//! Compiling is the dearest step of loading an operator, and it grows with the
//! component: a Rust operator compiles in a fraction of a second, a Python one (which
//! carries CPython) takes 15–30 s of CPU. Without this cache, every worker start, every
//! worker on the machine and every restarted test cluster paid it again.
//!
//! An entry is the artifact wasmtime serialised (`Component::serialize`), named
//! `<sha256 of the component>-<engine hash>.cwasm`: the digest names the code, the
//! engine hash ([`wasmtime::Engine::precompile_compatibility_hash`]: wasmtime's version
//! and every setting that changes the code, the sandbox's memory limit among them)
//! names what it was compiled for, so a worker with other limits or another dida
//! version never picks up a stale entry. wasmtime checks the same again when it loads
//! one, and an entry it refuses is deleted and compiled afresh.
//!
//! **Trust.** Loading an entry runs its machine code as is, so the directory must be
//! as trusted as the `dida` executable: [`CompiledCache::open`] creates it with mode
//! 0700 and refuses one that belongs to another user or that others may write to.
//! Entries are written to a temporary file and renamed into place, so a reader (another
//! worker on the machine) sees a whole entry or none. A cache that cannot be used is a
//! warning, never an error: the worker compiles as if it had none.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use dida_storage_client::registry::digest_of;
use wasmtime::component::Component;
use wasmtime::Engine;

/// A directory of compiled operators for one engine configuration.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
    /// The engine's compatibility hash, in hex: the second half of every entry's name.
    engine: String,
}

impl CompiledCache {
    /// Opens (creating it, mode 0700) the cache directory `dir` for artifacts of
    /// `engine`. Refuses a directory that another user owns or that its group or
    /// others may write to, since whoever can write an entry runs code in the worker.
    pub fn open(dir: &Path, engine: &Engine) -> anyhow::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the compile cache {}", dir.display()))?;
        let metadata = fs::metadata(dir)
            .with_context(|| format!("cannot read the compile cache {}", dir.display()))?;
        let me = nix::unistd::geteuid().as_raw();
        anyhow::ensure!(
            metadata.uid() == me,
            "the compile cache {} belongs to user {}, not to this process's user {me}",
            dir.display(),
            metadata.uid()
        );
        anyhow::ensure!(
            metadata.permissions().mode() & 0o022 == 0,
            "the compile cache {} may be written by its group or by others (mode {:o}); \
             whoever writes there runs code in the worker",
            dir.display(),
            metadata.permissions().mode() & 0o7777
        );
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine: format!("{:016x}", hasher.finish()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artifact of the component `wasm` is (or goes).
    pub fn entry_of(&self, wasm: &[u8]) -> PathBuf {
        self.entry(&digest_of(wasm))
    }

    /// Where the artifact of the component whose SHA-256 is `digest` (hex) is.
    pub fn entry(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine))
    }

    /// The compiled component at `entry`, if there is one wasmtime accepts. An
    /// entry it refuses (truncated, or of another wasmtime) is deleted.
    pub fn load(&self, engine: &Engine, entry: &Path) -> Option<Component> {
        if !entry.is_file() {
            return None;
        }
        // SAFETY: `deserialize_file` runs the machine code in the file as is. The file
        // is in a directory `open` checked is this user's own and writable by no one
        // else, named after its component's digest, and written only by `store`
        // from wasmtime's own compiler output (see the module documentation).
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, entry) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(entry = %entry.display(), %error,
                    "dropping a compiled operator the engine refuses");
                let _ = fs::remove_file(entry);
                None
            }
        }
    }

    /// Stores `artifact` at `entry`, atomically. A failure is logged, not returned:
    /// the operator is compiled already, only the next start pays again.
    pub fn store(&self, entry: &Path, artifact: &[u8]) {
        if let Err(error) = self.try_store(entry, artifact) {
            tracing::warn!(entry = %entry.display(), error = format!("{error:#}"),
                "cannot keep a compiled operator on disk");
        }
    }

    fn try_store(&self, entry: &Path, artifact: &[u8]) -> anyhow::Result<()> {
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .context("an entry has a file name")?;
        let temporary = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        let written = file.write_all(artifact).and_then(|()| file.sync_all());
        if let Err(error) = written.and_then(|()| fs::rename(&temporary, entry)) {
            let _ = fs::remove_file(&temporary);
            return Err(error).with_context(|| format!("cannot write {}", entry.display()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_directory_others_may_write() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let engine = Engine::default();
        let error = CompiledCache::open(&open, &engine).unwrap_err().to_string();
        assert!(
            error.contains("may be written by its group or by others"),
            "{error}"
        );
        let private = root.path().join("a/b");
        let cache = CompiledCache::open(&private, &engine).unwrap();
        let mode = fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(cache.entry_of(b"x").starts_with(&private));
    }

    #[test]
    fn an_entry_the_engine_refuses_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = CompiledCache::open(root.path(), &engine).unwrap();
        let entry = cache.entry_of(b"component");
        cache.store(&entry, b"not an artifact");
        assert!(entry.is_file());
        assert!(cache.load(&engine, &entry).is_none());
        assert!(!entry.exists(), "a refused entry is deleted");
    }
}
