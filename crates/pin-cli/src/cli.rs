//! The command line, as clap derives it.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pin_core::Actor;
use pin_core::command::Check;
use pin_core::contact::{Address, Email, Mobile};
use pin_core::subject::{DeliveryState, Level, Representation, Role};
use pin_core::tax_code::TaxCode;

use crate::exit::EXIT_CODES_HELP;

const ABOUT: &str = "PIN credentials through their whole life, as NoiPA and INPS issue them.";

const LONG_ABOUT: &str = "\
PIN credentials through their whole life, as NoiPA (payroll portal of public employees) and
INPS (social security) issue them: enrolment, identification, the INPS request channels,
delivery (split 8+8 where the rules say so), verification with lockout, first-access change
16 -> 8, rotation, conversion to `dispositivo`, reset, re-send, audit.

Every decision is taken by the pin-core library; this tool only reads your input, calls it,
stores the result in an SQLite database and writes each message a person would receive into
an outbox directory. PINs are never command-line arguments: they are read from the terminal
without echo, or from standard input (one per line) when it is not a terminal.";

const EXAMPLES: &str = "\
Examples:
  # See everything at once, on a throw-away database:
  pin demo

  # Create ./pin.db and its pepper key ./pin.key (keep the key out of backups of the db):
  pin init

  # NoiPA: the RID enrols an employee; the 5-digit PIN goes by SMS (a mobile was given):
  pin enrol RSSMRA85T10A562S --role employee --enrolled-on 2020-09-01 \\
      --email mario.rossi@example.it --mobile 3471234567 --as rid:R042
  pin outbox                         # lists outbox/RSSMRA85T10A562S-s1-p1of1-sms.txt
  pin verify RSSMRA85T10A562S < pin.txt

  # INPS: a citizen asks on the web; 8 characters by SMS, 8 by post:
  pin enrol BNCGNN70A41H501V --role citizen --email g.bianchi@example.it \\
      --mobile 3351234567 --address 'Via Roma 1, 00100 Roma RM' --as subject
  pin request web BNCGNN70A41H501V --address-check passed --as subject
  printf '%s\\n' \"$PIN16\" | pin change BNCGNN70A41H501V --generate

  # Scripts: one JSON object per command, and an exit code per outcome:
  pin --json status BNCGNN70A41H501V
  pin --now 2026-01-01T09:00:00Z verify BNCGNN70A41H501V --level dispositivo

Actors (--as): subject, system, rid:ID, enrolment-operator:ID, support:ID, branch:ID,
  contact-centre:ID, guardian, curator, support-administrator, parent, delegate:ID (always
  refused: INPS-10).

Environment: PIN_DB, PIN_DATABASE_URL, PIN_KEY_FILE, PIN_OUTBOX, PIN_NOW, PIN_NOTIFIER and
  PIN_SMTP_HOST, _PORT, _TLS, _USER, _FROM, _LANG stand for the options of the same name; the SMTP
  password is read from PIN_SMTP_PASSWORD only. PIN_INSECURE_FAST_HASH=1 selects tiny Argon2
  costs, for tests only (a warning is printed on stderr every time, unless -q). RUST_LOG
  (e.g. pin_core=debug) replaces the log level of -v/-q.
";

/// The `pin` command line.
#[derive(Debug, Parser)]
#[command(
    name = "pin",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = "Run `pin --help` for examples, actors and exit codes.",
    after_long_help = format!("{EXAMPLES}\n{EXIT_CODES_HELP}"),
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub(crate) global: Global,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

