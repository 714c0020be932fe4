//! Deployed operators and registered applications, as the scheduler sees them.
//!
//! Both live in the storage cluster (`dida_storage_client::registry`): the scheduler
//! keeps a copy of each index, read when it starts and every refresh period, and
//! changes it only through the registry's compare-and-swap, serialising its own
//! changes so that they never race each other. A submit resolves its operator names
//! against that copy with no I/O: a deployed name becomes the digest of the component
//! it runs now, fixed in the execution's request, so a redeploy afterwards does not
//! change what the execution runs.
//!
//! A component is validated before anything is stored, by compiling it with the
//! runtime the workers use, in a child process within the budget of untrusted
//! compilation (`dida_worker::bounded`): a non-component, a component of another
//! world (imports the worker does not provide, no `run` export of the right type),
//! one over [`MAX_OPERATOR_FILE_BYTES`] or one too expensive to compile is refused
//! with the reason, and nothing changes. So is a built-in operator's name
//! (`EchoOperator`): deploying over it would change every application using it.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use dida_core::app::check_operator_name;
use dida_core::limits::MAX_OPERATOR_FILE_BYTES;
use dida_storage_client::registry::{
    now_unix_ms, AppEntry, Deployment, Index, Registry, RegistryError, APP_INDEX_KEY,
    OPERATOR_INDEX_KEY,
};
use dida_storage_client::StorageClient;
use dida_worker::bounded::{self, CompileError};
use dida_worker::runtime::{OperatorRuntime, SandboxLimits};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::Status;
use tracing::{debug, info};

/// One index of the registry, cached.
#[derive(Debug)]
pub(crate) struct CachedIndex<T> {
    key: &'static str,
    storage: Option<Arc<StorageClient>>,
    /// The index as last read or written; `None` until read once.
    cached: RwLock<Option<Index<T>>>,
    /// Serialises this scheduler's changes.
    changes: tokio::sync::Mutex<()>,
}

