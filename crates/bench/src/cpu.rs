//! CPU time of other processes, read from Linux's `/proc`, for benchmarks that measure
//! what a cluster burns rather than how fast it answers.
//!
//! A process's `/proc/PID/stat` holds the user and system time of all its threads, in
//! clock ticks; the length of a tick is the `AT_CLKTCK` entry of the auxiliary vector
//! the kernel hands every process (`/proc/self/auxv`), which is what `sysconf
//! (_SC_CLK_TCK)` reads too.

use std::time::Duration;

use anyhow::{bail, Context};

/// The auxiliary-vector key of the clock tick rate.
const AT_CLKTCK: u64 = 17;

/// Reads CPU time of processes in the units the kernel counts them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuClock {
    ticks_per_second: u64,
}

impl CpuClock {
    /// A clock reading this kernel's tick rate from `/proc/self/auxv`.
    pub fn new() -> anyhow::Result<Self> {
        let auxv = std::fs::read("/proc/self/auxv")
            .context("cannot read /proc/self/auxv (CPU time is measured on Linux only)")?;
        let ticks_per_second = clock_ticks_from_auxv(&auxv)
            .context("/proc/self/auxv has no AT_CLKTCK entry: cannot convert CPU ticks")?;
        Ok(Self { ticks_per_second })
    }

    /// User plus system CPU time process `pid` has used so far, all threads included.
    pub fn used_by(self, pid: u32) -> anyhow::Result<Duration> {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {path}: has the process exited?"))?;
        let ticks = cpu_ticks(&stat).with_context(|| format!("cannot parse {path}"))?;
        Ok(Duration::from_secs_f64(
            ticks as f64 / self.ticks_per_second as f64,
        ))
    }
}

/// `utime + stime`, in clock ticks, from the text of a `/proc/PID/stat`. The command
/// name (field 2) is in parentheses and may itself hold spaces and parentheses, so the
/// fields are counted from the last `)`: after it come field 3 (`state`) onwards, and
/// `utime` and `stime` are fields 14 and 15.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        bail!("no command name in parentheses");
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize, name: &str| -> anyhow::Result<u64> {
        let text = fields
            .get(number - 3)
            .with_context(|| format!("only {} fields, no {name}", fields.len() + 2))?;
        text.parse()
            .with_context(|| format!("{name} {text:?} is not a number of ticks"))
    };
    Ok(field(14, "utime")? + field(15, "stime")?)
}

/// The value of `AT_CLKTCK` in an auxiliary vector: pairs of native-endian words
/// (key, value), ending with key 0.
fn clock_ticks_from_auxv(auxv: &[u8]) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |bytes: &[u8]| -> u64 {
        let mut buffer = [0u8; WORD];
        buffer.copy_from_slice(bytes);
        usize::from_ne_bytes(buffer) as u64
    };
    auxv.chunks_exact(2 * WORD)
        .map(|pair| (word(&pair[..WORD]), word(&pair[WORD..])))
        .take_while(|&(key, _)| key != 0)
        .find(|&(key, _)| key == AT_CLKTCK)
        .map(|(_, value)| value)
        .filter(|&ticks| ticks > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_utime_plus_stime_even_with_odd_command_names() {
        let plain = "6690 (dida) S 6685 6685 3382 0 -1 4194304 100 0 0 0 250 31 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(plain).unwrap(), 281);
        let odd = "42 (a) b (c) R 1 42 42 0 -1 0 0 0 0 0 7 5 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(odd).unwrap(), 12);
    }

    #[test]
    fn truncated_or_garbled_stat_lines_are_errors() {
        assert!(cpu_ticks("no parentheses here").is_err());
        let short = cpu_ticks("1 (x) S 1 1").unwrap_err();
        assert!(format!("{short:#}").contains("no utime"), "{short:#}");
        let garbled = cpu_ticks("1 (x) S 1 1 1 0 -1 0 0 0 0 0 lots 5").unwrap_err();
        assert!(format!("{garbled:#}").contains("utime"), "{garbled:#}");
    }

    fn auxv(pairs: &[(usize, usize)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|&(key, value)| [key.to_ne_bytes(), value.to_ne_bytes()])
            .flatten()
            .collect()
    }

    #[test]
    fn the_clock_tick_is_found_before_the_end_of_the_vector() {
        assert_eq!(
            clock_ticks_from_auxv(&auxv(&[(6, 4096), (17, 100), (0, 0)])),
            Some(100)
        );
        assert_eq!(
            clock_ticks_from_auxv(&auxv(&[(6, 4096), (0, 0), (17, 100)])),
            None
        );
        assert_eq!(clock_ticks_from_auxv(&auxv(&[(17, 0), (0, 0)])), None);
        assert_eq!(clock_ticks_from_auxv(&[]), None);
    }

    #[test]
    fn this_process_has_a_clock_and_a_cpu_time() {
        let clock = CpuClock::new().unwrap();
        assert!(clock.used_by(std::process::id()).is_ok());
    }
}
