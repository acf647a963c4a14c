//! The outbox notifier: one file per message, the only place an issued PIN appears.
//!
//! A message for part `P` of `N` of credential serial `S` of subject `TAX` on channel `CH`
//! is written to `<outbox>/<TAX>-s<S>-p<P>of<N>-<CH>.txt` (e.g.
//! `RSSMRA85T10A562S-s3-p1of2-sms.txt`), with mode 0600. Its body is the text the person
//! would receive — an e-mail, an SMS, a phone operator's script, a letter, or the slip in a
//! sealed envelope — with the secret on a line of its own: `PIN: 48213`, or
//! `PIN (part 2 of 2): K7QM2ZXA` when the PIN is split.
//!
//! A security notice (POL-6) is written to `<outbox>/<TAX>-notice-<TIME>-<KIND>-<CH>.txt`
//! (e.g. `RSSMRA85T10A562S-notice-20250115T090000Z-contacts_changed-email.txt`; `-2`, `-3`
//! … before `.txt` when the name is taken). It carries no secret and has no `PIN` line.
//!
//! Every file is written atomically: the body goes to a temporary `.pin-*.tmp` file in the
//! outbox (mode 0600), which is synced and then renamed to its final name (never replacing
//! a file there), and the directory is synced. A reader never sees a partial or zero-byte
//! message under its final name, and a failed write leaves nothing behind.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use pin_core::command::{Delivery, Notice, NoticeKind};
use pin_core::notify::{DeliveryError, Notifier, Receipt};
use pin_core::subject::{Channel, Origin};
use pin_core::tax_code::TaxCode;
use serde::Serialize;
use tempfile::NamedTempFile;
use zeroize::Zeroizing;

/// A [`Notifier`] writing each message into a directory.
#[derive(Debug)]
pub(crate) struct FileOutbox {
    dir: PathBuf,
}

impl FileOutbox {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

/// The stable short name of a channel, used in file names and output.
pub(crate) fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Email => "email",
        Channel::Sms => "sms",
        Channel::Pec => "pec",
        Channel::Phone => "phone",
        Channel::Post => "post",
        Channel::SealedEnvelope => "envelope",
    }
}

/// Parses a channel name as [`channel_name`] writes it (and `sealed-envelope`).
pub(crate) fn parse_channel(s: &str) -> Option<Channel> {
    Some(match s {
        "email" | "e-mail" => Channel::Email,
        "sms" => Channel::Sms,
        "pec" => Channel::Pec,
        "phone" => Channel::Phone,
        "post" | "letter" => Channel::Post,
        "envelope" | "sealed-envelope" | "sealed_envelope" => Channel::SealedEnvelope,
        _ => return None,
    })
}

/// The file name of a message.
pub(crate) fn file_name(tax: &TaxCode, serial: u64, part: u8, of: u8, channel: Channel) -> String {
    format!(
        "{}-s{serial}-p{part}of{of}-{}.txt",
        tax.as_str(),
        channel_name(channel)
    )
}

/// The line carrying the secret.
fn secret_line(d: &Delivery) -> Zeroizing<String> {
    let secret = d.secret.expose_secret();
    Zeroizing::new(if d.of > 1 {
        format!("PIN (part {} of {}): {secret}", d.part, d.of)
    } else {
        format!("PIN: {secret}")
    })
}

fn why(origin: Origin) -> &'static str {
    match origin {
        Origin::Enrolment => "you were enrolled as a public employee",
        Origin::Identification => "you were identified by your office's RID",
        Origin::Branch => "you asked for it at an INPS branch counter",
        Origin::Web => "you asked for it on the INPS website",
        Origin::ContactCentre => "you asked for it through the INPS contact centre",
        Origin::PreAssigned => "INPS assigned you a PIN",
        Origin::Reset => "you asked to reset your PIN",
        Origin::Resend => "the previous PIN was re-sent; the earlier one no longer works",
        Origin::Import => "your PIN was migrated",
    }
}