impl<T: Clone + Serialize + DeserializeOwned> CachedIndex<T> {
    fn new(key: &'static str, storage: Option<Arc<StorageClient>>) -> Self {
        Self {
            key,
            storage,
            cached: RwLock::new(None),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    fn storage(&self) -> Result<&StorageClient, Status> {
        self.storage.as_deref().ok_or_else(|| {
            Status::failed_precondition(
                "this scheduler was started without --storage: deployed operators and \
                 registered applications live in the storage cluster",
            )
        })
    }

    /// Reads the index again from the storage cluster.
    pub async fn refresh(&self) -> Result<(), Status> {
        let storage = self.storage()?;
        let (index, _) = Registry::new(storage)
            .index::<T>(self.key)
            .await
            .map_err(|e| status_of(self.key, e))?;
        *self.cached.write().expect("index lock poisoned") = Some(index);
        Ok(())
    }

    /// The index: the cached copy, or read now if it never was. Without storage, the
    /// index is empty.
    pub async fn current(&self) -> Result<Index<T>, Status> {
        if self.storage.is_none() {
            return Ok(Index::new());
        }
        if let Some(index) = self.cached.read().expect("index lock poisoned").clone() {
            return Ok(index);
        }
        self.refresh().await?;
        Ok(self
            .cached
            .read()
            .expect("index lock poisoned")
            .clone()
            .unwrap_or_default())
    }

    /// Changes the index in storage with `change`, then the cached copy.
    pub async fn update<R>(
        &self,
        change: impl FnMut(&mut Index<T>) -> Result<R, RegistryError>,
    ) -> Result<R, Status> {
        let storage = self.storage()?;
        let _serialised = self.changes.lock().await;
        let (index, result) = Registry::new(storage)
            .update_index(self.key, change)
            .await
            .map_err(|e| status_of(self.key, e))?;
        *self.cached.write().expect("index lock poisoned") = Some(index);
        Ok(result)
    }

    /// Reads the index again every `period`, for as long as the scheduler runs, so
    /// that it follows changes made elsewhere (another scheduler, a restore).
    pub async fn refresh_forever(self: Arc<Self>, period: Duration) {
        if self.storage.is_none() {
            return;
        }
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(status) = self.refresh().await {
                debug!(index = self.key, error = %status.message(), "index not refreshed");
            }
        }
    }
}

/// The operators deployed to the cluster and the applications registered with it.
#[derive(Debug)]
pub(crate) struct ClusterRegistry {
    pub operators: Arc<CachedIndex<Deployment>>,
    pub apps: Arc<CachedIndex<AppEntry>>,
    /// The runtime components are validated with, made on the first deploy.
    validator: OnceLock<Result<OperatorRuntime, String>>,
    /// The names of the built-in operators, which cannot be deployed over.
    builtins: BTreeSet<String>,
    /// Where validation keeps what it compiles and finds what was compiled before.
    compile_cache: Option<std::path::PathBuf>,
    /// Held from check to change by the two changes that depend on each other:
    /// registering an application (its operators must be runnable) and removing an
    /// operator (no registered application may use it). Without it, each could
    /// pass its check before the other's change and leave an application that
    /// cannot run.
    pub dependencies: tokio::sync::Mutex<()>,
}

impl ClusterRegistry {
    /// The registry kept in `storage`'s cluster (none: nothing can be deployed or
    /// registered, and every operator is the workers' own), refusing to deploy
    /// over the names in `builtins`.
    pub fn new(
        storage: Option<Arc<StorageClient>>,
        builtins: BTreeSet<String>,
        compile_cache: Option<std::path::PathBuf>,
    ) -> Self {
        Self {
            operators: Arc::new(CachedIndex::new(OPERATOR_INDEX_KEY, storage.clone())),
            apps: Arc::new(CachedIndex::new(APP_INDEX_KEY, storage)),
            validator: OnceLock::new(),
            builtins,
            compile_cache,
            dependencies: tokio::sync::Mutex::new(()),
        }
    }

    /// For each operator name, the digest of the deployed component it runs now, or
    /// an empty string when it is not deployed (a worker's own file or built-in).
    pub async fn resolve(&self, operators: &[String]) -> Result<Vec<String>, Status> {
        let index = self.operators.current().await?;
        Ok(operators
            .iter()
            .map(|name| {
                index
                    .get(name)
                    .map(|d| d.digest.clone())
                    .unwrap_or_default()
            })
            .collect())
    }

    /// Validates `component` and deploys it as `name`; returns the deployment and
    /// the digest the name ran before, if any.
    pub async fn deploy(
        &self,
        name: &str,
        component: Vec<u8>,
    ) -> Result<(Deployment, Option<String>), Status> {
        check_operator_name(name).map_err(Status::invalid_argument)?;
        self.check_not_builtin(name, "deployed over")?;
        self.validate(component.clone()).await?;
        let storage = self.operators.storage()?;
        let bytes = component.len() as u64;
        let digest = Registry::new(storage)
            .put_blob(&component)
            .await
            .map_err(|e| status_of("the component", e))?;
        let deployment = Deployment {
            digest,
            bytes,
            deployed_unix_ms: now_unix_ms(),
        };
        let replaced = self
            .operators
            .update(|index| {
                Ok(index
                    .insert(name.to_string(), deployment.clone())
                    .map(|old| old.digest))
            })
            .await?;
        info!(operator = %name, digest = %deployment.digest, bytes, "operator deployed");
        Ok((deployment, replaced))
    }

