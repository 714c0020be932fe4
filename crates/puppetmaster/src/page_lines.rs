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

/// Checks a line typed into the page before it runs: a `client` or `populate`
/// line must name, by a relative path without `..`, a file inside `base_dir`
/// (symbolic links followed), and the file must parse. Its refusal names the path
/// as written and a line number, never the file's content.
pub(crate) fn check(base_dir: &Path, command: &Command) -> Result<(), String> {
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
        Some(line) => {
            let at = if line > 0 {
                format!(" (at its line {line})")
            } else {
                String::new()
            };
            Err(format!(
                "{} is not a readable, valid {what}{at}; the page does not show file \
                 content: run the line from the PuppetMaster's terminal to see why",
                path.display()
            ))
        }
    }
}

/// `path` resolved inside `base_dir`, or why it may not be read from the page.
fn confined(base_dir: &Path, path: &Path) -> Result<PathBuf, String> {
    let outside = || {
        format!(
            "the page may only name files inside the script's folder, by a relative \
             path without `..`: {} is refused",
            path.display()
        )
    };
    if !path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(outside());
    }
    let base = base_dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve the script's folder: {e}"))?;
    let resolved = base
        .join(path)
        .canonicalize()
        .map_err(|_| format!("there is no file {} in the script's folder", path.display()))?;
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

        assert_eq!(check(&dir, &command("client x app.txt")), Ok(()));
        assert_eq!(check(&dir, &command("populate ./data.txt")), Ok(()));
        assert_eq!(check(&dir, &command("status")), Ok(()));
        for line in [
            "client x /etc/passwd",
            "populate ../outside.txt",
            "populate link.txt",
            "client x missing.txt",
            "client x secret.txt",
            "populate secret.txt",
        ] {
            let refusal = check(&dir, &command(line)).expect_err(line);
            assert!(!refusal.contains("top-secret"), "{line}: {refusal}");
        }
        let refusal = check(&dir, &command("client x secret.txt")).unwrap_err();
        assert!(refusal.contains("at its line 1"), "{refusal}");
    }
}
