//! Crash safety: a child process (this test binary, re-invoked with an environment variable)
//! loops over issue / re-send / verify / change on a file database and prints a line after
//! each acknowledged step; the parent kills it with SIGKILL at random moments and checks the
//! database after each kill.
//! rule: BOTH-1 (only the last PIN issued is valid), INPS-12 / POL-1 (no counted failure is
//! lost), POL-5 (a lock never re-opens).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pin_core::VerifyOutcome;
use pin_core::actor::Actor;
use pin_core::command::{Check, Command, Enrolment};
use pin_core::contact::{Address, ContactProof, Contacts, Mobile};
use pin_core::format;
use pin_core::hash::Verified;
use pin_core::service::ChangeOutcome;
use pin_core::store::Store;
use pin_core::subject::{Level, Role};
use pin_core::tax_code::TaxCode;
use pin_sqlite::SqliteStore;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::common::{Service, email, enrol_noipa, service, t0, take_pin, tax, wrong};

const CHILD_DB: &str = "PIN_SQLITE_CRASH_CHILD_DB";
const CHILD_ROUND: &str = "PIN_SQLITE_CRASH_CHILD_ROUND";
const LIMIT: u32 = 10;

fn kills() -> usize {
    if std::env::var_os("PIN_SQLITE_STRESS").is_some() {
        400
    } else {
        60
    }
}

// ---------------------------------------------------------------------------------------
// The child

/// Tells the parent; the line is in the pipe before the next step starts.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn inps_contacts() -> Contacts {
    Contacts {
        email: Some(email("anna.bianchi@example.it")),
        mobile: Some(Mobile::parse("+39 333 123 4567").unwrap()),
        pec: None,
        address: Some(Address::parse("Via Roma 1, 00184 Roma").unwrap()),
    }
}

/// The child's view of one subject: the PIN it holds and whether it must change it.
struct Held {
    pin: String,
    must_change: bool,
}

struct Child {
    svc: Service<SqliteStore>,
    rng: ChaCha20Rng,
    now: chrono::DateTime<chrono::Utc>,
}

impl Child {
    fn tick(&mut self) -> chrono::DateTime<chrono::Utc> {
        self.now += chrono::Duration::minutes(1);
        self.now
    }

    fn serial(&self, t: &TaxCode) -> u64 {
        self.svc
            .store()
            .load(t)
            .unwrap()
            .unwrap()
            .subject
            .credential
            .unwrap()
            .serial
    }

    /// NoiPA: a new PIN after identification by the RID (fresh counter).
    fn identify(&mut self, t: &TaxCode) -> Held {
        say(&format!("BEGIN {t} issue"));
        let contacts = Contacts {
            email: Some(email("mario.rossi@example.it")),
            ..Contacts::default()
        };
        let now = self.tick();
        let _ = self
            .svc
            .execute(
                t,
                &Actor::Rid("rid-1".into()),
                &Command::Identify { contacts },
                now,
            )
            .unwrap();
        let pin = take_pin(&self.svc);
        say(&format!("ACK {t} issue {} {pin}", self.serial(t)));
        Held {
            pin,
            must_change: false,
        }
    }

    /// INPS: reset after loss with two registered contacts (fresh 16-character PIN).
    fn reset(&mut self, t: &TaxCode) -> Held {
        say(&format!("BEGIN {t} issue"));
        let c = inps_contacts();
        let proofs = vec![
            ContactProof::Email(c.email.unwrap()),
            ContactProof::Mobile(c.mobile.unwrap()),
        ];
        let now = self.tick();
        let _ = self
            .svc
            .execute(t, &Actor::Subject, &Command::Reset { proofs }, now)
            .unwrap();
        let pin = take_pin(&self.svc);
        say(&format!("ACK {t} issue {} {pin}", self.serial(t)));
        Held {
            pin,
            must_change: true,
        }
    }

    fn change(&mut self, t: &TaxCode, held: &mut Held) {
        say(&format!("BEGIN {t} change"));
        let now = self.tick();
        match self.svc.change_pin(t, &held.pin, None, now).unwrap() {
            ChangeOutcome::Changed { revealed } => {
                held.pin = revealed.unwrap().expose_secret().to_owned();
                held.must_change = false;
                say(&format!("ACK {t} change {} {}", self.serial(t), held.pin));
            }
            ChangeOutcome::NotAuthenticated(VerifyOutcome::Locked) => {
                say(&format!("ACK {t} locked"))
            }
            ChangeOutcome::NotAuthenticated(other) => panic!("change refused: {other:?}"),
        }
    }

    fn resend(&mut self, t: &TaxCode, held: &mut Held) {
        say(&format!("BEGIN {t} resend"));
        let now = self.tick();
        // Refused once the PIN was used or is blocked: then nothing changed.
        if self
            .svc
            .execute(t, &Actor::Rid("rid-1".into()), &Command::Resend, now)
            .is_ok()
        {
            held.pin = take_pin(&self.svc);
            say(&format!("ACK {t} resend {} {}", self.serial(t), held.pin));
        }
    }

