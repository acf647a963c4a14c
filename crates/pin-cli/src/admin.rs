//! Set-up and inspection: init, policy, outbox, audit, import, hash.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal};
use std::path::Path;

use chrono::{DateTime, Utc};
use pin_core::Actor;
use pin_core::command::Imported;
use pin_core::contact::Contacts;
use pin_core::format::{self, PinFormat};
use pin_core::hash::PinHash;
use pin_core::store::Store;
use pin_core::subject::{Level, Role, Stage};
use pin_core::tax_code::TaxCode;
use serde_json::{Value, json};

use crate::app::{self, Ctx, Service};
use crate::cli::AuditCmd;
use crate::exit::{Failure, Kind, one_line};
use crate::outbox;
use crate::report::{Done, snake};
use crate::{audit_key, key};

/// `pin init`: the key first (never overwritten), then the database; a failure removes the
/// key it just wrote, so that nothing is left half made.
pub(crate) fn init(ctx: &Ctx) -> Result<Done, Failure> {
    if ctx.key_file.exists() {
        return Err(Failure::refused(format!(
            "the key file {} already exists; `pin init` never overwrites a key (every stored PIN hash depends on it)",
            ctx.key_file.display()
        )));
    }
    if ctx.db.exists() {
        let store = ctx.db.open(crate::db::Access::Write)?;
        if !store.audit_log(None)?.is_empty() {
            return Err(Failure::refused(format!(
                "the database {} already holds records but its key file {} is missing; restore the key from your backup (a new key would make every stored PIN unusable)",
                ctx.db.display(),
                ctx.key_file.display()
            )));
        }
    }
    if ctx.audit_key_file.exists() {
        return Err(Failure::refused(format!(
            "the audit key file {} already exists; `pin init` never overwrites a key (the audit chain depends on it)",
            ctx.audit_key_file.display()
        )));
    }
    let k = key::random_key()?;
    key::write_new(&ctx.key_file, &k)?;
    // A new database: its audit chain is keyed from the first row.
    let made = audit_key::write_new(&ctx.audit_key_file, 1).and_then(|()| {
        app::create_store(ctx).inspect_err(|_| {
            let _ = std::fs::remove_file(&ctx.audit_key_file);
        })
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&ctx.key_file);
        return Err(e);
    }
    let json = json!({
        "db": ctx.db.display().to_string(),
        "key_file": ctx.key_file.display().to_string(),
        "audit_key_file": ctx.audit_key_file.display().to_string(),
        "outbox": ctx.outbox.display().to_string(),
    });
    let text = format!(
        "Created the database {}, the key file {} and the audit key file {} (mode 0600).\n\
         Keep both keys secret and back them up apart from the database: without the key no stored PIN can be verified, without the audit key the audit log cannot be proved.\n\
         Messages to people will be written to {}.\n",
        ctx.db.display(),
        ctx.key_file.display(),
        ctx.audit_key_file.display(),
        ctx.outbox.display()
    );
    Ok(Done::ok("init", json, text))
}

fn months(m: Option<u32>) -> Value {
    m.map_or(Value::Null, Value::from)
}

