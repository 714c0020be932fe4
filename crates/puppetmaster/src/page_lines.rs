//! What a line typed into the dashboard's page may read: only files inside the
//! session's folder (the script's), and their content is never shown to the page.
//!
//! The page runs lines for whoever reaches it, so before this check
//! `client x /etc/passwd` read any file the PuppetMaster could, and the parse error
//! quoted the file's first line back to the page. The terminal and the script keep
//! reading any path, with errors that quote the offending line.

use std::path::{Component, Path, PathBuf};

use dida_core::app::read_app_file;
use dida_core::datafile::read_data_file;
use dida_core::script::Command;

/// Why a line typed into the page may not run. Its text names the path as
/// written and a line number, never the file's content.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageRefusal {
    /// An absolute path, `..`, or a link leading out of the script's folder.
    #[error(
        "the page may only name files inside the script's folder, by a relative path \
         without `..`: {} is refused",
        path.display()
    )]
    Outside {
        /// The path as written.
        path: PathBuf,
    },
    /// The script's folder itself cannot be resolved.
    #[error("cannot resolve the script's folder: {0}")]
    NoFolder(#[source] std::io::Error),
    /// No such file in the folder.
    #[error("there is no file {} in the script's folder", path.display())]
    NoSuchFile {
        /// The path as written.
        path: PathBuf,
    },
    /// The file does not parse as what the line needs.
    #[error(
        "{} is not a readable, valid {what}{}; the page does not show file content: run \
         the line from the PuppetMaster's terminal to see why",
        path.display(),
        if *line > 0 { format!(" (at its line {line})") } else { String::new() }
    )]
    Invalid {
        /// The path as written.
        path: PathBuf,
        /// `application file` or `data file`.
        what: &'static str,
        /// The first bad line (0: the file as a whole).
        line: usize,
    },
}

/// Checks a line typed into the page before it runs: a `client` or `populate`
/// line must name, by a relative path without `..`, a file inside `base_dir`
/// (symbolic links followed), and the file must parse.
pub(crate) fn check(base_dir: &Path, command: &Command) -> Result<(), PageRefusal> {
    let (path, what) = match command {
        Command::Client { app, .. } => (app, "application file"),
        Command::Populate { data } => (data, "data file"),
        _ => return Ok(()),
    };
    let resolved = confined(base_dir, path)?;
    let bad_line = match command {
        Command::Client { .. } => read_app_file(&resolved).err().map(|e| e.line),
        _ => read_data_file(&resolved).err().map(|e| e.line),
    };
    match bad_line {
        None => Ok(()),
        Some(line) => Err(PageRefusal::Invalid {
            path: path.clone(),
            what,
            line,
        }),
    }
}

/// `path` resolved inside `base_dir`, or why it may not be read from the page.
fn confined(base_dir: &Path, path: &Path) -> Result<PathBuf, PageRefusal> {
    let outside = || PageRefusal::Outside {
        path: path.to_path_buf(),
    };
    if !path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(outside());
    }
    let base = base_dir.canonicalize().map_err(PageRefusal::NoFolder)?;
    let resolved = base
        .join(path)
        .canonicalize()
        .map_err(|_| PageRefusal::NoSuchFile {
            path: path.to_path_buf(),
        })?;
    if resolved.starts_with(&base) {
        Ok(resolved)
    } else {
        Err(outside())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dida_core::script::parse_line;

    fn command(line: &str) -> Command {
        parse_line(1, line).unwrap().unwrap()
    }

    #[test]
    fn page_lines_read_only_valid_files_of_the_scripts_folder() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("script");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("app.txt"), "operator EchoOperator 0\n").unwrap();
        std::fs::write(dir.join("data.txt"), "k,v\n").unwrap();
        std::fs::write(dir.join("secret.txt"), "top-secret line\n").unwrap();
        std::fs::write(outer.path().join("outside.txt"), "k,v\n").unwrap();
        std::os::unix::fs::symlink(outer.path().join("outside.txt"), dir.join("link.txt")).unwrap();

        assert!(check(&dir, &command("client x app.txt")).is_ok());
        assert!(check(&dir, &command("populate ./data.txt")).is_ok());
        assert!(check(&dir, &command("status")).is_ok());
        for line in [
            "client x /etc/passwd",
            "populate ../outside.txt",
            "populate link.txt",
            "client x missing.txt",
            "client x secret.txt",
            "populate secret.txt",
        ] {
            let refusal = check(&dir, &command(line)).expect_err(line);
            // What the page is shown never quotes the file.
            assert!(
                !refusal.to_string().contains("top-secret"),
                "{line}: {refusal}"
            );
        }
        for line in [
            "client x /etc/passwd",
            "populate ../outside.txt",
            "populate link.txt",
        ] {
            let refusal = check(&dir, &command(line)).unwrap_err();
            assert!(
                matches!(refusal, PageRefusal::Outside { .. }),
                "{line}: {refusal}"
            );
        }
        let refusal = check(&dir, &command("client x missing.txt")).unwrap_err();
        assert!(
            matches!(refusal, PageRefusal::NoSuchFile { .. }),
            "{refusal}"
        );
        let refusal = check(&dir, &command("client x secret.txt")).unwrap_err();
        assert!(
            matches!(
                refusal,
                PageRefusal::Invalid {
                    what: "application file",
                    line: 1,
                    ..
                }
            ),
            "{refusal}"
        );
    }
}