/// The body of the message a person receives (contains the secret).
pub(crate) fn render(d: &Delivery) -> Zeroizing<String> {
    let noipa = d.secret.len() == 5 && d.of == 1;
    let issuer = if noipa { "NoiPA" } else { "INPS" };
    let split_note = match (d.part, d.of, d.origin) {
        (_, 1, _) => String::new(),
        (1, 2, Origin::PreAssigned) => "This letter carries the first 8 characters of your PIN. \
             Activate it on the INPS website with your health card (tessera sanitaria) data; \
             the last 8 characters will then be sent to you by e-mail or SMS."
            .to_owned(),
        (1, 2, _) => "These are the FIRST 8 characters of your 16-character PIN; the last 8 \
             arrive separately."
            .to_owned(),
        (_, _, _) => "These are the LAST 8 characters of your 16-character PIN; put them after \
             the first 8 you received separately. At first access you will replace the 16 \
             characters with a PIN of 8."
            .to_owned(),
    };
    let secret = secret_line(d);
    // Capacity up front: no reallocation, so no stray copies of the PIN in freed memory.
    let mut out = Zeroizing::new(String::with_capacity(4096));
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    match d.channel {
        Channel::Email | Channel::Pec => {
            let kind = if d.channel == Channel::Pec {
                "PEC (certified e-mail)"
            } else {
                "e-mail"
            };
            line(&format!("To: {}", d.recipient));
            line(&format!("From: no-reply@{}.example", issuer.to_lowercase()));
            line(&format!("Subject: Your {issuer} PIN"));
            line(&format!("Channel: {kind}"));
            line("");
            line("Dear user,");
            line("");
            line(&format!(
                "we are sending you your personal {issuer} PIN because {}.",
                why(d.origin)
            ));
            if !split_note.is_empty() {
                line(&split_note);
            }
            line("");
            line(&secret);
            line("");
            line("The PIN is personal and secret: never tell it to anyone, not even to our staff.");
            line(&format!(
                "If you did not ask for it, contact {issuer} at once."
            ));
        }
        Channel::Sms => {
            line(&format!("To: {}", d.recipient));
            line("Channel: SMS");
            line("");
            let sms = format!("{issuer}: {}. {split_note}", why(d.origin));
            line(sms.trim_end());
            line(&secret);
            line("Never share it.");
        }
        Channel::Phone => {
            line(&format!("Phone call to: {}", d.recipient));
            line("Channel: phone (INPS contact-centre operator, script read aloud)");
            line("");
            line("\"Good morning. As you requested, I will now read you the first 8 characters");
            line("of your INPS PIN, one at a time. Please write them down.\"");
            line("");
            line(&secret);
            line("");
            line("\"The same characters are also sent to you by SMS or e-mail; the last 8");
            line("arrive by post at your residence address.\"");
        }
        Channel::Post => {
            line(&format!("Letter to: {}", d.recipient));
            line("Channel: post (sealed letter)");
            line("");
            line(&format!(
                "Dear citizen, we write to you because {}.",
                why(d.origin)
            ));
            if !split_note.is_empty() {
                line(&split_note);
            }
            line("");
            line(&secret);
            line("");
            line("Keep this letter in a safe place and destroy it once you have changed the PIN.");
        }
        Channel::SealedEnvelope => {
            line("Sealed envelope handed over at the INPS branch counter");
            line("Channel: sealed envelope (to be opened by the person only)");
            line("");
            line("Your PIN of kind \"dispositivo\" is already active. At first access you will");
            line("replace these 16 characters with a PIN of 8.");
            line("");
            line(&secret);
        }
    }
    out
}

/// The stable name of a notice kind, used in file names.
pub(crate) fn notice_kind_name(k: NoticeKind) -> &'static str {
    match k {
        NoticeKind::ContactsChanged => "contacts_changed",
        NoticeKind::PinReset => "pin_reset",
        NoticeKind::PinIssuedByOther { .. } => "pin_issued",
        NoticeKind::Locked => "locked",
        NoticeKind::DeliveryFailed => "delivery_failed",
    }
}

/// Who asked, in words.
fn requester(by: &str) -> &'static str {
    match by {
        "rid" => "your office's RID",
        "enrolment_operator" => "an enrolment operator",
        "support" => "the support service",
        "branch_operator" => "an INPS branch operator",
        "contact_centre" => "an INPS contact-centre operator",
        "representative" => "a representative acting for you",
        _ => "someone other than you",
    }
}

