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
//!
//! Errors are one line on stderr (`pin: error: …`); with `--json` the failure is also one
//! JSON object on stdout, whose `retryable` is true for exit code 9. A failed command
//! changes nothing.
//!
//! # Under load
//!
//! Commands that only show something (`status`, `audit show`, `audit verify`) open an
//! SQLite file read-only and never wait for writers. A command that writes waits for the
//! write lock other processes hold up to 30 s; past it, it ends with exit code 9 and
//! `busy: retry …`, having changed nothing. A PostgreSQL server that refuses new
//! connections (`too many clients`) is asked again for 30 s, then the command ends with
//! exit code 9 and `unavailable: retry later; …`. `PIN_BUSY_TIMEOUT` (seconds) changes both
//! waits.
//!
//! # Test-only fast hashing
//!
//! `PIN_INSECURE_FAST_HASH=1` makes new hashes use Argon2id m=64 KiB, t=1 — worthless
//! against an attacker, for test suites only. A warning is printed on stderr each time.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool talks to its user on stdout and stderr"
)]

mod admin;
mod app;
mod cli;
mod db;
mod demo;
mod exit;
mod input;
mod key;
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
        clap_complete::generate(shell, &mut cmd, "pin", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if app::fast_hash() {
        eprintln!(
            "pin: warning: {}=1: insecure fast Argon2 parameters for new hashes — for tests only",
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
            let _ = written.and_then(|()| out.flush());
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
        println!("{obj}");
    }
    ExitCode::from(f.kind.code())
}

/// clap's error as one line, with a pointer to the help.
fn clap_message(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
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
