//! `pin` — the reference command line of the PIN lifecycle library.
//!
//! A thin driver: it parses the command line, reads PINs from the terminal (no echo) or
//! standard input, calls [`pin_core::service::PinService`] over a
//! [`pin_sqlite::SqliteStore`] (or a [`pin_postgres::PostgresStore`] when `--db` is a
//! `postgres://` URL), writes each message a person would receive into an outbox
//! directory, and prints the result. Every decision is pin-core's.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (for `verify`: the PIN was accepted) |
//! | 1 | internal error |
//! | 2 | bad input or usage: malformed tax code, contact, PIN, date or option |
//! | 3 | PIN rejected: wrong PIN, attempts remain |
//! | 4 | PIN locked: blocked after too many wrong attempts |
//! | 5 | refused by the rules: actor, state, failed check, unknown or existing subject, rate limit, existing key file |
//! | 6 | PIN not usable here: `must_change`, `expired`, `insufficient_level`, `no_pin` |
//! | 7 | storage failure: the database or the key file is missing, unreadable or corrupt |
//! | 8 | the audit chain does not verify |
//! | 9 | try again later: the database was busy (`busy: retry …`), or other attempts on the PIN are still being checked; nothing was counted or changed |
//! | 10 | not delivered: the PIN was issued and saved (any earlier one no longer works) but did not reach the person; fix the outbox or relay and run `pin resend` (a fresh PIN, POL-3) |
//!
//! Errors are one line on stderr (`pin: error: …`); with `--json` the failure is also one
//! JSON object on stdout, whose `retryable` is true for exit code 9. A failed command
//! changes nothing — except exit code 10, where the command's report is printed with
//! `"ok": false`, `"saved": true`, `"delivered": false` and the `error` object.
//!
//! A closed standard output (`pin completions bash | head -1`) ends the command quietly,
//! as other Unix tools do: nothing on stderr, and the command's own exit code.
//!
//! # Under load
//!
//! Commands that only show something (`status`, `audit show`, `audit verify`, `audit head`,
//! `audit export`, `key list`) open an SQLite file read-only and never wait for writers. A command that writes waits for the
//! write lock other processes hold up to 30 s; past it, it ends with exit code 9 and
//! `busy: retry …`, having changed nothing. A PostgreSQL server that refuses new
//! connections (`too many clients`) is asked again for 30 s, then the command ends with
//! exit code 9 and `unavailable: retry later; …`. `PIN_BUSY_TIMEOUT` (seconds) changes both
//! waits.
//!
//! # Test-only fast hashing
//!
//! `PIN_INSECURE_FAST_HASH=1` makes new hashes use Argon2id m=64 KiB, t=1 — worthless
//! against an attacker, for test suites only. A warning is printed on stderr each time
//! (unless `-q`).
//!
//! # Logs
//!
//! Logs go to stderr only (stdout holds the answer: with `--json`, exactly one object).
//! `-v` adds one line per command and verify (outcome, masked tax code, serial, duration),
//! `-vv` retries, `-vvv` everything; `-q` leaves errors only; `RUST_LOG` replaces the
//! level when set. `--log-format json` writes one JSON object per line. No log line holds a
//! PIN, a key or a full contact.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool talks to its user on stdout and stderr"
)]

mod admin;
mod app;
mod audit_cmd;
mod audit_key;
mod cli;
mod db;
mod demo;
mod exit;
mod input;
mod key;
mod key_cmd;
mod log;
mod outbox;
mod report;
mod run;
mod subject;

use std::io::Write as _;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use serde_json::json;

use crate::cli::{Cli, Cmd};
use crate::exit::{Failure, Kind, one_line};

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unexpected failure".to_owned());
        eprintln!(
            "pin: error: internal error: {}; please report it",
            one_line(&msg)
        );
    }));
    let json_hint = std::env::args_os().any(|a| a == "--json");
    match std::panic::catch_unwind(|| main_inner(json_hint)) {
        Ok(code) => code,
        Err(_) => ExitCode::from(Kind::Internal.code()),
    }
}

fn main_inner(json_hint: bool) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                _ => fail(&Failure::input(clap_message(&e)), json_hint),
            };
        }
    };
    if let Cmd::Completions { shell } = cli.command {
        let mut cmd = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "pin", &mut script);
        let mut out = std::io::stdout().lock();
        return match out.write_all(&script).and_then(|()| out.flush()) {
            // The reader stopped reading (`| head -1`): not an error, as for other tools.
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => fail(
                &Failure::internal(format!("cannot write the completion script: {e}")),
                false,
            ),
        };
    }
    log::init(cli.global.verbose, cli.global.quiet, cli.global.log_format);
    if app::fast_hash() {
        tracing::warn!(
            "{}=1: insecure fast Argon2 parameters for new hashes — for tests only",
            app::FAST_HASH_ENV
        );
    }
    let json = cli.global.json;
    match run::run(cli) {
        Ok(done) => {
            let mut out = std::io::stdout().lock();
            let written = if json {
                writeln!(out, "{}", done.json_text())
            } else {
                write!(out, "{}", done.text)
            };
            // A closed stdout (`| head`) is the reader's choice: the exit code stays the
            // command's, and nothing more is printed.
            let _ = written.and_then(|()| out.flush());
            if let Some(message) = done
                .json
                .get("error")
                .and_then(|e| e.get("message"))
                .and_then(serde_json::Value::as_str)
            {
                eprintln!("pin: error: {message}");
            }
            done.exit
                .map_or(ExitCode::SUCCESS, |k| ExitCode::from(k.code()))
        }
        Err(f) => fail(&f, json),
    }
}

/// Prints a failure (one line on stderr; one JSON object on stdout with `--json`).
fn fail(f: &Failure, json: bool) -> ExitCode {
    eprintln!("pin: error: {}", one_line(&f.message));
    if json {
        let obj = json!({
            "ok": false,
            "error": {
                "kind": f.kind.name(),
                "message": one_line(&f.message),
                "exit_code": f.kind.code(),
                "retryable": f.kind == Kind::Retry,
            },
        });
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{obj}").and_then(|()| out.flush());
    }
    ExitCode::from(f.kind.code())
}

/// The most characters of a value an error message repeats.
const ECHO_MAX: usize = 32;

/// A value as an error message repeats it: at most [`ECHO_MAX`] characters, then `…`.
fn echo(value: &str) -> String {
    match value.char_indices().nth(ECHO_MAX) {
        Some((cut, _)) => format!("{}…", value.get(..cut).unwrap_or_default()),
        None => value.to_owned(),
    }
}

/// clap's error as one line, with a pointer to the help; values it repeats from the command
/// line are cut to [`ECHO_MAX`] characters (a 100 KB argument is not printed back).
fn clap_message(e: &clap::Error) -> String {
    let mut rendered = e.render().to_string();
    for (_, value) in e.context() {
        let values: Vec<&str> = match value {
            clap::error::ContextValue::String(v) => vec![v.as_str()],
            clap::error::ContextValue::Strings(vs) => vs.iter().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        for v in values {
            if v.chars().count() > ECHO_MAX {
                rendered = rendered.replace(v, &echo(v));
            }
        }
    }
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let tip = rendered
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("tip: "))
        .map(|t| format!("; {t}"))
        .unwrap_or_default();
    format!("{first}{tip} (see `pin --help`)")
}
