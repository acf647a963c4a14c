//! A real SMTP server on 127.0.0.1 for tests (feature `test-relay`): Debian's
//! `python3-aiosmtpd`, started on a port of its own choosing with a small handler that stores messages in
//! a maildir and refuses or defers some recipients by their local part:
//!
//! | recipient starts with | relay answers |
//! |---|---|
//! | `unknown` | `550 5.1.1` at `RCPT TO`: refused for good |
//! | `busy` | `451 4.3.0` at `RCPT TO`: try again later |
//! | `echo` | `554 5.6.0` at `DATA`, quoting the `PIN` line (a hostile relay) |
//! | anything else | accepted and stored |
//!
//! [`TestRelay::start`] returns `Ok(None)` when aiosmtpd is not installed, so that a test
//! can say so and pass on a developer's machine; CI installs it (`.ci/run`). The
//! interpreter is `$PIN_SMTP_TEST_PYTHON`, else the first of `/usr/bin/python3` and
//! `python3` that can import aiosmtpd (Debian's package serves Debian's interpreter, which
//! a `python3` from pyenv or a virtualenv on the `PATH` may hide).

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::config::{SmtpConfig, TlsMode};

/// The aiosmtpd handler module.
const HANDLER: &str = r#"
from aiosmtpd.handlers import Mailbox


class Relay(Mailbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("unknown"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local.startswith("busy"):
            return "451 4.3.0 <%s>: Temporary failure, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.lower().startswith("echo") for r in envelope.rcpt_tos):
            text = envelope.content.decode("utf-8", "replace")
            quoted = [line for line in text.splitlines() if line.startswith("PIN")]
            return "554 5.6.0 Message refused, it contains: %s" % (quoted or ["?"])[0]
        return await super().handle_DATA(server, session, envelope)
"#;

/// An aiosmtpd server on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct TestRelay {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Python interpreter that can import aiosmtpd.
#[must_use]
pub fn python() -> Option<String> {
    let candidates = std::env::var("PIN_SMTP_TEST_PYTHON")
        .map(|p| vec![p])
        .unwrap_or_else(|_| vec!["/usr/bin/python3".into(), "python3".into()]);
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released): also what a
/// test uses as "a relay that is down".
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Serves the handler on 127.0.0.1 at a port the kernel picks, and prints that port once the
/// server listens. Letting the server bind port 0 itself (instead of handing it a port that
/// was free a moment ago) means two relays started at once can never share a port: with the
/// old way one test's relay could talk to another test's server and meet a reset connection
/// when that test ended.
const LAUNCHER: &str = r#"
import asyncio, sys
from aiosmtpd.smtp import SMTP
from pin_test_relay import Relay


async def main():
    loop = asyncio.get_running_loop()
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = await loop.create_server(lambda: SMTP(Relay(sys.argv[1])), "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
"#;

impl TestRelay {
    /// Starts the server and waits until it listens; `Ok(None)` when aiosmtpd is missing.
    ///
    /// # Errors
    /// When the server cannot be started or does not listen within 15 seconds.
    pub fn start() -> std::io::Result<Option<Self>> {
        Self::start_at(0)
    }

    /// Starts the server on `port` (a relay that comes back at the address the notifier
    /// was given while it was down); `0` lets the kernel choose, as [`TestRelay::start`].
    ///
    /// # Errors
    /// As [`TestRelay::start`], and when `port` is taken.
    pub fn start_at(port: u16) -> std::io::Result<Option<Self>> {
        use std::io::BufRead;
        let Some(python) = python() else {
            return Ok(None);
        };
        let dir = std::env::temp_dir().join(format!(
            "pin-smtp-relay-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("pin_test_relay.py"), HANDLER)?;
        std::fs::write(dir.join("pin_test_launch.py"), LAUNCHER)?;
        let mut child = Command::new(&python)
            .arg(dir.join("pin_test_launch.py"))
            .arg(dir.join("maildir"))
            .arg(port.to_string())
            .env("PYTHONPATH", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = stdout.map(|out| std::io::BufReader::new(out).read_line(&mut line));
            let _ = tx.send(read.map(|_| line));
        });
        let port = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Some(line)) => line.trim().parse::<u16>().ok(),
            _ => None,
        };
        match port {
            Some(port) if port != 0 => Ok(Some(Self { child, port, dir })),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&dir);
                Err(std::io::Error::other("aiosmtpd did not start listening"))
            }
        }
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A configuration for this relay: 127.0.0.1, no TLS, a 10-second timeout.
    #[must_use]
    pub fn config(&self, from: &str) -> SmtpConfig {
        let mut c = SmtpConfig::new("127.0.0.1", from);
        c.port = Some(self.port);
        c.tls = TlsMode::None;
        c.timeout = Duration::from_secs(10);
        c
    }

    /// The messages received so far, oldest first, parsed.
    ///
    /// # Errors
    /// When the maildir cannot be read.
    pub fn messages(&self) -> std::io::Result<Vec<Mail>> {
        let new = self.dir.join("maildir").join("new");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        match std::fs::read_dir(&new) {
            Ok(entries) => {
                for e in entries {
                    let e = e?;
                    files.push((e.metadata()?.modified()?, e.path()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        files.sort();
        files
            .iter()
            .map(|(_, p)| std::fs::read_to_string(p).map(|raw| Mail::parse(&raw)))
            .collect()
    }
}

/// A message as the relay stored it: headers (names in lower case, folded lines joined)
/// and the body, decoded from quoted-printable when so encoded.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The raw text, as stored.
    pub raw: String,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: String,
}

impl Mail {
    /// Parses an RFC 5322 message.
    #[must_use]
    pub fn parse(raw: &str) -> Self {
        let text = raw.replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap_or((text.as_str(), ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim_start());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let qp = headers.iter().any(|(k, v)| {
            k == "content-transfer-encoding" && v.eq_ignore_ascii_case("quoted-printable")
        });
        Self {
            raw: raw.to_owned(),
            body: if qp { decode_qp(body) } else { body.to_owned() },
            headers,
        }
    }

    /// The first value of header `name` (lower case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The secret on the body's `PIN…:` line.
    #[must_use]
    pub fn secret(&self) -> Option<String> {
        let line = self.body.lines().find(|l| l.starts_with("PIN"))?;
        Some(line.rsplit_once(": ")?.1.trim().to_owned())
    }
}

/// Quoted-printable (RFC 2045) to text.
fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i.saturating_add(1)..i.saturating_add(3))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'=', Some(decoded)) => {
                out.push(decoded);
                i = i.saturating_add(3);
            }
            _ => {
                out.push(b);
                i = i.saturating_add(1);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_decodes() {
        assert_eq!(
            decode_qp("Il PIN =C3=A8 personale=\nx"),
            "Il PIN è personalex"
        );
        assert_eq!(decode_qp("a=3Db =ZZ"), "a=b =ZZ");
    }

    #[test]
    fn headers_fold_and_body_decodes() {
        let m = Mail::parse(
            "Subject: Il Suo\r\n PIN\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nPIN: 48213\r\n=C3=A8\r\n",
        );
        assert_eq!(m.header("subject"), Some("Il Suo PIN"));
        assert_eq!(m.secret().as_deref(), Some("48213"));
        assert!(m.body.contains('è'));
    }
}