/// The body of a security notice (POL-6): what happened, when, and what to do if it was not
/// you. No secret, no `PIN` line.
pub(crate) fn render_notice(n: &Notice) -> String {
    let what = match n.kind {
        NoticeKind::ContactsChanged => {
            "the contacts (e-mail, mobile, PEC or address) on record for your PIN were changed"
                .to_owned()
        }
        NoticeKind::PinReset => "your PIN was reset; a new one was sent to you".to_owned(),
        NoticeKind::PinIssuedByOther { by } => format!(
            "a new PIN was issued at the request of {}; the earlier one no longer works",
            requester(by)
        ),
        NoticeKind::Locked => "your PIN was blocked after too many wrong attempts".to_owned(),
        NoticeKind::DeliveryFailed => "a new PIN could not be delivered to you; ask for a new one \
             (`pin resend`, not counted against your re-send limit) or update your contacts"
            .to_owned(),
    };
    let when = n.at.format("%Y-%m-%d %H:%M UTC");
    let mut out = String::new();
    let to = match n.channel {
        Channel::Sms => "Channel: SMS (security notice)",
        Channel::Pec => "Channel: PEC (security notice)",
        _ => "Channel: e-mail (security notice)",
    };
    out.push_str(&format!("To: {}\n{to}\n", n.recipient));
    if n.channel != Channel::Sms {
        out.push_str("Subject: Security notice about your credentials\n");
    }
    out.push('\n');
    out.push_str(&format!("On {when} {what}.\n"));
    out.push_str(
        "If this was you, nothing else is needed. If it was not, contact the issuer at once: \
         someone may be acting in your name.\n\
         This notice never contains a PIN, and nobody will ever ask you for yours.\n",
    );
    out
}

impl FileOutbox {
    /// A message file of that name exists. The same message (a delivery worker sending
    /// again a part whose receipt was lost when a process died: at least once) is delivered
    /// already; another body under that name (a file left by an older database) is refused,
    /// never overwritten.
    fn already_there(
        &self,
        path: &Path,
        body: &[u8],
        channel: Channel,
    ) -> Result<Receipt, DeliveryError> {
        let existing = Zeroizing::new(std::fs::read(path).unwrap_or_default());
        if existing.as_slice() == body {
            return Ok(if channel == Channel::SealedEnvelope {
                Receipt::Confirmed
            } else {
                Receipt::Sent
            });
        }
        Err(DeliveryError::Refused(format!(
            "outbox file {} already exists with another message",
            path.display()
        )))
    }

    /// Removes the temporary `.pin-*.tmp` files older than `age` that a process killed
    /// mid-write left in the outbox (they may hold a PIN in clear; the message itself waits
    /// in the delivery queue and is written again). A writer holds its temporary file for
    /// milliseconds, so an age of minutes never removes one in use. Returns how many were
    /// removed.
    pub(crate) fn sweep_temporaries(&self, age: std::time::Duration) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(".pin-") && name.ends_with(".tmp")) {
                continue;
            }
            let meta = entry.metadata()?;
            let old = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|e| e >= age);
            if meta.is_file() && old {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Creates the outbox directory when missing (mode 0700: it holds secrets). A directory
    /// that already exists is the operator's choice and left as it is; the CLI warns when
    /// others can enter it ([`permission_warning`]).
    fn ensure_dir(&self) -> Result<(), DeliveryError> {
        if self.dir.is_dir() {
            return Ok(());
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&self.dir).map_err(|e| {
            DeliveryError::Unavailable(format!(
                "outbox {}: cannot create the directory: {e}",
                self.dir.display()
            ))
        })
    }

    /// Writes `body` to a new temporary file in the outbox (mode 0600) and syncs it, so that
    /// it can be published under its final name by [`publish`].
    fn staged(&self, what: &str, body: &[u8]) -> Result<NamedTempFile, DeliveryError> {
        let unavailable = |e: std::io::Error| {
            DeliveryError::Unavailable(format!(
                "outbox {}: cannot write {what}: {e}",
                self.dir.display()
            ))
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".pin-").suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let mut file = builder.tempfile_in(&self.dir).map_err(unavailable)?;
        file.write_all(body)
            .and_then(|()| file.as_file().sync_all())
            .map_err(unavailable)?;
        Ok(file)
    }

    /// Makes the directory entry of a published file durable.
    fn sync_dir(&self, what: &str) -> Result<(), DeliveryError> {
        #[cfg(unix)]
        {
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| {
                    DeliveryError::Unavailable(format!(
                        "outbox {}: cannot sync the directory after writing {what}: {e}",
                        self.dir.display()
                    ))
                })?;
        }
        #[cfg(not(unix))]
        let _ = what;
        Ok(())
    }
}

