//! Property-based tests of every parser of user input: scripts, application files,
//! data files, membership lists, node URLs, versions and the bounded text reader.
//!
//! Each property runs a fixed budget of cases (deterministic per test, so a failure
//! reproduces) and the whole file runs in about a second: no parser may panic on any
//! input, every refusal must say where and why, and what a printer writes must parse
//! back to the same value.

use dida_core::app::parse_app;
use dida_core::datafile::parse_data;
use dida_core::membership::NodeUrl;
use dida_core::script::{parse_line, parse_script, Command, COMMANDS};
use dida_core::textfile::{read_text, TextLimits};
use dida_core::{Membership, Version};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        // A failure is reported as found; shrinking would only cost time here.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

/// Text that looks like the input a parser expects: words from its vocabulary,
/// numbers, separators and odd characters (a BOM, CR, NUL, tabs, non-ASCII).
fn near_miss(vocabulary: &'static [&'static str]) -> impl Strategy<Value = String> {
    let token = prop_oneof![
        4 => proptest::sample::select(vocabulary).prop_map(String::from),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        2 => "[a-zA-Z0-9_./:=-]{0,12}",
        1 => proptest::sample::select(ODD).prop_map(String::from),
        1 => any::<String>(),
    ];
    proptest::collection::vec(token, 0..24).prop_map(|tokens| tokens.concat())
}

/// Separators and characters parsers must not trip on.
const ODD: &[&str] = &[
    " ",
    "  ",
    "\t",
    ",",
    "=",
    ".",
    ":",
    "\r",
    "\n",
    "\r\n",
    "#",
    "\u{feff}",
    "\0",
    "é",
    "\u{2028}",
    "http://",
    "-1",
    "99999999999999999999",
];

const SCRIPT_WORDS: &[&str] = &[
    "debug",
    "scheduler",
    "storage",
    "worker",
    "client",
    "populate",
    "status",
    "listServer",
    "listGlobal",
    "crash",
    "restart",
    "wait",
    "await",
    "s1",
    "w1",
    "http://127.0.0.1:3001",
    "http://localhost:0",
    " ",
    "\n",
];

const APP_WORDS: &[&str] = &[
    "operator",
    "AddOperator",
    "Echo",
    "0",
    "1",
    "10000",
    " ",
    "\n",
];

const DATA_WORDS: &[&str] = &["13", "key", "value", ",", "#", " ", "\n", "\r\n"];

const PEER_WORDS: &[&str] = &["s1", "s2", "=", ",", "http://", "127.0.0.1", ":7001", "/"];

