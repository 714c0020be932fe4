//! Parser for `populate` data files: one `key,value` record per line.

use std::path::Path;

use crate::limits::{check_key, check_value};
use crate::textfile::{read_text_file, strip_bom, TextLimits};

/// A data-file line that could not be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {message}")]
pub struct DataFileError {
    /// The file, as given.
    pub file: String,
    /// 1-based line number (0 when the problem concerns the whole file: it could not
    /// be opened, or it is over the size limit).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Reads and validates a whole data file before anything is written, so a malformed
/// line never leaves half a file stored. The file is read under
/// [`TextLimits::DATA_FILE`]: a line or a file over its limit, binary content and
/// invalid UTF-8 are refused with the line (and byte offset) concerned.
pub fn read_data_file(path: &Path) -> Result<Vec<(String, String)>, DataFileError> {
    let file = path.display().to_string();
    let text =
        read_text_file(path, "data file", TextLimits::DATA_FILE).map_err(|e| DataFileError {
            file: file.clone(),
            line: e.line,
            message: e.message,
        })?;
    parse_data(&file, &text)
}

/// Parses data-file text: a leading byte order mark is dropped, blank lines and lines
/// starting with `#` are skipped; every other line must be `key,value` with no spaces
/// or further commas (SPEC §6.2).
pub fn parse_data(file: &str, text: &str) -> Result<Vec<(String, String)>, DataFileError> {
    let mut pairs = Vec::new();
    for (index, raw) in strip_bom(text).lines().enumerate() {
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

    #[test]
    fn a_leading_bom_is_not_part_of_the_first_key() {
        let pairs = parse_data("d.txt", "\u{feff}13,1\n14,2\n").unwrap();
        assert_eq!(pairs[0], ("13".into(), "1".into()));
        let dir = tempfile_dir();
        let path = dir.join("bom.txt");
        std::fs::write(&path, b"\xEF\xBB\xBF13,1\r\n14,2\r\n").unwrap();
        let pairs = read_data_file(&path).unwrap();
        assert_eq!(
            pairs,
            vec![("13".into(), "1".into()), ("14".into(), "2".into())]
        );
    }

    #[test]
    fn unreadable_content_is_reported_on_its_line_not_line_0() {
        let dir = tempfile_dir();
        for (name, bytes, line, expected) in [
            (
                "utf8.txt",
                &b"a,1\nb,\xFF\n"[..],
                2,
                "invalid UTF-8 at byte offset 6",
            ),
            (
                "binary.txt",
                &b"a,1\nb,2\n\x00\x01\x02"[..],
                3,
                "NUL byte at byte offset 8",
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            let error = read_data_file(&path).unwrap_err();
            assert_eq!(error.line, line, "{error}");
            assert!(error.message.contains(expected), "{error}");
            assert!(error
                .to_string()
                .starts_with(&format!("{}:{line}: ", path.display())));
        }
    }

    #[test]
    fn an_endless_device_is_refused_quickly() {
        let error = read_data_file(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(error.line, 1);
        assert!(error.message.contains("binary content"), "{error}");
    }

    /// A fresh directory for this test process's files.
    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dida-datafile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