    /// Returns whether the PIN is locked now.
    fn verify(&mut self, t: &TaxCode, held: &Held, right: bool) -> bool {
        say(&format!(
            "BEGIN {t} {}",
            if right { "right" } else { "wrong" }
        ));
        let input = if right {
            held.pin.clone()
        } else {
            wrong(&held.pin)
        };
        let now = self.tick();
        match self.svc.verify(t, &input, Level::Online, now).unwrap() {
            VerifyOutcome::Rejected {
                remaining_attempts, ..
            } => {
                say(&format!("ACK {t} fail {}", LIMIT - remaining_attempts));
                false
            }
            VerifyOutcome::Locked => {
                say(&format!("ACK {t} locked"));
                true
            }
            // Killed compares hold the budget until their leases expire (POL-8).
            VerifyOutcome::TryLater { .. } => {
                say(&format!("ACK {t} later"));
                false
            }
            VerifyOutcome::Accepted { .. } | VerifyOutcome::MustChange => {
                assert!(right, "a wrong PIN was accepted");
                say(&format!("ACK {t} ok"));
                false
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
}

/// The child's main loop; does nothing unless started by [`kill_nine_many_times`].
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let mut c = Child {
        svc: service(store, round),
        rng: ChaCha20Rng::seed_from_u64(round),
        now: t0() + chrono::Duration::days(i64::try_from(round).unwrap()),
    };
    let (noipa, inps) = (tax(0), tax(1));
    // Start from a PIN this process knows.
    let mut n = if c.svc.store().load(&noipa).unwrap().is_none() {
        say(&format!("BEGIN {noipa} issue"));
        let pin = enrol_noipa(&c.svc, &noipa, "mario.rossi@example.it");
        say(&format!("ACK {noipa} issue {} {pin}", c.serial(&noipa)));
        Held {
            pin,
            must_change: false,
        }
    } else {
        c.identify(&noipa)
    };
    let mut i = if c.svc.store().load(&inps).unwrap().is_none() {
        say(&format!("BEGIN {inps} issue"));
        let enrol = Command::Enrol(Enrolment {
            role: Role::Citizen,
            contacts: inps_contacts(),
            cns_holder: false,
            enrolled_on: None,
        });
        let now = c.tick();
        let _ = c.svc.execute(&inps, &Actor::Subject, &enrol, now).unwrap();
        let web = Command::WebRequest {
            address: Check::Passed,
        };
        let _ = c.svc.execute(&inps, &Actor::Subject, &web, now).unwrap();
        let pin = take_pin(&c.svc);
        say(&format!("ACK {inps} issue {} {pin}", c.serial(&inps)));
        Held {
            pin,
            must_change: true,
        }
    } else {
        c.reset(&inps)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match c.rng.next_u32() % 10 {
            0 => n = c.identify(&noipa),
            1 => c.resend(&noipa, &mut n),
            2..=4 => {
                if c.verify(&noipa, &n, false) {
                    n = c.identify(&noipa);
                }
            }
            5 => {
                if c.verify(&noipa, &n, true) {
                    n = c.identify(&noipa);
                }
            }
            6 | 7 if !i.must_change => {
                if c.verify(&inps, &i, false) {
                    i = c.reset(&inps);
                }
            }
            8 if !i.must_change => {
                if c.verify(&inps, &i, true) {
                    i = c.reset(&inps);
                }
            }
            _ => c.change(&inps, &mut i),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parent

/// What the parent knows of one subject from acknowledged lines.
#[derive(Clone, Debug, Default)]
struct Acked {
    serial: u64,
    pin: String,
    failures: u32,
    locked: bool,
    /// The step begun after the last acknowledgement, if any.
    in_flight: Option<String>,
}

fn apply(state: &mut HashMap<String, Acked>, line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["BEGIN", t, op] => {
            state.entry((*t).to_owned()).or_default().in_flight = Some((*op).to_owned())
        }
        ["ACK", t, op, rest @ ..] => {
            let s = state.entry((*t).to_owned()).or_default();
            s.in_flight = None;
            match (*op, rest) {
                ("issue" | "change", [serial, pin]) => {
                    *s = Acked {
                        serial: serial.parse().unwrap(),
                        pin: (*pin).to_owned(),
                        ..Acked::default()
                    };
                }
                ("resend", [serial, pin]) => {
                    s.serial = serial.parse().unwrap();
                    s.pin = (*pin).to_owned();
                }
                ("fail", [failures]) => {
                    s.failures = failures.parse().unwrap();
                    s.locked = s.failures >= LIMIT;
                }
                ("ok", []) => s.failures = 0,
                ("locked", []) => s.locked = true,
                ("later", []) => {}
                _ => panic!("bad line {line:?}"),
            }
        }
        _ => {} // libtest's own lines
    }
}

fn check_after_kill(path: &std::path::Path, state: &HashMap<String, Acked>, kill: usize) {
    let store = SqliteStore::open(path).unwrap();
    assert_eq!(
        store.integrity_check().unwrap(),
        ["ok"],
        "kill {kill}: integrity_check"
    );
    let chain = store.verify_audit_chain().unwrap();
    assert!(chain.is_intact(), "kill {kill}: audit chain {chain:?}");
    let svc = service(&store, 0);
    for (t, acked) in state {
        if acked.serial == 0 {
            continue; // nothing acknowledged yet
        }
        let ctx = format!("kill {kill}, subject {t}, acked {acked:?}");
        let l = store
            .load(&TaxCode::parse(t).unwrap())
            .unwrap()
            .expect(&ctx);
        // The schema allows one credential per subject; there must be one.
        let cred = l.subject.credential.as_ref().expect(&ctx);
        let issuing = matches!(
            acked.in_flight.as_deref(),
            Some("issue" | "resend" | "change")
        );
        assert!(
            cred.serial >= acked.serial,
            "{ctx}: serial went back to {}",
            cred.serial
        );
        let pin = format::parse_input(cred.format, &acked.pin);
        let matches = pin.is_ok_and(|p| {
            matches!(
                svc.hasher().verify(&p, &cred.hash).unwrap(),
                Verified::Match { .. }
            )
        });
        if cred.serial == acked.serial {
            assert!(
                matches,
                "{ctx}: the last acknowledged PIN must be the valid one"
            );
        } else {
            assert!(
                issuing,
                "{ctx}: serial {} without an issue in flight",
                cred.serial
            );
            assert!(!matches, "{ctx}: an earlier PIN still verifies (BOTH-1)");
        }
        let a = l.attempts;
        assert_eq!(
            a.serial, cred.serial,
            "{ctx}: the counter follows the credential"
        );
        // rule: POL-8 — whatever the moment of the kill, the audit log explains the counter.
        pin_core::conformance::assert_audit_explains_counter(&store, &TaxCode::parse(t).unwrap());
        let same = cred.serial == acked.serial;
        let carried = acked.in_flight.as_deref() == Some("resend");
        if same || carried {
            if acked.locked {
                assert!(a.is_locked(LIMIT), "{ctx}: a lock was lost: {a:?}");
            }
            // A right PIN in flight (a verify, or the authentication of a change) may have
            // reset the count legitimately.
            let success_in_flight =
                same && matches!(acked.in_flight.as_deref(), Some("right" | "change"));
            if !success_in_flight {
                assert!(
                    a.failures >= acked.failures,
                    "{ctx}: acknowledged failures lost: {a:?}"
                );
            }
        }
    }
}

// rule: BOTH-1, POL-1, POL-5, POL-8 — SIGKILL at random moments loses nothing acknowledged,
// and the audit log explains every counter after every kill.
#[test]
fn kill_nine_many_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let exe = std::env::current_exe().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(4590);
    let mut state: HashMap<String, Acked> = HashMap::new();
    let mut steps_seen = 0usize;
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    for kill in 0..kills() {
        let mut child = Process::new(&exe)
            .args([
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(CHILD_DB, &path)
            .env(CHILD_ROUND, kill.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let started = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let reader = {
            let (lines, started) = (Arc::clone(&lines), Arc::clone(&started));
            let out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let ack = line.starts_with("ACK ");
                    lines.lock().unwrap().push(line);
                    if ack {
                        *started.0.lock().unwrap() = true;
                        started.1.notify_all();
                    }
                }
            })
        };
        // Wait for the first acknowledged step, then kill at a random moment.
        {
            let (lock, cv) = &*started;
            let guard = lock.lock().unwrap();
            let (_guard, _) = cv
                .wait_timeout_while(guard, Duration::from_secs(30), |s| !*s)
                .unwrap();
        }
        std::thread::sleep(Duration::from_micros(u64::from(rng.next_u32() % 40_000)));
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "kill {kill}: the child stopped by itself ({status}); run it by hand to see why"
            );
        }
        child.kill().unwrap(); // SIGKILL on Unix
        let _ = child.wait().unwrap();
        reader.join().unwrap();
        let lines = std::mem::take(&mut *lines.lock().unwrap());
        steps_seen += lines.iter().filter(|l| l.starts_with("ACK ")).count();
        for line in &lines {
            apply(&mut state, line);
        }
        for a in state.values() {
            *in_flight
                .entry(a.in_flight.clone().unwrap_or_default())
                .or_default() += 1;
        }
        check_after_kill(&path, &state, kill);
    }
    if std::env::var_os("PIN_SQLITE_CRASH_STATS").is_some() {
        let mut o = std::io::stderr().lock();
        let _ = writeln!(
            o,
            "{steps_seen} acknowledged steps; steps in flight at the kills: {in_flight:?}"
        );
    }
    assert!(
        steps_seen >= kills(),
        "the child made too little progress: {steps_seen} steps"
    );
}