/// `pin policy`.
pub(crate) fn policy() -> Result<Done, Failure> {
    let p = app::policy()?;
    let h = |x: pin_core::hash::HashParams| json!({"m_kib": x.m_kib, "t_cost": x.t_cost, "p_cost": x.p_cost});
    let json = json!({
        "noipa_lockout": p.noipa_lockout(),
        "inps_lockout": p.inps_lockout(),
        "rotation_citizen_months": p.rotation_citizen_months(),
        "rotation_intermediary_months": p.rotation_intermediary_months(),
        "noipa_rotation_months": months(p.noipa_rotation_months()),
        "resend_limit": p.resend_limit(),
        "resend_window_seconds": p.resend_window().num_seconds(),
        "support_resend_after_seconds": p.support_resend_after().num_seconds(),
        "unused_expiry_digital_seconds": p.unused_expiry_digital().num_seconds(),
        "unused_expiry_post_seconds": p.unused_expiry_post().num_seconds(),
        "noipa_auto_issue_from": p.noipa_auto_issue_from().to_string(),
        "hash_live": h(p.hash_live()),
        "hash_floor": h(p.hash_floor()),
        "hash_cap": h(p.hash_cap()),
        "insecure_fast_hash": app::fast_hash(),
    });
    let hp = |x: pin_core::hash::HashParams| {
        format!("m={} KiB, t={}, p={}", x.m_kib, x.t_cost, x.p_cost)
    };
    let mut text = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(text, "{k:<38} {v}");
    };
    line(
        "lockout NoiPA (POL-1)",
        format!("{} wrong attempts", p.noipa_lockout()),
    );
    line(
        "lockout INPS (INPS-12)",
        format!("{} wrong attempts", p.inps_lockout()),
    );
    line(
        "rotation citizens (INPS-11)",
        format!("{} months", p.rotation_citizen_months()),
    );
    line(
        "rotation intermediaries (INPS-11)",
        format!("{} months", p.rotation_intermediary_months()),
    );
    line(
        "rotation NoiPA (POL-2)",
        p.noipa_rotation_months()
            .map_or_else(|| "never".to_owned(), |m| format!("{m} months")),
    );
    line(
        "re-sends (POL-4)",
        format!(
            "at most {} in {} h",
            p.resend_limit(),
            p.resend_window().num_hours()
        ),
    );
    line(
        "support re-send after (NOIPA-5)",
        format!("{} h", p.support_resend_after().num_hours()),
    );
    line(
        "unused PIN expiry, digital",
        format!("{} days", p.unused_expiry_digital().num_days()),
    );
    line(
        "unused PIN expiry, post",
        format!("{} days", p.unused_expiry_post().num_days()),
    );
    line(
        "NoiPA PIN at enrolment from (NOIPA-2)",
        p.noipa_auto_issue_from().to_string(),
    );
    line("Argon2id live", hp(p.hash_live()));
    line("Argon2id accepted from", hp(p.hash_floor()));
    line("Argon2id accepted up to", hp(p.hash_cap()));
    if app::fast_hash() {
        line(
            "WARNING",
            "insecure fast hashing (PIN_INSECURE_FAST_HASH=1): tests only".to_owned(),
        );
    }
    Ok(Done::ok("policy", json, text))
}

/// `pin outbox`.
pub(crate) fn outbox(ctx: &Ctx, tax: Option<&TaxCode>) -> Result<Done, Failure> {
    let all = outbox::list(&ctx.outbox).map_err(|e| {
        Failure::internal(format!(
            "cannot read the outbox {}: {e}",
            ctx.outbox.display()
        ))
    })?;
    let listed: Vec<_> = all
        .into_iter()
        .filter(|l| tax.is_none_or(|t| l.subject == t.as_str()))
        .collect();
    let mut text = String::new();
    if listed.is_empty() {
        let _ = writeln!(text, "No messages in {}.", ctx.outbox.display());
    }
    for l in &listed {
        let _ = writeln!(
            text,
            "{}  (serial {}, part {} of {}, {})",
            ctx.outbox.join(&l.file).display(),
            l.serial,
            l.part,
            l.of,
            l.channel
        );
    }
    let json = json!({
        "outbox": ctx.outbox.display().to_string(),
        "messages": listed,
    });
    Ok(Done::ok("outbox", json, text))
}

/// `pin audit show` (the other audit sub-commands: [`crate::audit_cmd`]).
pub(crate) fn audit(ctx: &Ctx, cmd: &AuditCmd) -> Result<Done, Failure> {
    let store = app::open_store_for(ctx, crate::db::Access::Read)?;
    match cmd {
        AuditCmd::Show { tax_code } => {
            let events = store.audit_log(tax_code.as_ref())?;
            let mut text = String::new();
            for e in &events {
                let channels: Vec<String> = e
                    .channels
                    .iter()
                    .map(|c| outbox::channel_name(*c).to_owned())
                    .collect();
                let _ = writeln!(
                    text,
                    "{}  {}  {:<28} {:<24} {:<26} {}{}{}",
                    e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    e.subject,
                    e.actor,
                    e.action,
                    e.outcome,
                    e.serial.map(|s| format!("serial={s} ")).unwrap_or_default(),
                    if channels.is_empty() {
                        String::new()
                    } else {
                        format!("via {} ", channels.join("+"))
                    },
                    e.detail
                );
            }
            if events.is_empty() {
                text.push_str("The audit log is empty.\n");
            }
            Ok(Done::ok("audit show", json!({ "events": events }), text))
        }
        _ => Err(Failure::internal("audit sub-command dispatched to show")),
    }
}

