//! Why settings were refused: a flag's value (bad form, out of its bound, unknown
//! flag) or two settings that contradict each other.

/// Why settings were refused, with the message a person reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A flag is unknown, missing, given twice or has a value its parser refuses
    /// (its form, or a bound of `dida_core::limits`). The message is clap's, without
    /// its usage lines.
    #[error("{0}")]
    Flag(String),
    /// Every value is valid alone but two contradict each other, for example
    /// `--write-acks` above the replication factor.
    #[error("{0}")]
    Inconsistent(String),
}

impl SettingsError {
    /// The error of a failed parse: clap's message up to its usage lines, on one
    /// line and with `error: ` dropped, so that a refusal reads as one sentence in a
    /// PCS reply or a PuppetMaster event.
    pub(crate) fn from_clap(error: &clap::Error) -> Self {
        let text = error.to_string();
        let message: Vec<&str> = text
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .map(str::trim)
            .collect();
        let message = message.join(" ");
        Self::Flag(
            message
                .strip_prefix("error: ")
                .unwrap_or(&message)
                .to_string(),
        )
    }
}
