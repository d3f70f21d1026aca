//! `docs/configuration.md`, generated from the server's clap flags: every
//! flag, its environment twin, its default and its help, so the reference
//! cannot drift from the binary. `tests/configuration_doc.rs` fails when the
//! file is stale and rewrites it with `PYEXEC_BLESS=1`.

use std::fmt::Write as _;

use clap::CommandFactory;

use crate::config::Flags;

/// The reference page, as Markdown.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Configuration\n\n\
         Generated from `pyexec --help` by `tests/configuration_doc.rs`; do not edit by hand \
         (rerun it with `PYEXEC_BLESS=1` after changing a flag in `src/config.rs`).\n\n\
         Every flag has an environment twin; a flag wins over its twin. A bad value makes \
         pyexec exit with status 64 and one line naming the flag. The log level is \
         `PYEXEC_LOG` (a tracing `EnvFilter`, default `info`).\n\n\
         | flag | environment | default | meaning |\n|---|---|---|---|\n",
    );
    let command = Flags::command();
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let env = arg.get_env().map_or_else(String::new, |e| format!("`{}`", e.to_string_lossy()));
        let defaults: Vec<String> =
            arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        let default =
            if defaults.is_empty() { "unset".to_owned() } else { format!("`{}`", defaults.join(",")) };
        let help = arg.get_long_help().or(arg.get_help()).map(ToString::to_string).unwrap_or_default();
        let mut meaning = sentence(&help);
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| match v.get_help() {
                Some(help) => format!("`{}`: {}", v.get_name(), sentence(&help.to_string())),
                None => format!("`{}`", v.get_name()),
            })
            .collect();
        if !values.is_empty() {
            let _ = write!(meaning, " One of {}", values.join(" "));
        }
        let _ = writeln!(out, "| `--{long}` | {env} | {default} | {meaning} |");
    }
    out
}

/// Help text as one table cell: lines folded, pipes escaped, and the full
/// stop clap takes off a one-line help put back.
fn sentence(help: &str) -> String {
    let mut text = help.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|");
    if !text.is_empty() && !text.ends_with('.') {
        text.push('.');
    }
    text
}