/// One line of an import file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    tax_code: TaxCode,
    role: Role,
    #[serde(default)]
    contacts: Contacts,
    hash: PinHash,
    format: PinFormat,
    level: Level,
    stage: Stage,
    issued_at: DateTime<Utc>,
    #[serde(default)]
    changed_at: Option<DateTime<Utc>>,
}

/// Longest line `pin import` reads. A subject's line is about 500 bytes; a longer one is
/// not an import line (`/dev/zero`, a binary file), and reading it whole would hold it in
/// memory.
pub(crate) const MAX_IMPORT_LINE: usize = 64 * 1024;

/// Why a line could not be read.
enum LineError {
    TooLong,
    Io(std::io::Error),
}

/// Reads the next line into `buf` (cleared first; without its `\n` or `\r\n`), never
/// holding more than [`MAX_IMPORT_LINE`] bytes. `Ok(false)` at the end of the input.
fn read_line_bounded(r: &mut dyn BufRead, buf: &mut Vec<u8>) -> Result<bool, LineError> {
    buf.clear();
    loop {
        let chunk = match r.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if chunk.is_empty() {
            return Ok(!buf.is_empty());
        }
        let newline = chunk.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(chunk.len());
        if buf.len() + take > MAX_IMPORT_LINE {
            return Err(LineError::TooLong);
        }
        buf.extend_from_slice(chunk.get(..take).unwrap_or_default());
        r.consume(take + usize::from(newline.is_some()));
        if newline.is_some() {
            if buf.last() == Some(&b'\r') {
                let _ = buf.pop();
            }
            return Ok(true);
        }
    }
}

/// The lines of an import file as records, one at a time, for
/// [`pin_core::service::PinService::import_streamed`]. A line that cannot be read or
/// parsed stops the import: its [`Failure`] is kept here (the service sees only that the
/// stream stopped).
struct ImportLines<'a> {
    reader: Box<dyn BufRead + 'a>,
    buf: Vec<u8>,
    /// Number of the last line read (1-based).
    line: usize,
    /// Bytes read so far, for the progress bar.
    bytes: u64,
    /// Records handed out so far.
    records: u64,
    /// The line number and tax code of the last record handed out: the one the service
    /// or the store refused, when they refuse one.
    last: Option<(usize, TaxCode)>,
    failure: Option<Failure>,
    bar: &'a indicatif::ProgressBar,
}

impl ImportLines<'_> {
    fn stop(&mut self, failure: Failure) -> pin_core::Error {
        self.failure = Some(failure);
        pin_core::InputError::Import("a line of the import file is not valid").into()
    }

    fn show_progress(&self) {
        self.bar.set_position(self.bytes);
        let secs = self.bar.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            format!(", {:.0}/s", self.records as f64 / secs)
        } else {
            String::new()
        };
        self.bar
            .set_message(format!("{} subjects{rate}", self.records));
    }
}

impl Iterator for ImportLines<'_> {
    type Item = Result<(TaxCode, Imported), pin_core::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match read_line_bounded(&mut *self.reader, &mut self.buf) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(LineError::TooLong) => {
                    let n = self.line + 1;
                    let f = Failure::input(format!(
                        "import line {n}: longer than {MAX_IMPORT_LINE} bytes; an import line holds one subject as JSON (about 500 bytes): is this an import file?"
                    ));
                    return Some(Err(self.stop(f)));
                }
                Err(LineError::Io(e)) => {
                    let f = Failure::input(format!(
                        "cannot read the import file after line {}: {e}",
                        self.line
                    ));
                    return Some(Err(self.stop(f)));
                }
            }
            self.line += 1;
            self.bytes += self.buf.len() as u64 + 1;
            if self.line.is_multiple_of(1024) {
                self.show_progress();
            }
            if self.buf.trim_ascii().is_empty() {
                continue;
            }
            return Some(match parse_import_line(self.line, &self.buf) {
                Ok((tax, imported)) => {
                    self.records += 1;
                    self.last = Some((self.line, tax.clone()));
                    Ok((tax, imported))
                }
                Err(f) => Err(self.stop(f)),
            });
        }
    }
}

