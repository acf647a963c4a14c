//! `pin audit verify | head | export | init-key`: the keyed audit chain, checked in the
//! database or offline in an export.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::path::Path;

use pin_core::audit::chain::{BreakKind, ChainHead, ChainReport};
use pin_core::audit::export::{self, ExportHeader, ExportLine, FORMAT};
use pin_core::store::Store;
use serde_json::json;

use crate::app::{self, Ctx};
use crate::audit_key;
use crate::cli::AuditCmd;
use crate::db::Access;
use crate::exit::{Failure, Kind};
use crate::report::Done;

/// Rows read per page by `pin audit export`: its memory is that of one page.
const PAGE: usize = 1000;

/// The longest line `pin audit verify --file` reads (an event is a few hundred bytes).
const MAX_LINE: u64 = 1 << 20;

/// Runs an audit sub-command other than `show`.
pub(crate) fn run(ctx: &Ctx, cmd: &AuditCmd) -> Result<Done, Failure> {
    match cmd {
        AuditCmd::Verify {
            file: Some(path),
            head,
        } => verify_file(ctx, path, head.as_deref()),
        AuditCmd::Verify { file: None, head } => verify_db(ctx, head.as_deref()),
        AuditCmd::Head => head(ctx),
        AuditCmd::Export { out } => export(ctx, out.as_deref()),
        AuditCmd::InitKey => init_key(ctx),
        AuditCmd::Show { .. } => Err(Failure::internal("audit show dispatched here")),
    }
}

fn parse_head(text: Option<&str>) -> Result<Option<ChainHead>, Failure> {
    text.map(|t| export::parse_head(t).map_err(|e| Failure::input(format!("--head: {e}"))))
        .transpose()
}

/// The report as JSON.
fn report_json(report: &ChainReport) -> serde_json::Value {
    json!({
        "intact": report.is_intact(),
        "intact_rows": report.intact_rows,
        "head": report.head.map(|h| json!({ "id": h.id, "hash": export::hex(&h.hash) })),
        "first_break": report
            .first_break
            .as_ref()
            .map(|b| json!({ "id": b.id, "kind": format!("{:?}", b.kind) })),
    })
}

/// Exit 8 for a broken chain, with what to do; else the summary.
fn conclude(
    command: &'static str,
    report: &ChainReport,
    what: &str,
    ctx: &Ctx,
) -> Result<Done, Failure> {
    if let Some(b) = &report.first_break {
        let hint = match &b.kind {
            BreakKind::UnknownKey { key_id } => format!(
                " — row {} is keyed under audit key {key_id}, which {} does not hold: pass the right --audit-key-file",
                b.id,
                ctx.audit_key_file.display()
            ),
            BreakKind::KeyedFromMismatch { recorded, expected } => format!(
                " — the audit key file says every row from {expected} on is keyed, the log records {}: rows were rewritten unkeyed, or this is not the database of that key",
                recorded.map_or_else(|| "no keyed row".to_owned(), |r| format!("row {r}"))
            ),
            BreakKind::HeadMismatch { recorded } => format!(
                " — the head {} kept elsewhere is not in the chain: rows were cut off or rewritten",
                export::format_head(recorded)
            ),
            _ => " — the log was changed outside this program".to_owned(),
        };
        return Err(Failure::new(
            Kind::Integrity,
            format!(
                "{what} is broken at row {} ({:?}); {} rows before it verify{hint}",
                b.id, b.kind, report.intact_rows
            ),
        ));
    }
    let text = format!(
        "{what} verifies: {} rows intact{}.\nKeep the head elsewhere (`pin audit head`) to detect a later truncation.\n",
        report.intact_rows,
        report
            .head
            .map(|h| format!(", head {}", export::format_head(&h)))
            .unwrap_or_default()
    );
    Ok(Done::ok(command, report_json(report), text))
}

/// Checks that the verified chain holds `head` (its row is there with its hash).
fn check_head<S: Store>(
    store: &S,
    report: &mut ChainReport,
    head: ChainHead,
) -> Result<(), Failure> {
    if !report.is_intact() || head.id == 0 {
        return Ok(());
    }
    let row = store.audit_page(head.id - 1, 1)?;
    let found = row
        .first()
        .filter(|r| r.id == head.id)
        .and_then(|r| r.link.as_ref())
        .map(|l| l.hash);
    if head.id > report.intact_rows || found != Some(head.hash) {
        report.first_break = Some(pin_core::audit::chain::ChainBreak {
            id: head.id.min(report.intact_rows + 1),
            kind: BreakKind::HeadMismatch { recorded: head },
        });
    }
    Ok(())
}

