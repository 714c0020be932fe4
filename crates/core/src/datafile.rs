//! Parser for `populate` data files: one `key,value` record per line.

use std::path::Path;

use crate::limits::{check_key, check_value};

/// A data-file line that could not be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {message}")]
pub struct DataFileError {
    /// The file, as given.
    pub file: String,
    /// 1-based line number (0 when the file could not be read at all).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Reads and validates a whole data file before anything is written, so a malformed
/// line never leaves half a file stored.
pub fn read_data_file(path: &Path) -> Result<Vec<(String, String)>, DataFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataFileError {
        file: path.display().to_string(),
        line: 0,
        message: format!("cannot read the data file: {e}"),
    })?;
    parse_data(&path.display().to_string(), &text)
}

/// Parses data-file text: blank lines and lines starting with `#` are skipped; every
/// other line must be `key,value` with no spaces or further commas (SPEC §6.2).
pub fn parse_data(file: &str, text: &str) -> Result<Vec<(String, String)>, DataFileError> {
    let mut pairs = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let err = |message: String| DataFileError {
            file: file.to_string(),
            line: index + 1,
            message,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 2 {
            return Err(err(format!(
                "expected key,value with exactly one comma, found {line:?}"
            )));
        }
        let (key, value) = (fields[0], fields[1]);
        if key.chars().chain(value.chars()).any(char::is_whitespace) {
            return Err(err(format!(
                "keys and values may not contain spaces: {line:?}"
            )));
        }
        check_key(key).map_err(|e| err(e.to_string()))?;
        check_value(value).map_err(|e| err(e.to_string()))?;
        pairs.push((key.to_string(), value.to_string()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_skips_comments_and_blanks() {
        let pairs = parse_data("d.txt", "13,1\n\n# comment\n14,x\r\n23,11\n24,y\n").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("13".into(), "1".into()),
                ("14".into(), "x".into()),
                ("23".into(), "11".into()),
                ("24".into(), "y".into())
            ]
        );
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        for (text, line, expected) in [
            ("a,1\nb\n", 2, "exactly one comma"),
            ("a,1,2\n", 1, "exactly one comma"),
            ("a,1\n\nb c,2\n", 3, "spaces"),
            (",1\n", 1, "key is empty"),
        ] {
            let err = parse_data("data.txt", text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            let shown = err.to_string();
            assert!(shown.starts_with(&format!("data.txt:{line}: ")), "{shown}");
            assert!(shown.contains(expected), "{shown}");
        }
        let missing = read_data_file(Path::new("/nonexistent/data.txt")).unwrap_err();
        assert!(missing.to_string().contains("cannot read the data file"));
    }
}