/// Options for every command.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The database: an SQLite file, or a PostgreSQL URL
    /// (postgres://USER:PASSWORD@HOST:PORT/DATABASE) [default: ./pin.db].
    #[arg(
        long,
        env = "PIN_DB",
        global = true,
        value_name = "PATH|URL",
        hide_env_values = true
    )]
    pub(crate) db: Option<PathBuf>,
    /// A PostgreSQL URL, used when --db is not given. Prefer the variable to the flag for a
    /// URL with a password: flags show in `ps`.
    #[arg(
        long,
        env = "PIN_DATABASE_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    pub(crate) database_url: Option<String>,
    /// The pepper key file: 64 hex digits [default: pin.key beside the database].
    #[arg(long, env = "PIN_KEY_FILE", global = true, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
    /// The audit key file: the HMAC keys of the audit chain, kept apart from the database
    /// [default: pin.audit-key beside the key file].
    #[arg(long, env = "PIN_AUDIT_KEY_FILE", global = true, value_name = "PATH")]
    pub(crate) audit_key_file: Option<PathBuf>,
    /// Where messages to people are written [default: outbox/ beside the database].
    #[arg(long, env = "PIN_OUTBOX", global = true, value_name = "DIR")]
    pub(crate) outbox: Option<PathBuf>,
    /// Act at this time instead of the clock's (RFC 3339, e.g. 2026-01-01T09:00:00Z).
    #[arg(long, env = "PIN_NOW", global = true, value_name = "RFC3339", value_parser = parse_now)]
    pub(crate) now: Option<DateTime<Utc>>,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// More detail in the logs on stderr: -v one line per command and verify, -vv retries,
    /// -vvv everything. RUST_LOG, when set, replaces the level.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Only errors on stderr: no warnings, no logs.
    #[arg(short = 'q', long = "quiet", global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub(crate) quiet: u8,
    /// How log lines on stderr look: text (one human-readable line each) or json (one
    /// object per line). Logs never go to stdout.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub(crate) log_format: crate::log::LogFormat,
    /// How messages reach people.
    #[command(flatten)]
    pub(crate) delivery: DeliveryArgs,
}

/// How messages reach people: the outbox, or SMTP for e-mail and PEC (the other channels
/// still go to the outbox). The SMTP password is read from `PIN_SMTP_PASSWORD` only.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Delivery")]
pub(crate) struct DeliveryArgs {
    /// outbox: every message into the outbox directory; smtp: e-mail and PEC through an
    /// SMTP relay, the other channels into the outbox.
    #[arg(
        long,
        env = "PIN_NOTIFIER",
        global = true,
        value_enum,
        default_value = "outbox"
    )]
    pub(crate) notifier: NotifierArg,
    /// SMTP relay host (with --notifier smtp).
    #[arg(long, env = "PIN_SMTP_HOST", global = true, value_name = "HOST")]
    pub(crate) smtp_host: Option<String>,
    /// SMTP relay port [default: 25, 587 or 465 by --smtp-tls].
    #[arg(long, env = "PIN_SMTP_PORT", global = true, value_name = "PORT")]
    pub(crate) smtp_port: Option<u16>,
    /// none (a relay on this machine only), starttls, or tls (implicit TLS).
    #[arg(long, env = "PIN_SMTP_TLS", global = true, value_name = "MODE", default_value = "starttls", value_parser = parse_tls)]
    pub(crate) smtp_tls: pin_smtp::TlsMode,
    /// SMTP user name; the password comes from PIN_SMTP_PASSWORD (never a flag).
    #[arg(long, env = "PIN_SMTP_USER", global = true, value_name = "USER")]
    pub(crate) smtp_user: Option<String>,
    /// Sender address, e.g. 'INPS <no-reply@inps.example>'.
    #[arg(long, env = "PIN_SMTP_FROM", global = true, value_name = "ADDRESS")]
    pub(crate) smtp_from: Option<String>,
    /// Language of the e-mail and PEC texts: it or en.
    #[arg(long, env = "PIN_SMTP_LANG", global = true, value_name = "LANG", default_value = "it", value_parser = parse_language)]
    pub(crate) smtp_lang: pin_smtp::Language,
    /// Send SMS through this HTTP gateway (a signed JSON POST, pin-webhook) instead of the
    /// outbox; the signing key (hex, at least 16 bytes) comes from PIN_SMS_WEBHOOK_KEY.
    #[arg(long, env = "PIN_SMS_WEBHOOK", global = true, value_name = "URL")]
    pub(crate) sms_webhook: Option<String>,
}

/// Where messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NotifierArg {
    /// Every message into the outbox directory.
    Outbox,
    /// E-mail and PEC over SMTP; the other channels into the outbox.
    Smtp,
}