proptest! {
    #![proptest_config(config())]

    /// Any script text parses without panicking; every error names a line of the
    /// text and the command it found, and every parsed line is in order.
    #[test]
    fn scripts_never_panic(text in near_miss(SCRIPT_WORDS)) {
        let (lines, errors) = parse_script(&text);
        let count = text.lines().count();
        for error in &errors {
            prop_assert!(error.line >= 1 && error.line <= count, "{error:?}");
            prop_assert!(!error.message.is_empty());
        }
        prop_assert!(lines.windows(2).all(|w| w[0].number < w[1].number));
        for line in &lines {
            prop_assert!(line.number >= 1 && line.number <= count);
        }
    }

    /// A well-formed command line parses to that command, whatever the spacing.
    #[test]
    fn well_formed_script_lines_parse(
        index in 0..COMMANDS.len(),
        id in "[a-z][a-z0-9_.-]{0,10}",
        port in 1u16..,
        ms in 0u64..=600_000,
        pad in "[ \t]{1,3}",
    ) {
        let help = COMMANDS[index];
        let args: Vec<String> = help
            .args
            .split_whitespace()
            .map(|arg| match arg {
                "<url>" => format!("http://127.0.0.1:{port}"),
                "<gossip_delay>" | "<ms>" => ms.to_string(),
                _ => id.clone(),
            })
            .collect();
        let line = format!("{pad}{}{pad}{}{pad}", help.name, args.join(&pad));
        let command = parse_line(1, &line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(command.as_ref().map(Command::name), Some(help.name));
    }

    /// Any application text parses without panicking; a success is a chain of valid
    /// operator names, and every refusal names the file.
    #[test]
    fn app_files_never_panic(text in near_miss(APP_WORDS)) {
        match parse_app("app.txt", &text) {
            Ok(operators) => {
                prop_assert!(!operators.is_empty());
                for name in operators {
                    prop_assert!(dida_core::app::check_operator_name(&name).is_ok());
                }
            }
            Err(error) => {
                prop_assert!(error.line <= text.lines().count());
                prop_assert!(error.to_string().starts_with("app.txt:"));
            }
        }
    }

    /// Operators listed at shuffled positions come back in position order.
    #[test]
    fn app_files_round_trip(
        names in proptest::collection::vec("[A-Z][a-zA-Z0-9_]{0,20}", 1..30),
        seed in any::<u64>(),
    ) {
        let mut lines: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(position, name)| format!("operator {name} {position}"))
            .collect();
        // A deterministic shuffle: rotate by the seed.
        let len = lines.len();
        lines.rotate_left((seed as usize) % len);
        let text = format!("\u{feff}# app\n{}\n", lines.join("\n"));
        let parsed = parse_app("app.txt", &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, names);
    }

    /// Any data text parses without panicking; every accepted pair is a valid key
    /// and value, every refusal names a line of the text.
    #[test]
    fn data_files_never_panic(text in near_miss(DATA_WORDS)) {
        match parse_data("d.txt", &text) {
            Ok(pairs) => {
                for (key, value) in pairs {
                    prop_assert!(dida_core::limits::check_key(&key).is_ok());
                    prop_assert!(!key.contains(',') && !value.contains(','));
                }
            }
            Err(error) => {
                prop_assert!(error.line >= 1 && error.line <= text.lines().count(), "{error:?}");
            }
        }
    }

    /// Pairs written as a data file (with a BOM and CRLF line ends) come back as
    /// they were.
    #[test]
    fn data_files_round_trip(
        pairs in proptest::collection::vec(("[a-zA-Z0-9_]{1,16}", "[a-zA-Z0-9_.é]{0,16}"), 0..40),
        crlf in any::<bool>(),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let text: String = std::iter::once("\u{feff}".to_string())
            .chain(pairs.iter().map(|(k, v)| format!("{k},{v}{end}")))
            .collect();
        let bytes = read_text(text.as_bytes(), "data file", TextLimits::DATA_FILE)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = parse_data("d.txt", &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed, pairs);
    }

    /// The text reader never panics on arbitrary bytes; what it accepts is what was
    /// given (less a leading BOM), and a refusal names a line that exists.
    #[test]
    fn the_text_reader_never_panics(
        bytes in proptest::collection::vec(
            prop_oneof![8 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(0xEF)],
            0..300,
        ),
        max_line in 1usize..40,
    ) {
        let limits = TextLimits { max_file_bytes: 200, max_line_bytes: max_line };
        match read_text(&bytes[..], "data file", limits) {
            Ok(text) => {
                let original = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
                prop_assert_eq!(text.as_bytes(), original);
                prop_assert!(!text.contains('\0'));
            }
            Err(error) => {
                let lines = bytes.split(|&b| b == b'\n').count();
                prop_assert!(error.line <= lines, "{error:?}");
            }
        }
    }

    /// Any `--peers` text parses without panicking; an accepted membership has
    /// distinct ids and addresses, numbered 1.. in order.
    #[test]
    fn membership_lists_never_panic(text in near_miss(PEER_WORDS)) {
        if let Ok(membership) = Membership::parse(&text) {
            let members = membership.members();
            prop_assert!(!members.is_empty());
            for (index, member) in members.iter().enumerate() {
                prop_assert_eq!(member.replica as usize, index + 1);
            }
            let mut ids: Vec<_> = membership.ids().collect();
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), members.len());
        }
    }

    /// A membership printed as `ID=URL,…` parses back to the same membership.
    #[test]
    fn membership_lists_round_trip(
        nodes in proptest::collection::btree_map("[a-z][a-z0-9_.-]{0,8}", 1u16.., 1..12),
    ) {
        // Distinct ports make distinct addresses.
        let nodes: Vec<(String, String)> = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (id, port))| (id, format!("http://127.0.0.1:{}", port.wrapping_add(i as u16).max(1))))
            .collect();
        let mut ports: Vec<_> = nodes.iter().map(|(_, url)| url.clone()).collect();
        ports.sort_unstable();
        ports.dedup();
        prop_assume!(ports.len() == nodes.len());
        let membership = Membership::new(nodes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let printed = membership
            .members()
            .iter()
            .map(|m| format!("{}={}", m.id, m.url))
            .collect::<Vec<_>>()
            .join(",");
        prop_assert_eq!(Membership::parse(&printed), Ok(membership));
    }

    /// Node URLs: no panic on any text, and a printed URL parses back.
    #[test]
    fn node_urls_round_trip(text in near_miss(PEER_WORDS), host in "[a-z0-9.-]{1,20}", port in 1u16..) {
        let _ = NodeUrl::parse(&text);
        let url = NodeUrl { host, port, https: false };
        prop_assert_eq!(NodeUrl::parse(&url.to_string()), Ok(url));
    }

    /// Versions: no panic on any text, and `N.R` parses back to the same version.
    #[test]
    fn versions_round_trip(text in near_miss(&["1", ".", "0", "-", "+", "18446744073709551616"]), number in any::<u64>(), replica in any::<u32>()) {
        if let Ok(version) = text.parse::<Version>() {
            prop_assert_eq!(version.to_string().parse::<Version>(), Ok(version));
        }
        let version = Version::new(number, replica);
        prop_assert_eq!(version.to_string().parse::<Version>(), Ok(version));
    }
}