/// Publishes a staged file under `path` without replacing an existing file: the rename is
/// atomic, so a reader sees the whole message or none. On failure the staged file comes back
/// (it is deleted when dropped).
fn publish(file: NamedTempFile, path: &Path) -> Result<(), tempfile::PersistError> {
    file.persist_noclobber(path).map(drop)
}

impl Notifier for FileOutbox {
    fn notify(&self, n: &Notice) -> Result<Receipt, DeliveryError> {
        self.ensure_dir()?;
        let stem = format!(
            "{}-notice-{}-{}-{}",
            n.subject.as_str(),
            n.at.format("%Y%m%dT%H%M%SZ"),
            notice_kind_name(n.kind),
            channel_name(n.channel)
        );
        let body = render_notice(n);
        let mut staged = self.staged("a notice", body.as_bytes())?;
        for k in 1..=100u32 {
            let name = if k == 1 {
                format!("{stem}.txt")
            } else {
                format!("{stem}-{k}.txt")
            };
            let path = self.dir.join(name);
            match publish(staged, &path) {
                Ok(()) => {
                    self.sync_dir("a notice")?;
                    return Ok(Receipt::Sent);
                }
                Err(e) if e.error.kind() == ErrorKind::AlreadyExists => staged = e.file,
                Err(e) => {
                    return Err(DeliveryError::Unavailable(format!(
                        "outbox {}: cannot create a notice file: {}",
                        self.dir.display(),
                        e.error
                    )));
                }
            }
        }
        Err(DeliveryError::Refused(format!(
            "outbox {}: too many notices named {stem}",
            self.dir.display()
        )))
    }

    /// Writes the message atomically: into a temporary file of the outbox (mode 0600),
    /// synced, then renamed to its final name (never replacing a file there) and the
    /// directory synced. A reader never sees a partial or empty message under its final
    /// name; a failed write leaves no file behind.
    fn deliver(&self, d: &Delivery) -> Result<Receipt, DeliveryError> {
        self.ensure_dir()?;
        let path = self
            .dir
            .join(file_name(&d.subject, d.serial, d.part, d.of, d.channel));
        let body = render(d);
        if path.symlink_metadata().is_ok() {
            return self.already_there(&path, body.as_bytes(), d.channel);
        }
        let staged = self.staged("a message", body.as_bytes())?;
        match publish(staged, &path) {
            Ok(()) => {}
            Err(e) if e.error.kind() == ErrorKind::AlreadyExists => {
                return self.already_there(&path, body.as_bytes(), d.channel);
            }
            Err(e) => {
                return Err(DeliveryError::Unavailable(format!(
                    "outbox {}: cannot create a message file: {}",
                    self.dir.display(),
                    e.error
                )));
            }
        }
        self.sync_dir("a message")?;
        // A sealed envelope is handed over in person: delivered for sure.
        Ok(if d.channel == Channel::SealedEnvelope {
            Receipt::Confirmed
        } else {
            Receipt::Sent
        })
    }
}