fn parse_tls(s: &str) -> Result<pin_smtp::TlsMode, String> {
    s.parse().map_err(|e: pin_smtp::ConfigError| e.to_string())
}

fn parse_language(s: &str) -> Result<pin_smtp::Language, String> {
    s.parse()
        .map_err(|e: pin_smtp::text::UnknownLanguage| e.to_string())
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Create the database and a fresh pepper key file (mode 0600; never overwritten).
    Init,
    /// Enrol a subject: a NoiPA employee, or an INPS citizen or intermediary.
    #[command(after_long_help = "\
Examples:
  pin enrol RSSMRA85T10A562S --role employee --enrolled-on 2020-09-01 --email m.rossi@example.it --as rid:R042
  pin enrol BNCGNN70A41H501V --role citizen --email g.b@example.it --mobile 3351234567 \\
      --pec g.b@pec.example.it --address 'Via Roma 1, 00100 Roma RM' --as subject

NoiPA employees enrolled after 31 March 2014 get their PIN at once (NOIPA-2), unless they
hold a CNS (--cns, NOIPA-10).")]
    Enrol {
        /// Tax code (codice fiscale) of the subject.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// employee (NoiPA), citizen or intermediary (INPS).
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Contacts given at enrolment.
        #[command(flatten)]
        contacts: ContactArgs,
        /// NoiPA: the employee holds a national service card and needs no PIN.
        #[arg(long)]
        cns: bool,
        /// NoiPA: date of enrolment (immatricolazione), YYYY-MM-DD.
        #[arg(long, value_name = "DATE")]
        enrolled_on: Option<NaiveDate>,
        /// Who performs it (rid:ID, enrolment-operator:ID, system; INPS also subject,
        /// branch:ID, contact-centre:ID, guardian, …).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
    /// NoiPA: the RID identified the person in person; a new PIN is issued to these contacts.
    Identify {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// Contacts given at identification (e-mail required, mobile optional).
        #[command(flatten)]
        contacts: ContactArgs,
        /// Who performs it (rid:ID or enrolment-operator:ID).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
    /// INPS: a PIN request at a branch, on the web or through the contact centre.
    #[command(subcommand)]
    Request(RequestCmd),
    /// INPS: the outbound contact-centre call for a pending request (passed or failed).
    Outbound {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// Whether the operator could verify the person.
        #[arg(value_enum)]
        result: CheckArg,
        /// Who performs it (contact-centre:ID).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
    /// INPS: list the requests waiting for the outbound contact-centre call, oldest first,
    /// with masked contacts, so that an operator can work the queue.
    Queue {
        /// Who asks (contact-centre:ID).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
    /// Deliver what waits in the delivery queue: parts of PINs whose channel was unavailable
    /// (outbox not writable, relay down) or whose process died before writing them. Each
    /// part is sent at least once, at its due time, with backoff; one that fails for good,
    /// or stays undeliverable for 24 hours, is marked failed (recover with `pin resend`,
    /// which then does not count against the re-send limit, POL-3/POL-4).
    Deliver {
        /// Keep running: deliver what is due every --interval seconds until stopped.
        #[arg(long)]
        watch: bool,
        /// Seconds between two runs under --watch.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
        /// At most this many subjects per run.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        limit: u64,
    },
    /// INPS: send a pre-assigned letter carrying the first 8 characters.
    PreAssign {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// Who performs it (system).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor, default_value = "system")]
        actor: Actor,
    },
    /// INPS: activate a pre-assigned PIN; reads the letter's 8 characters, then the last 8
    /// are sent.
    Activate {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// Result of the health-card (tessera sanitaria) data check.
        #[arg(long, value_enum)]
        health_card: CheckArg,
        /// Who performs it (subject).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor, default_value = "subject")]
        actor: Actor,
    },
    /// Verify a PIN (read from the terminal or stdin) for a service requiring a level.
    #[command(after_long_help = "\
Example:
  printf '%s\\n' \"$PIN\" | pin --json verify BNCGNN70A41H501V --level dispositivo

Exit code 0 accepted, 3 rejected, 4 locked, 6 must_change/expired/insufficient_level/no_pin.")]
    Verify {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// The level the service requires.
        #[arg(long, value_enum, default_value = "online")]
        level: LevelArg,
        /// Who performs it (subject).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor, default_value = "subject")]
        actor: Actor,
        /// The network the request came from, at the granularity you choose (e.g.
        /// 198.51.100.0/24): wrong PINs are limited per network across all people.
        #[arg(long, value_name = "NETWORK", value_parser = parse_network)]
        source: Option<pin_core::population::NetworkKey>,
        /// The device token a previous accepted verify printed: a trusted device passes the
        /// population defence (never the per-person lockout).
        #[arg(long, value_name = "TOKEN", value_parser = parse_device_token)]
        device_token: Option<pin_core::population::DeviceToken>,
        /// The caller vouches that the client passed a challenge (CAPTCHA, proof of work):
        /// lifts exit code 11 (challenge required), never the per-network limit.
        #[arg(long)]
        challenge_passed: bool,
    },
    /// INPS: change the PIN (first access 16 -> 8, rotation); reads the current PIN, then
    /// the new one.
    Change {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// Let the system generate the new PIN; it is shown on stdout to the subject alone.
        #[arg(long)]
        generate: bool,
        /// Who performs it (subject).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor, default_value = "subject")]
        actor: Actor,
    },
    /// INPS: convert an `online` PIN to `dispositivo` after a signed request and an ID.
    Convert {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// Result of the check of the signed request and identity document.
        #[arg(long, value_enum)]
        document: CheckArg,
        /// Who records it (branch:ID or system: whoever checked the request; INPS-9).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
    /// INPS: reset after loss, quoting two contacts registered at first registration.
    Reset {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// The registered e-mail address.
        #[arg(long, value_parser = parse_email)]
        email: Option<Email>,
        /// The registered mobile number.
        #[arg(long, value_parser = parse_mobile)]
        mobile: Option<Mobile>,
        /// The registered PEC address.
        #[arg(long, value_parser = parse_email)]
        pec: Option<Email>,
        /// Who performs it (subject, or guardian/curator/support-administrator/parent).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
    /// Re-send: a fresh PIN on the same channels; the old one stops working.
    Resend {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// Who performs it (NoiPA: support:ID, rid:ID, subject; INPS: contact-centre:ID,
        /// branch:ID, subject).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
    /// Record a delivery receipt from a channel.
    Receipt {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// Credential serial the message belonged to.
        #[arg(long)]
        serial: u64,
        /// Part number (1 or 2).
        #[arg(long)]
        part: u8,
        /// Channel: email, sms, pec, phone, post, envelope.
        #[arg(long, value_parser = parse_channel_arg)]
        channel: pin_core::subject::Channel,
        /// New state.
        #[arg(long, value_enum)]
        state: ReceiptState,
        /// Who performs it (system).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor, default_value = "system")]
        actor: Actor,
    },
    /// Change contacts: by the RID (NoiPA) or branch (INPS), or by the subject with the PIN
    /// (read from stdin). Contacts not named are kept.
    Contacts {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// The new contacts.
        #[command(flatten)]
        contacts: ContactArgs,
        /// Remove a contact: email, mobile, pec or address (repeatable).
        #[arg(long, value_enum, value_name = "KIND")]
        remove: Vec<ContactKindArg>,
        /// Who performs it (rid:ID, branch:ID, or subject).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
    /// Show a subject's state: PIN stage, level, failures, deliveries, rotation.
    Status {
        /// Tax code.
        #[arg(value_parser = parse_tax, required_unless_present = "population")]
        tax_code: Option<TaxCode>,
        /// Instead of a subject: the population defence — the mode, failed guesses per
        /// profile against the budget, the accounts an attacker is expected to have guessed,
        /// the networks with most failed guesses.
        #[arg(long, conflicts_with = "tax_code")]
        population: bool,
    },
    /// Show the audit log, or verify its hash chain.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The pepper keyring of the key file: add a key, list the keys with the PIN hashes each
    /// still protects, retire one.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Import subjects with pre-computed hashes from a JSON-lines file (`-` for stdin).
    #[command(after_long_help = "\
One JSON object per line:
  {\"tax_code\":\"RSSMRA85T10A562S\",\"role\":\"citizen\",
   \"contacts\":{\"email\":\"m@example.it\",\"mobile\":\"+393471234567\",\"pec\":null,\"address\":null},
   \"hash\":{\"key_id\":1,\"phc\":\"$argon2id$v=19$m=19456,t=2,p=1$...\"},
   \"format\":\"inps_in_use8\",\"level\":\"online\",\"stage\":\"active\",
   \"issued_at\":\"2024-01-01T00:00:00Z\",\"changed_at\":\"2024-02-01T00:00:00Z\"}

format: noipa_digits5 | inps_issued16 | inps_in_use8; stage: active | must_change.
Hashes must be made with this database's key (see `pin hash`), with a 16-byte salt; dates may
not be in the future, nor changed_at before issued_at. The file is read one line at a time
into one transaction: memory stays bounded whatever its size (SQLite), and one bad line (or a line
longer than 64 KiB) imports nothing; the error names the line. On a terminal a progress bar
shows the rate and the time left.")]
    Import {
        /// The JSON-lines file, or `-` for standard input.
        file: PathBuf,
        /// Who performs it (system).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor, default_value = "system")]
        actor: Actor,
    },
    /// Hash PINs read from stdin (one per line) with this database's key, for import files (on all cores, printed in input order).
    Hash {
        /// The shape of the PINs.
        #[arg(long, value_enum)]
        format: FormatArg,
    },
    /// Show the effective policy (limits, periods, hash costs).
    Policy,
    /// List the messages in the outbox (names only, never their content).
    Outbox {
        /// Only this subject's messages.
        #[arg(value_parser = parse_tax)]
        tax_code: Option<TaxCode>,
    },
    /// Walk NoiPA and INPS lifecycles on a throw-away database and show every message.
    Demo,
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// INPS request channels.
#[derive(Debug, Subcommand)]
pub(crate) enum RequestCmd {
    /// At a branch counter: identity checked on form MV35; a `dispositivo` PIN in a sealed
    /// envelope.
    Branch {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// The operator's check of the identity document.
        #[arg(long, value_enum)]
        document: CheckArg,
        /// A guardian, curator, support administrator or parent asks for the person.
        #[arg(long, value_enum, value_name = "ROLE")]
        on_behalf: Option<RepresentationArg>,
        /// Who performs it (branch:ID).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
    /// On the web: residence validated automatically; first 8 by SMS/e-mail, last 8 by post.
    Web {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// Result of the automatic residence-address validation.
        #[arg(long, value_enum)]
        address_check: CheckArg,
        /// Who performs it (subject, or guardian/curator/support-administrator/parent).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
    /// Through the contact centre: first 8 told by phone (and SMS/e-mail), last 8 by post.
    ContactCentre {
        /// Tax code.
        #[arg(value_parser = parse_tax)]
        tax_code: TaxCode,
        /// Whether identity, residence and health-card data matched the archives.
        #[arg(long, value_enum)]
        archives: CheckArg,
        /// Who performs it (contact-centre:ID).
        #[arg(long = "as", value_name = "ACTOR", value_parser = parse_actor)]
        actor: Actor,
    },
}

/// Key sub-commands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCmd {
    /// Add a fresh pepper key (the next id): new PIN hashes use it from now on.
    Add,
    /// List the keys: id, fingerprint, how many PIN hashes each still protects.
    List,
    /// Remove an older key once no PIN hash depends on it.
    Retire {
        /// The key id.
        id: u32,
        /// Retire it although PIN hashes still depend on it: those PINs can then never
        /// be verified again (the command says how many).
        #[arg(long)]
        force: bool,
    },
}

/// Audit sub-commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// Show the audit log, oldest first; of one subject, or of all.
    Show {
        /// Only this subject.
        #[arg(value_parser = parse_tax)]
        tax_code: Option<TaxCode>,
    },
    /// Verify the keyed hash chain of the whole audit log (needs the audit key), or of an
    /// export offline (`--file`), without the database.
    Verify {
        /// Check this export (`pin audit export`) instead of the database.
        #[arg(long, value_name = "EXPORT")]
        file: Option<PathBuf>,
        /// The head kept elsewhere (`ID:HASH`, as `pin audit head` prints it): the chain
        /// must reach it, so rows cut off at the end are found.
        #[arg(long, value_name = "ID:HASH")]
        head: Option<String>,
    },
    /// Print the current head of the verified chain (id and hash): keep it elsewhere, and
    /// pass it to `pin audit verify --head` later to detect a truncation.
    Head,
    /// Export the audit log as JSON lines, each event with its chain hash and key id,
    /// streaming (the log is never held whole in memory).
    Export {
        /// Write to this file (created, never overwritten) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Create the audit key file for a database written before the audit chain was keyed:
    /// the rows so far stay verifiable as unkeyed SHA-256 links, every new row is keyed.
    InitKey,
}

/// Contacts given on the command line.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct ContactArgs {
    /// E-mail address.
    #[arg(long, value_parser = parse_email)]
    pub(crate) email: Option<Email>,
    /// Mobile number (Italian numbers may omit +39).
    #[arg(long, value_parser = parse_mobile)]
    pub(crate) mobile: Option<Mobile>,
    /// PEC (certified e-mail) address.
    #[arg(long, value_parser = parse_email)]
    pub(crate) pec: Option<Email>,
    /// Residence address, one line (e.g. 'Via Roma 1, 00100 Roma RM').
    #[arg(long, value_parser = parse_address)]
    pub(crate) address: Option<Address>,
}

/// Outcome of an outside check.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum CheckArg {
    /// The registry confirmed the data.
    Passed,
    /// It did not.
    Failed,
}

impl From<CheckArg> for Check {
    fn from(c: CheckArg) -> Self {
        match c {
            CheckArg::Passed => Check::Passed,
            CheckArg::Failed => Check::Failed,
        }
    }
}

/// Roles.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RoleArg {
    /// NoiPA public employee.
    Employee,
    /// INPS citizen (rotation every 6 months).
    Citizen,
    /// INPS intermediary: patronato, CAF, professional (rotation every 3 months).
    Intermediary,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Employee => Role::Employee,
            RoleArg::Citizen => Role::Citizen,
            RoleArg::Intermediary => Role::Intermediary,
        }
    }
}

/// Levels.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LevelArg {
    /// Enough for most services.
    Online,
    /// Required by some services (INPS-1).
    Dispositivo,
}

impl From<LevelArg> for Level {
    fn from(l: LevelArg) -> Self {
        match l {
            LevelArg::Online => Level::Online,
            LevelArg::Dispositivo => Level::Dispositivo,
        }
    }
}

/// Representations (INPS-10).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RepresentationArg {
    /// Tutore.
    Guardian,
    /// Curatore.
    Curator,
    /// Amministratore di sostegno.
    SupportAdministrator,
    /// Parent of a minor.
    Parent,
}

impl From<RepresentationArg> for Representation {
    fn from(r: RepresentationArg) -> Self {
        match r {
            RepresentationArg::Guardian => Representation::Guardian,
            RepresentationArg::Curator => Representation::Curator,
            RepresentationArg::SupportAdministrator => Representation::SupportAdministrator,
            RepresentationArg::Parent => Representation::Parent,
        }
    }
}

/// Receipt states.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ReceiptState {
    /// The channel accepted it.
    Sent,
    /// Delivered.
    Confirmed,
    /// Refused for good.
    Failed,
}

impl From<ReceiptState> for DeliveryState {
    fn from(s: ReceiptState) -> Self {
        match s {
            ReceiptState::Sent => DeliveryState::Sent,
            ReceiptState::Confirmed => DeliveryState::Confirmed,
            ReceiptState::Failed => DeliveryState::Failed,
        }
    }
}

/// Contact kinds for `--remove`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ContactKindArg {
    /// E-mail.
    Email,
    /// Mobile number.
    Mobile,
    /// PEC.
    Pec,
    /// Residence address.
    Address,
}

/// PIN shapes for `pin hash`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum FormatArg {
    /// NoiPA: 5 digits.
    NoipaDigits5,
    /// INPS as issued: 16 characters.
    InpsIssued16,
    /// INPS in use: 8 characters.
    InpsInUse8,
}

impl From<FormatArg> for pin_core::format::PinFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::NoipaDigits5 => Self::NoipaDigits5,
            FormatArg::InpsIssued16 => Self::InpsIssued16,
            FormatArg::InpsInUse8 => Self::InpsInUse8,
        }
    }
}