/// The chain of the database, keyed with the audit key file, against the boundary it
/// records (and `--head`).
fn verify_chain(ctx: &Ctx, head: Option<ChainHead>) -> Result<ChainReport, Failure> {
    let file = audit_key::load(&ctx.audit_key_file)?;
    let store = app::open_store_for(ctx, Access::Read)?;
    let mut report = store.verify_audit_chain()?;
    if let Some(f) = &file {
        report.check_keyed_from(store.audit_keyed_from()?, f.keyed_from);
    }
    if let Some(h) = head {
        check_head(&store, &mut report, h)?;
    }
    Ok(report)
}

fn verify_db(ctx: &Ctx, head: Option<&str>) -> Result<Done, Failure> {
    let head = parse_head(head)?;
    let report = verify_chain(ctx, head)?;
    conclude("audit verify", &report, "The audit chain", ctx)
}

/// `pin audit head`: the head of the verified chain.
fn head(ctx: &Ctx) -> Result<Done, Failure> {
    let report = verify_chain(ctx, None)?;
    if report.first_break.is_some() {
        return conclude("audit head", &report, "The audit chain", ctx);
    }
    let head = report.head.unwrap_or(ChainHead {
        id: 0,
        hash: pin_core::audit::chain::GENESIS,
    });
    Ok(Done::ok(
        "audit head",
        json!({ "id": head.id, "hash": export::hex(&head.hash), "head": export::format_head(&head) }),
        format!("{}\n", export::format_head(&head)),
    ))
}

/// `pin audit verify --file`: an export, offline.
fn verify_file(ctx: &Ctx, path: &Path, head: Option<&str>) -> Result<Done, Failure> {
    let head = parse_head(head)?;
    let keys = audit_key::load(&ctx.audit_key_file)?;
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::input(format!("cannot read the export {}: {e}", path.display())))?;
    let mut reader = BufReader::new(file);
    let bad = |why: &str| {
        Failure::input(format!(
            "{} is not an audit export of pin ({why})",
            path.display()
        ))
    };
    let first = read_line(&mut reader)
        .map_err(|e| bad(&e))?
        .ok_or_else(|| bad("it is empty"))?;
    let header: ExportHeader =
        serde_json::from_str(&first).map_err(|_| bad("its first line is not the header"))?;
    if header.format != FORMAT || header.version != 1 {
        return Err(bad("unknown format or version"));
    }
    let mut failure = None;
    let lines = std::iter::from_fn(|| match read_line(&mut reader) {
        Ok(Some(line)) => Some(serde_json::from_str::<ExportLine>(&line).ok()),
        Ok(None) => None,
        Err(e) => {
            failure = Some(e);
            None
        }
    });
    let report = export::verify_export(
        lines,
        &header,
        keys.as_ref().map(|k| &k.keys),
        keys.as_ref().map(|k| k.keyed_from),
        head,
    )?;
    if let Some(e) = failure {
        return Err(bad(&e));
    }
    conclude("audit verify", &report, "The exported audit chain", ctx)
}

/// One line (without its end), `None` at the end; a line longer than [`MAX_LINE`] is an
/// error.
fn read_line(reader: &mut impl BufRead) -> Result<Option<String>, String> {
    let mut buf = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    if u64::try_from(buf.len()).unwrap_or(u64::MAX) > MAX_LINE {
        return Err("a line is longer than 1 MiB".to_owned());
    }
    let text = String::from_utf8(buf).map_err(|_| "it is not UTF-8 text".to_owned())?;
    Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
}

/// `pin audit export`: JSON lines, page by page.
fn export(ctx: &Ctx, out: Option<&Path>) -> Result<Done, Failure> {
    if out.is_none() && ctx.json {
        return Err(Failure::input(
            "pin audit export writes JSON lines to stdout; with --json, pass --out FILE so the summary does not mix with them",
        ));
    }
    let store = app::open_store_for(ctx, Access::Read)?;
    let keyed_from = store.audit_keyed_from()?;
    let (mut sink, path): (Box<dyn Write>, Option<&Path>) = match out {
        Some(p) => (
            Box::new(std::io::BufWriter::new(create_private(p)?)),
            Some(p),
        ),
        None => (
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            None,
        ),
    };
    let written = write_export(&store, keyed_from, &mut sink);
    let written = written.and_then(|n| {
        sink.flush()
            .map_err(|e| write_failure(path, &e))
            .map(|()| n)
    });
    drop(sink);
    let (rows, last) = match written {
        Ok(n) => n,
        // The reader stopped reading (`| head`): its choice, not an error.
        Err(None) => return Ok(Done::ok("audit export", json!({}), String::new())),
        Err(Some(f)) => {
            if let Some(p) = path {
                let _ = std::fs::remove_file(p);
            }
            return Err(f);
        }
    };
    let head = last.map(|h| export::format_head(&h));
    let Some(p) = path else {
        return Ok(Done::ok("audit export", json!({}), String::new()));
    };
    Ok(Done::ok(
        "audit export",
        json!({ "rows": rows, "out": p.display().to_string(), "head": head }),
        format!(
            "Exported {rows} audit rows to {}{}.\nCheck it offline with `pin audit verify --file {}` (needs the audit key).\n",
            p.display(),
            head.map(|h| format!(" (head {h})")).unwrap_or_default(),
            p.display()
        ),
    ))
}