/// A warning when an existing outbox directory can be entered or read by others than its
/// owner (it holds PINs in clear until the person reads them).
pub(crate) fn permission_warning(dir: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(dir).ok()?;
        let mode = meta.permissions().mode();
        if meta.is_dir() && mode & 0o077 != 0 {
            return Some(format!(
                "the outbox {} can be reached by other users (mode {:o}); it holds PINs in clear: run `chmod 700` on it",
                dir.display(),
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    None
}

/// One message in the outbox, as `pin outbox` lists it (never its content).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct Listed {
    /// The file name.
    pub(crate) file: String,
    /// The subject's tax code.
    pub(crate) subject: String,
    /// Credential serial.
    pub(crate) serial: u64,
    /// Part number.
    pub(crate) part: u8,
    /// Number of parts.
    pub(crate) of: u8,
    /// Channel.
    pub(crate) channel: String,
}

/// Parses a file name written by [`file_name`].
pub(crate) fn parse_file_name(name: &str) -> Option<Listed> {
    let stem = name.strip_suffix(".txt")?;
    let mut it = stem.split('-');
    let subject = it.next()?.to_owned();
    let serial = it.next()?.strip_prefix('s')?.parse().ok()?;
    let (part, of) = it.next()?.strip_prefix('p')?.split_once("of")?;
    let channel = it.next()?.to_owned();
    if it.next().is_some() || parse_channel(&channel).is_none() {
        return None;
    }
    Some(Listed {
        file: name.to_owned(),
        subject,
        serial,
        part: part.parse().ok()?,
        of: of.parse().ok()?,
        channel,
    })
}

/// The messages in `dir`, oldest serial first; a missing directory is an empty outbox.
pub(crate) fn list(dir: &Path) -> std::io::Result<Vec<Listed>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        if let Some(l) = name.to_str().and_then(parse_file_name) {
            out.push(l);
        }
    }
    out.sort_by(|a, b| {
        (&a.subject, a.serial, a.part, &a.channel).cmp(&(&b.subject, b.serial, b.part, &b.channel))
    });
    Ok(out)
}

/// The secret on the `PIN…:` line of a message body (for `pin demo`, which plays the person
/// reading their mailbox).
pub(crate) fn secret_of(body: &str) -> Option<Zeroizing<String>> {
    body.lines()
        .find(|l| l.starts_with("PIN: ") || l.starts_with("PIN (part "))
        .and_then(|l| l.rsplit_once(": "))
        .map(|(_, s)| Zeroizing::new(s.trim().to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let tax = TaxCode::parse("RSSMRA85T10A562S").unwrap();
        let name = file_name(&tax, 3, 1, 2, Channel::Sms);
        assert_eq!(name, "RSSMRA85T10A562S-s3-p1of2-sms.txt");
        let l = parse_file_name(&name).unwrap();
        assert_eq!(
            (l.serial, l.part, l.of, l.channel.as_str()),
            (3, 1, 2, "sms")
        );
        assert!(parse_file_name("notes.txt").is_none());
    }

    /// The names in `dir`.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_message_appears_under_its_name_only_whole_and_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::new(dir.path().join("outbox"));
        outbox.ensure_dir().unwrap();
        let final_path = outbox.dir.join("X-s1-p1of1-sms.txt");
        let staged = outbox.staged("a message", b"PIN: 48213\n").unwrap();
        // Staged: written and synced, but only under a temporary name.
        assert!(!final_path.exists());
        let tmp = names(&outbox.dir);
        assert_eq!(tmp.len(), 1);
        assert!(
            tmp[0].starts_with(".pin-") && tmp[0].ends_with(".tmp"),
            "{tmp:?}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = staged.as_file().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        publish(staged, &final_path).unwrap();
        outbox.sync_dir("a message").unwrap();
        assert_eq!(std::fs::read(&final_path).unwrap(), b"PIN: 48213\n");
        assert_eq!(names(&outbox.dir), vec!["X-s1-p1of1-sms.txt".to_owned()]);
        // A second message under the same name is refused; the first stays, nothing is left.
        let again = outbox.staged("a message", b"PIN: 99999\n").unwrap();
        let err = publish(again, &final_path).unwrap_err();
        assert_eq!(err.error.kind(), ErrorKind::AlreadyExists);
        drop(err);
        assert_eq!(std::fs::read(&final_path).unwrap(), b"PIN: 48213\n");
        assert_eq!(names(&outbox.dir), vec!["X-s1-p1of1-sms.txt".to_owned()]);
    }

    #[test]
    fn secret_lines_are_found() {
        assert_eq!(secret_of("a\nPIN: 48213\nb").unwrap().as_str(), "48213");
        assert_eq!(
            secret_of("PIN (part 2 of 2): K7QM2ZXA\n").unwrap().as_str(),
            "K7QM2ZXA"
        );
        assert!(secret_of("no secret").is_none());
    }
}
