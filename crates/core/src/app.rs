//! Parser for application files (SPEC §3.1): one `operator <ClassName> <seq_no>` per
//! line, positions forming a continuous sequence from 0, in any order.

use std::path::Path;

use crate::limits::MAX_CHAIN_OPERATORS;
use crate::textfile::{read_text_file, strip_bom, TextLimits};

/// An application file line (or the file as a whole) that could not be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {message}")]
pub struct AppFileError {
    /// The file, as given.
    pub file: String,
    /// 1-based line number; 0 when the problem concerns the whole file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Checks an operator class name: 1 to 128 ASCII letters, digits or `_`, starting
/// with a letter. The name becomes a file name (`<ClassName>.wasm`) on workers, so
/// nothing else is allowed.
pub fn check_operator_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid operator name {name:?}: use letters, digits and '_', starting with a letter"
        ))
    }
}

/// Reads and parses an application file (under [`TextLimits::SCRIPT_FILE`]); returns
/// the operator names in chain order.
pub fn read_app_file(path: &Path) -> Result<Vec<String>, AppFileError> {
    let file = path.display().to_string();
    let text = read_text_file(path, "application file", TextLimits::SCRIPT_FILE).map_err(|e| {
        AppFileError {
            file: file.clone(),
            line: e.line,
            message: e.message,
        }
    })?;
    parse_app(&file, &text)
}

/// Parses application-file text (a leading byte order mark is dropped); returns the
/// operator names in chain order.
pub fn parse_app(file: &str, text: &str) -> Result<Vec<String>, AppFileError> {
    let err = |line: usize, message: String| AppFileError {
        file: file.to_string(),
        line,
        message,
    };
    let mut slots: Vec<Option<(String, usize)>> = Vec::new();
    for (index, raw) in strip_bom(text).lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["operator", name, seq] => {
                check_operator_name(name).map_err(|m| err(line_no, m))?;
                let seq: usize = seq.parse().map_err(|_| {
                    err(
                        line_no,
                        format!("position {seq:?} is not a non-negative integer"),
                    )
                })?;
                if seq >= MAX_CHAIN_OPERATORS {
                    return Err(err(
                        line_no,
                        format!(
                            "position {seq} is too large (at most {})",
                            MAX_CHAIN_OPERATORS - 1
                        ),
                    ));
                }
                if slots.len() <= seq {
                    slots.resize(seq + 1, None);
                }
                if let Some((other, other_line)) = &slots[seq] {
                    return Err(err(
                        line_no,
                        format!("position {seq} is already taken by {other} (line {other_line})"),
                    ));
                }
                slots[seq] = Some((name.to_string(), line_no));
            }
            ["operator", ..] => {
                return Err(err(
                    line_no,
                    format!("expected `operator <ClassName> <position>`, found {line:?}"),
                ))
            }
            [command, ..] => {
                return Err(err(
                    line_no,
                    format!(
                    "unknown command {command:?}: an application file only has `operator` lines"
                ),
                ))
            }
            [] => unreachable!("blank lines are skipped"),
        }
    }
    if slots.is_empty() {
        return Err(err(0, "the application has no operator".into()));
    }
    if let Some(missing) = slots.iter().position(Option::is_none) {
        return Err(err(
            0,
            format!(
                "positions must be continuous from 0, but {missing} is missing (highest is {})",
                slots.len() - 1
            ),
        ));
    }
    Ok(slots
        .into_iter()
        .map(|s| s.expect("checked above").0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operators_in_position_order() {
        let text = "# course app\noperator UpdateAndChainOperator 1\n\noperator AddOperator 0\n";
        assert_eq!(
            parse_app("app.txt", text).unwrap(),
            ["AddOperator", "UpdateAndChainOperator"]
        );
    }

    #[test]
    fn rejects_bad_files_naming_file_and_line() {
        let cases = [
            ("operator A 0\nfrobnicate B 1\n", 2, "unknown command"),
            (
                "operator A\n",
                1,
                "expected `operator <ClassName> <position>`",
            ),
            ("operator A x\n", 1, "not a non-negative integer"),
            ("operator A -1\n", 1, "not a non-negative integer"),
            (
                "operator A 0\noperator B 0\n",
                2,
                "already taken by A (line 1)",
            ),
            ("operator ../evil 0\n", 1, "invalid operator name"),
            ("operator A 0\noperator B 2\n", 0, "1 is missing"),
            ("# nothing\n", 0, "no operator"),
            ("operator A 99999\n", 1, "too large"),
        ];
        for (text, line, expected) in cases {
            let error = parse_app("app.txt", text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.to_string().starts_with(&format!("app.txt:{line}: ")));
            assert!(error.message.contains(expected), "{text:?}: {error}");
        }
        let missing = read_app_file(Path::new("/nonexistent/app.txt")).unwrap_err();
        assert!(missing.message.contains("cannot read"));
    }

    #[test]
    fn a_bom_is_dropped_and_bad_bytes_are_reported_on_their_line() {
        assert_eq!(
            parse_app("app.txt", "\u{feff}operator A 0\n").unwrap(),
            ["A"]
        );
        let path = std::env::temp_dir().join(format!("dida-app-{}.txt", std::process::id()));
        std::fs::write(&path, b"\xEF\xBB\xBFoperator A 0\noperator \xC0B 1\n").unwrap();
        let error = read_app_file(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(error.line, 2, "{error}");
        assert!(
            error.message.contains("invalid UTF-8 at byte offset 25"),
            "{error}"
        );
    }
}