fn parse_tax(s: &str) -> Result<TaxCode, String> {
    TaxCode::parse(s).map_err(|e| format!("tax code: {e}"))
}

fn parse_network(s: &str) -> Result<pin_core::population::NetworkKey, String> {
    pin_core::population::NetworkKey::new(s).map_err(|e| e.to_string())
}

fn parse_device_token(s: &str) -> Result<pin_core::population::DeviceToken, String> {
    pin_core::population::DeviceToken::parse(s).map_err(|e| e.to_string())
}

fn parse_email(s: &str) -> Result<Email, String> {
    Email::parse(s).map_err(|e| e.to_string())
}

fn parse_mobile(s: &str) -> Result<Mobile, String> {
    Mobile::parse(s).map_err(|e| e.to_string())
}

fn parse_address(s: &str) -> Result<Address, String> {
    Address::parse(s).map_err(|e| e.to_string())
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; use RFC 3339, e.g. 2026-01-01T09:00:00Z"))
}

fn parse_channel_arg(s: &str) -> Result<pin_core::subject::Channel, String> {
    crate::outbox::parse_channel(s)
        .ok_or_else(|| "use one of email, sms, pec, phone, post, envelope".to_owned())
}

/// Parses an actor: `subject`, `system`, `rid:ID`, `enrolment-operator:ID`, `support:ID`,
/// `branch:ID`, `contact-centre:ID`, `guardian`, `curator`, `support-administrator`,
/// `parent`, `delegate:ID`.
pub(crate) fn parse_actor(s: &str) -> Result<Actor, String> {
    let (kind, id) = match s.split_once(':') {
        Some((k, id)) => (k, Some(id)),
        None => (s, None),
    };
    let need_id = |make: fn(String) -> Actor| match id {
        Some(id) if !id.is_empty() && id.len() <= 64 && !id.chars().any(char::is_control) => {
            Ok(make(id.to_owned()))
        }
        _ => Err(format!(
            "actor `{kind}` needs an operator id, e.g. `{kind}:R042`"
        )),
    };
    let no_id = |a: Actor| match id {
        None => Ok(a),
        Some(_) => Err(format!("actor `{kind}` takes no id")),
    };
    match kind {
        "subject" => no_id(Actor::Subject),
        "system" => no_id(Actor::System),
        "guardian" => no_id(Actor::Representative(Representation::Guardian)),
        "curator" => no_id(Actor::Representative(Representation::Curator)),
        "support-administrator" => {
            no_id(Actor::Representative(Representation::SupportAdministrator))
        }
        "parent" => no_id(Actor::Representative(Representation::Parent)),
        "rid" => need_id(Actor::Rid),
        "enrolment-operator" => need_id(Actor::EnrolmentOperator),
        "support" => need_id(Actor::Support),
        "branch" => need_id(Actor::BranchOperator),
        "contact-centre" => need_id(Actor::ContactCentre),
        "delegate" => need_id(Actor::Delegate),
        _ => Err(format!(
            "unknown actor `{kind}`: use subject, system, rid:ID, enrolment-operator:ID, support:ID, branch:ID, contact-centre:ID, guardian, curator, support-administrator, parent or delegate:ID"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn actors_parse() {
        assert_eq!(parse_actor("rid:R1"), Ok(Actor::Rid("R1".into())));
        assert_eq!(parse_actor("subject"), Ok(Actor::Subject));
        assert_eq!(
            parse_actor("support-administrator"),
            Ok(Actor::Representative(Representation::SupportAdministrator))
        );
        assert!(parse_actor("rid").is_err());
        assert!(parse_actor("subject:x").is_err());
        assert!(parse_actor("boss:1").is_err());
    }
}