    /// Stops deploying `name`; returns what it ran. A built-in's name is refused,
    /// unless something is deployed under it (from before built-ins were
    /// protected): removing that restores the built-in. So is the name of an
    /// operator a registered application uses (see [`crate::apps`]): the
    /// application would fail on every invocation.
    pub async fn remove(&self, name: &str) -> Result<Deployment, Status> {
        check_operator_name(name).map_err(Status::invalid_argument)?;
        let _dependencies = self.dependencies.lock().await;
        if !self.operators.current().await?.contains_key(name) {
            self.check_not_builtin(name, "removed")?;
        }
        if !self.builtins.contains(name) {
            // Read afresh: an application registered through another scheduler
            // since the last refresh must count too.
            self.apps.refresh().await?;
            let users: Vec<String> = self
                .apps
                .current()
                .await?
                .into_iter()
                .filter(|(_, app)| app.operators.iter().any(|o| o == name))
                .map(|(app, _)| app)
                .collect();
            if !users.is_empty() {
                return Err(Status::failed_precondition(format!(
                    "operator {name} is used by registered application(s) {}: remove \
                     them first (dida app remove NAME), or deploy a new version over it",
                    users.join(", ")
                )));
            }
        }
        let removed = self
            .operators
            .update(|index| Ok(index.remove(name)))
            .await?
            .ok_or_else(|| Status::not_found(format!("no deployed operator {name}")))?;
        info!(operator = %name, digest = %removed.digest, "operator removed");
        Ok(removed)
    }

    /// Checks that `component` is an operator the workers can run, by compiling it
    /// with their runtime within the budget of untrusted compilation
    /// ([`dida_worker::bounded`]: a child process limited in memory, CPU and time, a
    /// few at once).
    async fn validate(&self, component: Vec<u8>) -> Result<(), Status> {
        if component.is_empty() {
            return Err(Status::invalid_argument("the component is empty"));
        }
        if component.len() as u64 > MAX_OPERATOR_FILE_BYTES {
            return Err(Status::invalid_argument(format!(
                "the component is {} bytes, larger than the limit of \
                 {MAX_OPERATOR_FILE_BYTES} bytes for an operator",
                component.len()
            )));
        }
        let runtime = self
            .validator
            .get_or_init(|| {
                let runtime = OperatorRuntime::new(SandboxLimits {
                    concurrent_invocations: 1,
                    ..SandboxLimits::default()
                })
                .map_err(|e| format!("{e:#}"))?;
                Ok(match &self.compile_cache {
                    Some(dir) => runtime.with_compiled_cache(dir),
                    None => runtime,
                })
            })
            .clone()
            .map_err(|e| Status::internal(format!("cannot make a runtime to validate: {e}")))?;
        bounded::check(&runtime, component)
            .await
            .map_err(|error| match error {
                CompileError::Invalid(reason) => Status::invalid_argument(format!(
                    "not a dida operator: {}",
                    // wasmparser's messages span lines; a status message reads better flat.
                    reason.split_whitespace().collect::<Vec<_>>().join(" ")
                )),
                CompileError::OverBudget(_) => {
                    Status::resource_exhausted(format!("the component was refused: {error}"))
                }
                CompileError::Busy => Status::resource_exhausted(error.to_string()),
                CompileError::Internal(_) => Status::internal(error.to_string()),
            })
    }

    /// Refuses `name` when it is a built-in operator's: a deployment would replace
    /// the sample every application and benchmark relies on (`EchoOperator`) for
    /// every execution of the cluster.
    fn check_not_builtin(&self, name: &str, what: &str) -> Result<(), Status> {
        if self.builtins.contains(name) {
            return Err(Status::invalid_argument(format!(
                "{name} is a built-in operator: it cannot be {what}; choose another name"
            )));
        }
        Ok(())
    }
}

/// The status a registry failure answers with.
fn status_of(what: &str, error: RegistryError) -> Status {
    match error {
        RegistryError::Storage(e) => {
            Status::unavailable(format!("the storage cluster failed on {what}: {e}"))
        }
        RegistryError::Corrupt(e) => Status::data_loss(e),
        RegistryError::MissingBlob(digest) => {
            Status::not_found(format!("no component with digest {digest}"))
        }
        RegistryError::Refused(e) => Status::resource_exhausted(e),
    }
}