fn write_failure(path: Option<&Path>, e: &std::io::Error) -> Option<Failure> {
    if path.is_none() && e.kind() == ErrorKind::BrokenPipe {
        return None;
    }
    Some(Failure::storage(format!(
        "cannot write the export{}: {e}",
        path.map(|p| format!(" {}", p.display()))
            .unwrap_or_default()
    )))
}

/// Writes the header and every row; the count and the last row's head. `Err(None)`: stdout
/// was closed by its reader.
fn write_export<S: Store>(
    store: &S,
    keyed_from: Option<u64>,
    sink: &mut dyn Write,
) -> Result<(u64, Option<ChainHead>), Option<Failure>> {
    let line = |sink: &mut dyn Write, v: String| -> Result<(), std::io::Error> {
        sink.write_all(v.as_bytes())?;
        sink.write_all(b"\n")
    };
    let to_json = |e: serde_json::Error| Some(Failure::internal(format!("export: {e}")));
    line(
        sink,
        serde_json::to_string(&ExportHeader::new(keyed_from)).map_err(to_json)?,
    )
    .map_err(|e| write_failure(None, &e))?;
    let (mut after, mut rows, mut last) = (0, 0_u64, None);
    loop {
        let page = store.audit_page(after, PAGE).map_err(|e| Some(e.into()))?;
        let Some(end) = page.last() else {
            break;
        };
        after = end.id;
        for record in &page {
            let l = ExportLine::of(record).ok_or_else(|| {
                Some(Failure::internal(
                    "this store keeps no audit chain to export",
                ))
            })?;
            last = record.link.as_ref().map(|k| ChainHead {
                id: record.id,
                hash: k.hash,
            });
            line(sink, serde_json::to_string(&l).map_err(to_json)?)
                .map_err(|e| write_failure(None, &e))?;
            rows += 1;
        }
    }
    Ok((rows, last))
}

/// A new file of mode 0600 (an export holds personal data), never overwriting.
fn create_private(path: &Path) -> Result<std::fs::File, Failure> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => Failure::refused(format!(
            "{} already exists; an export never overwrites a file",
            path.display()
        )),
        _ => Failure::storage(format!("cannot create {}: {e}", path.display())),
    })
}

/// `pin audit init-key`: the audit key of a database written before keying.
fn init_key(ctx: &Ctx) -> Result<Done, Failure> {
    if ctx.audit_key_file.exists() {
        return Err(Failure::refused(format!(
            "the audit key file {} already exists; it is never overwritten",
            ctx.audit_key_file.display()
        )));
    }
    if !ctx.db.exists() {
        return Err(Failure::storage(format!(
            "no PIN database at {}; `pin init` creates a database with its audit key",
            ctx.db.display()
        )));
    }
    // Opened without an audit key: this is the one command that may.
    let store = ctx.db.open(Access::Write)?;
    if let Some(from) = store.audit_keyed_from()? {
        return Err(Failure::refused(format!(
            "the audit chain of {} is already keyed from row {from}: restore its audit key file from your backup (a new key cannot verify it)",
            ctx.db.display()
        )));
    }
    let report = store.verify_audit_chain()?;
    if let Some(b) = &report.first_break {
        return Err(Failure::new(
            Kind::Integrity,
            format!(
                "the audit chain is broken at row {} ({:?}); it is not keyed over a broken chain — find out what changed it first",
                b.id, b.kind
            ),
        ));
    }
    let keyed_from = report.head.map_or(1, |h| h.id + 1);
    audit_key::write_new(&ctx.audit_key_file, keyed_from)?;
    Ok(Done::ok(
        "audit init-key",
        json!({ "audit_key_file": ctx.audit_key_file.display().to_string(), "keyed_from": keyed_from }),
        format!(
            "Created the audit key file {} (mode 0600).\nRows 1 to {} stay verifiable as unkeyed SHA-256 links; every row from {keyed_from} on is keyed with it.\nKeep it secret and back it up apart from the database.\n",
            ctx.audit_key_file.display(),
            keyed_from - 1
        ),
    ))
}
