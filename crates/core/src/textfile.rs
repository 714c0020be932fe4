//! Reading the text files users hand to dida — data files, scripts, application
//! files — with bounded memory and precise errors.
//!
//! A file is read one line at a time, and reading stops as soon as a line or the file
//! passes its limit, so `/dev/zero` or a multi-gigabyte file is refused after reading
//! at most one line over the limit, not after filling memory. A leading UTF-8 byte
//! order mark (as some editors write) is dropped. Binary content (a NUL byte) and
//! invalid UTF-8 are reported with their 1-based line number and their byte offset in
//! the file, so the user can find them.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::limits::{
    MAX_DATA_FILE_BYTES, MAX_DATA_LINE_BYTES, MAX_SCRIPT_FILE_BYTES, MAX_SCRIPT_LINE_BYTES,
};

/// The UTF-8 byte order mark, dropped from the start of a file.
pub const BOM: &str = "\u{feff}";

/// How much of a text file is read at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimits {
    /// Largest file, in bytes.
    pub max_file_bytes: u64,
    /// Longest line, in bytes, not counting its `\n`.
    pub max_line_bytes: usize,
}

impl TextLimits {
    /// The limits of `populate` data files.
    pub const DATA_FILE: Self = Self {
        max_file_bytes: MAX_DATA_FILE_BYTES,
        max_line_bytes: MAX_DATA_LINE_BYTES,
    };

    /// The limits of PuppetMaster scripts and application files.
    pub const SCRIPT_FILE: Self = Self {
        max_file_bytes: MAX_SCRIPT_FILE_BYTES,
        max_line_bytes: MAX_SCRIPT_LINE_BYTES,
    };
}

/// Why a text file could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct TextError {
    /// 1-based number of the line concerned; 0 when the file as a whole is.
    pub line: usize,
    /// What is wrong, with the byte offset where it applies.
    pub message: String,
}

/// Drops a leading byte order mark.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// Reads the file at `path` as text under `limits` (see the module documentation).
/// Directories are refused at once; `what` names the file in messages ("data file").
pub fn read_text_file(path: &Path, what: &str, limits: TextLimits) -> Result<String, TextError> {
    let whole = |message: String| TextError { line: 0, message };
    let metadata =
        std::fs::metadata(path).map_err(|e| whole(format!("cannot read the {what}: {e}")))?;
    if metadata.is_dir() {
        return Err(whole(format!("cannot read the {what}: it is a directory")));
    }
    let file = File::open(path).map_err(|e| whole(format!("cannot read the {what}: {e}")))?;
    read_text(file, what, limits)
}