/// One line of an import file, parsed, with the checks only the CLI can make (the key of
/// this database); pin-core checks the rest.
fn parse_import_line(n: usize, line: &[u8]) -> Result<(TaxCode, Imported), Failure> {
    let row: ImportLine = serde_json::from_slice(line)
        .map_err(|e| Failure::input(format!("import line {n}: {}", one_line(&e.to_string()))))?;
    if row.hash.key_id != key::KEY_ID {
        return Err(Failure::input(format!(
            "import line {n}: the hash was made with key id {}, this database's key has id {}; make it with `pin hash`",
            row.hash.key_id.0,
            key::KEY_ID.0
        )));
    }
    if !row.hash.phc.starts_with("$argon2id$v=19$") {
        return Err(Failure::input(format!(
            "import line {n}: the hash is not an Argon2id v19 PHC string"
        )));
    }
    let imported = Imported {
        role: row.role,
        contacts: row.contacts,
        hash: row.hash,
        format: row.format,
        level: row.level,
        stage: row.stage,
        issued_at: row.issued_at,
        changed_at: row.changed_at,
    };
    Ok((row.tax_code, imported))
}

/// A progress bar on stderr when it is a terminal (and not under `--json`); hidden
/// otherwise. With `total` (bytes of a file) it shows the share done and an ETA; without,
/// a spinner.
pub(crate) fn progress_bar(ctx: &Ctx, total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    if ctx.json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(total) => (
            indicatif::ProgressBar::new(total),
            "{prefix} [{elapsed_precise}] {wide_bar} {percent:>3}%  {msg}  ETA {eta}",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{spinner} {prefix} [{elapsed_precise}] {msg}",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// `pin import`: streams the file, one line at a time, into one transaction: on SQLite
/// memory stays bounded whatever the file's size (PostgreSQL's store still collects the
/// decided subjects first), and one bad line imports nothing.
pub(crate) fn import<S: Store>(
    ctx: &Ctx,
    svc: &Service<S>,
    file: &Path,
    actor: &Actor,
) -> Result<Done, Failure> {
    if *actor != Actor::System {
        return Err(Failure::refused(format!(
            "{} may not import subjects: operators enrol, the system imports (use --as system)",
            actor.label()
        )));
    }
    let (reader, total): (Box<dyn BufRead>, Option<u64>) = if file == Path::new("-") {
        (
            Box::new(std::io::BufReader::with_capacity(
                1 << 16,
                std::io::stdin().lock(),
            )),
            None,
        )
    } else {
        let f = std::fs::File::open(file).map_err(|e| {
            Failure::input(format!(
                "cannot read the import file {}: {e}",
                file.display()
            ))
        })?;
        let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        (Box::new(std::io::BufReader::with_capacity(1 << 16, f)), len)
    };
    let bar = progress_bar(ctx, total, "importing");
    let mut lines = ImportLines {
        reader,
        buf: Vec::with_capacity(1024),
        line: 0,
        bytes: 0,
        records: 0,
        last: None,
        failure: None,
        bar: &bar,
    };
    let result = svc.import_streamed(&mut lines, ctx.now);
    lines.show_progress();
    bar.finish_and_clear();
    let nothing = "nothing was imported";
    if let Some(f) = lines.failure.take() {
        return Err(Failure::new(f.kind, format!("{}; {nothing}", f.message)));
    }
    let last = lines.last.take();
    // A store that streams (SQLite) refuses the last record pulled; over PostgreSQL the
    // whole file is pulled first, so the record cannot be named that way.
    let streams = matches!(ctx.db, crate::db::Db::File(_));
    let n = result.map_err(|e| match e {
        pin_core::Error::Batch { source, .. } => {
            // A hash from the file that this database could not verify is bad input.
            let from_file = matches!(*source, pin_core::Error::Hash(_));
            let mut f = Failure::from(*source);
            if from_file {
                f.kind = Kind::Input;
            }
            let line = last.as_ref().map_or(0, |(line, _)| *line);
            Failure::new(
                f.kind,
                format!("import line {line}: {}; {nothing}", f.message),
            )
        }
        pin_core::Error::Store(pin_core::store::StoreError::Exists) => match last {
            // After the rollback: on record before the import, or twice in the file.
            Some((line, t)) if svc.store().load(&t).is_ok_and(|l| l.is_some()) => Failure::refused(
                format!("import line {line}: {t} is already on record; {nothing}"),
            ),
            Some((line, t)) if streams => Failure::refused(format!(
                "import line {line}: {t} appears twice in the file; {nothing}"
            )),
            _ => Failure::refused(format!(
                "a subject of the file is already on record or appears twice in it; {nothing}"
            )),
        },
        pin_core::Error::EmailInUse if streams => {
            let f = Failure::from(pin_core::Error::EmailInUse);
            match last {
                Some((line, t)) => Failure::new(
                    f.kind,
                    format!("import line {line} ({t}): {}; {nothing}", f.message),
                ),
                None => Failure::new(f.kind, format!("{}; {nothing}", f.message)),
            }
        }
        other => {
            let f = Failure::from(other);
            Failure::new(f.kind, format!("{}; {nothing}", f.message))
        }
    })?;
    if n == 0 {
        return Err(Failure::input("the import file holds no subject"));
    }
    let text = format!("Imported {n} subject(s).\n");
    Ok(Done::ok(
        "import",
        json!({ "imported": n, "lines": lines.line }),
        text,
    ))
}

/// `pin hash`: PINs from stdin, hashes out — to prepare import files. Every PIN is read
/// and checked first (a bad one hashes nothing); then they are hashed on all cores, each
/// worker with its own OS-seeded generator, and printed in input order.
pub(crate) fn hash(ctx: &Ctx, format: PinFormat) -> Result<Done, Failure> {
    let policy = app::policy()?;
    let hasher = app::hasher(ctx, &policy)?;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Failure::input(
            "pipe the PINs to hash on standard input, one per line",
        ));
    }
    let mut pins = Vec::new();
    let mut reader = stdin.lock();
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(1024));
    let mut n = 0usize;
    loop {
        match read_line_bounded(&mut reader, &mut buf) {
            Ok(false) => break,
            Ok(true) => {}
            Err(LineError::TooLong) => {
                return Err(Failure::input(format!(
                    "line {}: longer than {MAX_IMPORT_LINE} bytes; pipe one PIN per line",
                    n + 1
                )));
            }
            Err(LineError::Io(e)) => {
                return Err(Failure::input(format!("cannot read standard input: {e}")));
            }
        }
        n += 1;
        let line = std::str::from_utf8(&buf)
            .map_err(|_| Failure::input(format!("line {n}: PIN: not UTF-8 text")))?;
        if line.trim().is_empty() {
            continue;
        }
        let pin = format::parse_input(format, line)
            .map_err(|e| Failure::input(format!("line {n}: PIN: {e}")))?;
        pins.push(pin);
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, pins.len().max(1));
    let rngs = (0..workers)
        .map(|_| app::os_rng())
        .collect::<Result<Vec<_>, Failure>>()?;
    let bar = progress_bar(ctx, Some(pins.len() as u64), "hashing");
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<PinHash, pin_core::hash::HashError>)> =
        std::thread::scope(|scope| {
            let workers: Vec<_> = rngs
                .into_iter()
                .map(|mut rng| {
                    let (pins, hasher, next, bar) = (&pins, &hasher, &next, &bar);
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        let mut memory = pin_core::hash::HashMemory::default();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(pin) = pins.get(i) else {
                                return out;
                            };
                            out.push((i, hasher.hash_reusing(pin, &mut rng, &mut memory)));
                            bar.inc(1);
                            let secs = bar.elapsed().as_secs_f64();
                            if secs > 0.0 {
                                bar.set_message(format!(
                                    "{} hashed, {:.1}/s",
                                    bar.position(),
                                    bar.position() as f64 / secs
                                ));
                            }
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
    bar.finish_and_clear();
    if done.len() != pins.len() {
        return Err(Failure::internal("a hashing worker stopped unexpectedly"));
    }
    done.sort_unstable_by_key(|(i, _)| *i);
    let hashes = done
        .into_iter()
        .map(|(_, h)| h.map_err(|e| Failure::internal(e.to_string())))
        .collect::<Result<Vec<_>, Failure>>()?;
    let text: String = hashes
        .iter()
        .map(|h| format!("{}\n", serde_json::to_string(h).unwrap_or_default()))
        .collect();
    let json = json!({ "format": snake(&format), "hashes": hashes });
    Ok(Done::ok("hash", json, text))
}
