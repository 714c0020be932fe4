//! Where dida keeps per-user files that are worth keeping but can be made again:
//! compiled operators (a worker's `--compile-cache`) and the tools `dida build`
//! installs. One definition, so a worker and `dida build` on the same machine agree.

use std::path::PathBuf;

/// `$XDG_CACHE_HOME/dida`, else `$HOME/.cache/dida`; `None` without either.
pub fn user_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|dir| !dir.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("dida"))
}

/// The default `--compile-cache` of a worker and of the scheduler:
/// `<user cache>/compiled`.
pub fn default_compile_cache() -> Option<PathBuf> {
    user_cache_dir().map(|dir| dir.join("compiled"))
}

/// The directory a `--compile-cache` value names: `off` none, nothing its default.
pub fn compile_cache_dir(flag: Option<&str>) -> Option<PathBuf> {
    match flag {
        Some("off") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => default_compile_cache(),
    }
}