/// Reads `reader` as text under `limits`: the text without its byte order mark, or
/// the first problem found (see the module documentation).
pub fn read_text(reader: impl Read, what: &str, limits: TextLimits) -> Result<String, TextError> {
    // One byte past each limit tells "at the limit" from "over it".
    let mut reader = BufReader::new(reader.take(limits.max_file_bytes.saturating_add(1)));
    let mut text = String::new();
    let mut line = Vec::new();
    let mut offset: u64 = 0;
    for number in 1.. {
        line.clear();
        let read = (&mut reader)
            .take(limits.max_line_bytes as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| TextError {
                line: number,
                message: format!("cannot read the {what}: {e}"),
            })?;
        if read == 0 {
            break;
        }
        let err = |message: String| TextError {
            line: number,
            message,
        };
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        // The BOM is skipped before checking the content, but offsets stay file offsets.
        let skipped = if number == 1 && content.starts_with(BOM.as_bytes()) {
            BOM.len()
        } else {
            0
        };
        let content = &content[skipped..];
        let start = offset + skipped as u64;
        if let Some(nul) = content.iter().position(|&b| b == 0) {
            return Err(err(format!(
                "binary content (a NUL byte at byte offset {}); a {what} is text",
                start + nul as u64
            )));
        }
        if let Err(error) = std::str::from_utf8(content) {
            // Past the limit the last character may be cut: report the length first.
            if content.len() <= limits.max_line_bytes {
                return Err(err(format!(
                    "invalid UTF-8 at byte offset {}; a {what} must be UTF-8 text",
                    start + error.valid_up_to() as u64
                )));
            }
        }
        if content.len() + skipped > limits.max_line_bytes {
            return Err(err(format!(
                "the line is longer than {} bytes (it starts at byte offset {offset})",
                limits.max_line_bytes
            )));
        }
        offset += read as u64;
        if offset > limits.max_file_bytes {
            return Err(TextError {
                line: 0,
                message: format!(
                    "the {what} is larger than {} bytes; split it",
                    limits.max_file_bytes
                ),
            });
        }
        // Checked above: the content is valid UTF-8.
        text.push_str(std::str::from_utf8(&line[skipped..]).map_err(|e| err(e.to_string()))?);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: TextLimits = TextLimits {
        max_file_bytes: 64,
        max_line_bytes: 8,
    };

    fn read(bytes: &[u8]) -> Result<String, TextError> {
        read_text(bytes, "data file", SMALL)
    }

    #[test]
    fn reads_text_and_drops_a_leading_bom() {
        assert_eq!(read(b"a,1\nb,2\n").unwrap(), "a,1\nb,2\n");
        assert_eq!(read(b"\xEF\xBB\xBFa,1\r\nb,2").unwrap(), "a,1\r\nb,2");
        assert_eq!(read(b"").unwrap(), "");
        // Only a leading BOM is dropped.
        assert_eq!(read(b"a\n\xEF\xBB\xBFb\n").unwrap(), "a\n\u{feff}b\n");
        // A line of exactly the limit is fine, with or without its newline.
        assert_eq!(read(b"12345678\n12345678").unwrap(), "12345678\n12345678");
    }

    #[test]
    fn invalid_utf8_and_binary_content_name_line_and_offset() {
        let error = read(b"a,1\nb,\xFF\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(
            error.message.contains("invalid UTF-8 at byte offset 6"),
            "{error}"
        );
        let error = read(b"a,1\n\nx\0y\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(
            error.message.contains("NUL byte at byte offset 6"),
            "{error}"
        );
        // Offsets count the BOM: they are offsets in the file.
        let error = read(b"\xEF\xBB\xBF\xC3(\n").unwrap_err();
        assert_eq!(error.line, 1);
        assert!(error.message.contains("byte offset 3"), "{error}");
    }

    #[test]
    fn long_lines_and_large_files_are_refused_early() {
        let error = read(b"a,1\n123456789\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.message.contains("longer than 8 bytes"), "{error}");
        assert!(error.message.contains("byte offset 4"), "{error}");
        let big = "1234567\n".repeat(9);
        let error = read(big.as_bytes()).unwrap_err();
        assert_eq!(error.line, 0);
        assert!(error.message.contains("larger than 64 bytes"), "{error}");
        // An endless reader is refused after reading one line past the limit.
        let error = read_text(std::io::repeat(b'a'), "data file", SMALL).unwrap_err();
        assert_eq!(error.line, 1);
        let error = read_text(std::io::repeat(0), "data file", SMALL).unwrap_err();
        assert!(error.message.contains("binary content"), "{error}");
    }

    #[test]
    fn a_multibyte_character_cut_by_the_line_limit_is_reported_as_too_long() {
        // "ééééé" is 10 bytes: the 9th byte read is in the middle of a character.
        let error = read("ééééé\n".as_bytes()).unwrap_err();
        assert!(error.message.contains("longer than 8 bytes"), "{error}");
    }

    #[test]
    fn directories_and_missing_files_are_refused_with_the_reason() {
        let dir = std::env::temp_dir();
        let error = read_text_file(&dir, "data file", SMALL).unwrap_err();
        assert!(error.message.contains("it is a directory"), "{error}");
        let error = read_text_file(Path::new("/nonexistent/x"), "data file", SMALL).unwrap_err();
        assert!(
            error.message.contains("cannot read the data file"),
            "{error}"
        );
        assert_eq!(error.line, 0);
    }
}
