//! Every flag of every subcommand can also come from an environment variable, so a
//! container, a unit file or a CI job configures `dida` without a command line.
//!
//! A flag that names its own variable keeps it: the role settings'
//! `DIDA_<ROLE>_<FLAG>` (`crates/settings`), `DIDA_PEERS`, `DIDA_INSECURE`,
//! `DIDA_CLUSTER_TOKEN_FILE`, …. Every other flag gets
//! `DIDA_<SUBCOMMAND…>_<FLAG>`, from its subcommand's path and its long name
//! (`dida kv --deadline` ← `DIDA_KV_DEADLINE`, `dida bench chain --lengths` ←
//! `DIDA_BENCH_CHAIN_LENGTHS`). A flag given on the command line beats its
//! variable, which beats the default; `--help` shows each variable.

use clap::Command;

/// `command` with a variable on every long flag that has none, recursively.
pub fn with_env_variables(command: Command) -> Command {
    add_variables(command, "DIDA")
}

fn add_variables(command: Command, prefix: &str) -> Command {
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect();
    let mut command = command.mut_args(|arg| match arg.get_long() {
        Some(long) if arg.get_env().is_none() => {
            let variable = format!("{prefix}_{}", upper(long));
            arg.env(variable)
        }
        _ => arg,
    });
    for name in subcommands {
        let prefix = format!("{prefix}_{}", upper(&name));
        command = command.mut_subcommand(&name, |sub| add_variables(sub, &prefix));
    }
    command
}

/// `kebab-case` as `SCREAMING_SNAKE_CASE`.
fn upper(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every long flag of `command` and its subcommands, with its variable.
    fn flags(command: &Command, out: &mut Vec<(String, Option<String>)>) {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long() {
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                out.push((format!("{} --{long}", command.get_name()), env));
            }
        }
        for sub in command.get_subcommands() {
            flags(sub, out);
        }
    }

    #[test]
    fn every_flag_of_every_subcommand_has_a_dida_variable() {
        let mut all = Vec::new();
        flags(&with_env_variables(crate::Cli::command()), &mut all);
        assert!(all.len() > 100, "{} flags", all.len());
        for (flag, env) in &all {
            let env = env
                .as_deref()
                .unwrap_or_else(|| panic!("{flag} has no variable"));
            assert!(env.starts_with("DIDA_"), "{flag}: {env}");
        }
        let variable = |wanted: &str| {
            all.iter()
                .find(|(flag, _)| flag == wanted)
                .and_then(|(_, env)| env.clone())
        };
        assert_eq!(
            variable("kv --deadline").as_deref(),
            Some("DIDA_KV_DEADLINE")
        );
        assert_eq!(
            variable("chain --lengths").as_deref(),
            Some("DIDA_BENCH_CHAIN_LENGTHS")
        );
        assert_eq!(
            variable("kv --peers").as_deref(),
            Some("DIDA_PEERS"),
            "kept"
        );
        assert_eq!(
            variable("storage --vnodes").as_deref(),
            Some("DIDA_STORAGE_VNODES"),
            "the settings' own"
        );
    }
}
