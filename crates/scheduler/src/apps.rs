//! Registered applications: a name for a chain of operators.
//!
//! One set of operations behind both doors to them, the `Applications` gRPC service
//! (`dida app …`, `dida run NAME`) and the HTTP gateway's `/v1/apps` routes, so that
//! both check names, bounds and operators alike. The applications live in the
//! registry's `_dida/apps` index in the storage cluster (see [`crate::registry`]).
//!
//! **Invariant:** every operator of a registered application stays runnable. It is
//! checked when the application is registered, and [`ClusterRegistry::remove`]
//! refuses to remove a deployed operator that a registered application uses. Both
//! hold [`ClusterRegistry::dependencies`] from their check to their change, so a
//! registration and a removal cannot pass their checks at the same time.

use dida_proto::registry::RegisteredApp;
use dida_storage_client::registry::{now_unix_ms, AppEntry, RegistryError};
use tonic::Status;

use crate::registry::ClusterRegistry;
use crate::service::{check_chain, SchedulerService};

/// Longest application name: it is a URL path segment and an index key.
pub const MAX_REGISTERED_NAME_BYTES: usize = 128;

/// Most applications registered at once (the index is one storage value).
const MAX_APPS: usize = 1000;

/// Checks an application name: 1 to [`MAX_REGISTERED_NAME_BYTES`] letters, digits, `-`,
/// `_` or `.`, not starting with `.` (it is a URL path segment).
pub(crate) fn check_app_name(name: &str) -> Result<(), Status> {
    let valid = !name.is_empty()
        && name.len() <= MAX_REGISTERED_NAME_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "invalid application name {name:?}: use 1 to {MAX_REGISTERED_NAME_BYTES} letters, \
             digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

/// An application as the wire carries it.
pub(crate) fn registered(name: &str, entry: &AppEntry) -> RegisteredApp {
    RegisteredApp {
        name: name.to_string(),
        operators: entry.operators.clone(),
        registered_unix_ms: entry.registered_unix_ms,
    }
}

/// Registers `operators` as application `name`, replacing what the name held;
/// returns the entry and whether it replaced one. Every operator must be runnable
/// now (deployed, or run by every worker).
pub(crate) async fn register(
    service: &SchedulerService,
    name: &str,
    operators: Vec<String>,
) -> Result<(AppEntry, bool), Status> {
    check_app_name(name)?;
    check_chain(&operators)?;
    let registry = &service.state.registry;
    let _dependencies = registry.dependencies.lock().await;
    service.runnable(&operators).await?;
    let entry = AppEntry {
        operators,
        registered_unix_ms: now_unix_ms(),
    };
    let replaced = registry
        .apps
        .update(|index| {
            if !index.contains_key(name) && index.len() >= MAX_APPS {
                return Err(RegistryError::Refused(format!(
                    "{MAX_APPS} applications are registered already: remove one first"
                )));
            }
            Ok(index.insert(name.to_string(), entry.clone()).is_some())
        })
        .await?;
    Ok((entry, replaced))
}

/// Application `name`.
pub(crate) async fn get(registry: &ClusterRegistry, name: &str) -> Result<AppEntry, Status> {
    let apps = registry.apps.current().await?;
    apps.get(name).cloned().ok_or_else(|| unknown_app(name))
}

/// Every registered application, by name.
pub(crate) async fn list(registry: &ClusterRegistry) -> Result<Vec<(String, AppEntry)>, Status> {
    Ok(registry.apps.current().await?.into_iter().collect())
}

/// Unregisters application `name`; returns what it was.
pub(crate) async fn remove(registry: &ClusterRegistry, name: &str) -> Result<AppEntry, Status> {
    registry
        .apps
        .update(|index| Ok(index.remove(name)))
        .await?
        .ok_or_else(|| unknown_app(name))
}

/// The answer for a name no application is registered under.
pub(crate) fn unknown_app(name: &str) -> Status {
    Status::not_found(format!(
        "unknown application {name:?}: register it with `dida app register {name} FILE` \
         (or PUT /v1/apps/{name})"
    ))
}
