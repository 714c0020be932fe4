//! The per-user cluster secret: credentials between nodes with no flag at all.
//!
//! Without TLS or an explicit `--cluster-token`, anyone who could run a process on
//! the machine could call a node's internal RPCs on loopback: declare its peers
//! failed, push forged records, report forged outcomes. Erlang's `~/.erlang.cookie`
//! closes that door for one user on one machine, and so does this: the first dida
//! process of a user creates a random secret in a file only that user can read
//! (`~/.dida/cluster-token`, or `--cluster-token-file`), and every later process of
//! the same user reads it and carries it on its calls between nodes. Another user
//! cannot read it, so cannot forge those calls; `--insecure` is the only way to
//! run without it.
//!
//! The file is created atomically (written to a private temporary file, then
//! hard-linked into place, which fails if another process won the race), so the
//! nodes of a cluster started at once all end with the same secret.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The cookie file's name under `~/.dida/`.
const FILE_NAME: &str = "cluster-token";

/// Random bytes in a new cookie (written as hex): 256 bits, beyond guessing.
const SECRET_BYTES: usize = 32;

/// The longest cookie file read: a secret is short, and a file the size of a disk
/// must not be read into memory.
const MAX_FILE_BYTES: u64 = 4096;

/// Where the cookie is by default: `$HOME/.dida/cluster-token`.
pub fn default_path() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .context(
            "HOME is not set, so there is no default cluster token file: give \
             --cluster-token-file FILE, --cluster-token, --tls-dir, or --insecure",
        )?;
    Ok(Path::new(&home).join(".dida").join(FILE_NAME))
}

/// The secret in `path`, created there first if the file does not exist.
///
/// Refuses a file that other users can read or write, or that another user owns:
/// its secret could be known to them (as ssh refuses a private key with such
/// modes).
pub fn load_or_create(path: &Path) -> anyhow::Result<String> {
    if !path.exists() {
        create(path)?;
    }
    read(path)
}

/// Reads and checks an existing cookie file.
fn read(path: &Path) -> anyhow::Result<String> {
    let shown = path.display();
    let metadata = fs::metadata(path).with_context(|| format!("cannot read {shown}"))?;
    if !metadata.is_file() {
        bail!("the cluster token file {shown} is not a regular file");
    }
    if metadata.mode() & 0o077 != 0 {
        bail!(
            "the cluster token file {shown} can be read or written by other users (mode \
             {:o}): run `chmod 600 {shown}`",
            metadata.mode() & 0o777
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    if metadata.uid() != me {
        bail!(
            "the cluster token file {shown} belongs to user {}, not to this user ({me})",
            metadata.uid()
        );
    }
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES).read_to_string(&mut text))
        .with_context(|| format!("cannot read the cluster token file {shown}"))?;
    let secret = text.trim();
    if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "the cluster token file {shown} must hold one line of printable ASCII \
             without spaces (delete it to have a new one made)"
        );
    }
    Ok(secret.to_string())
}

/// Creates the cookie file with a fresh secret, readable by this user only, unless
/// another process created it first (then its secret stands).
fn create(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {} for the cluster token", dir.display()))?;
    let secret = fresh_secret()?;
    // Named by the secret too, so threads of one process racing here differ.
    let tmp = dir.join(format!(
        ".{FILE_NAME}.{}.{}.tmp",
        std::process::id(),
        &secret[..16]
    ));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(format!("{secret}\n").as_bytes())?;
            file.sync_all()
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write the cluster token file {shown}"));
    }
    // Mode bits may have been narrowed by the umask, never widened; set them
    // exactly anyway, in case the umask is unusual.
    let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600));
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %shown, "created this user's cluster token");
            Ok(())
        }
        // Another process of this user created it meanwhile: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create the cluster token file {shown}")),
    }
}

/// A new random secret, in hex.
fn fresh_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("cannot read random bytes from /dev/urandom for the cluster token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_use_creates_a_private_secret_that_later_uses_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home/.dida/cluster-token");
        let first = load_or_create(&path).unwrap();
        assert_eq!(first.len(), SECRET_BYTES * 2);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(load_or_create(&path).unwrap(), first);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn processes_racing_to_create_it_agree_on_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster-token");
        let secrets: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| load_or_create(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(secrets.iter().all(|s| *s == secrets[0]), "{secrets:?}");
    }

    #[test]
    fn a_file_others_can_read_or_a_malformed_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster-token");
        fs::write(&path, "secret\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let refused = load_or_create(&path).unwrap_err().to_string();
        assert!(refused.contains("chmod 600"), "{refused}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_or_create(&path).unwrap(), "secret");
        fs::write(&path, "two words\n").unwrap();
        let refused = load_or_create(&path).unwrap_err().to_string();
        assert!(refused.contains("printable ASCII"), "{refused}");
    }
}
