//! Connection settings and the numbered migrations, applied once under an advisory lock.

use std::str::FromStr;
use std::time::{Duration, Instant};

use postgres::config::Host;
use postgres::{Client, Config, IsolationLevel};

use crate::error::{DbError, OpenError};

/// How long a connection attempt waits when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The key of the advisory lock taken while migrating: `'pin-mig'` in ASCII. Several
/// instances starting at once queue on it, and each finds the work done by the first.
pub(crate) const MIGRATION_LOCK: i64 = 0x0070_696e_2d6d_6967;

/// Migration `n` (from 1) is `MIGRATIONS[n - 1]`; after it, `pin_migrations` holds `n`.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
];

/// The newest schema version this crate knows.
pub const SCHEMA_VERSION: i32 = 5;

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

/// Schema 1: the tables of pin-sqlite's schema 1, with PostgreSQL's types, constraints and
/// triggers, and the chain head that serialises audit appends.
const MIGRATION_1: &str = r"
CREATE TABLE subjects (
    tax_code        text     NOT NULL PRIMARY KEY CHECK (tax_code ~ '^[A-Z0-9]{16}$'),
    version         bigint   NOT NULL CHECK (version >= 1),
    row_format      smallint NOT NULL CHECK (row_format = 1),
    profile         text     NOT NULL CHECK (profile IN ('noipa', 'inps')),
    body            jsonb    NOT NULL CHECK (jsonb_typeof(body) = 'object'),
    -- NOIPA-8: Email::unique_key() of a NoiPA subject's e-mail; NULL for everyone else.
    noipa_email_key text CHECK (
        noipa_email_key IS NULL
        OR (profile = 'noipa' AND noipa_email_key = lower(noipa_email_key))
    ),
    UNIQUE (tax_code, profile)
);

CREATE UNIQUE INDEX subjects_noipa_email ON subjects (noipa_email_key)
    WHERE noipa_email_key IS NOT NULL;

-- The current PIN: the primary key makes it at most one per subject (BOTH-1).
CREATE TABLE credentials (
    tax_code text   NOT NULL PRIMARY KEY,
    profile  text   NOT NULL,
    serial   bigint NOT NULL CHECK (serial >= 1),
    key_id   bigint NOT NULL CHECK (key_id BETWEEN 0 AND 4294967295),
    -- BOTH-2: only an Argon2id PHC string can be stored, never a PIN in clear.
    phc      text   NOT NULL CHECK (left(phc, 10) = '$argon2id$' AND length(phc) <= 256),
    body     jsonb  NOT NULL CHECK (jsonb_typeof(body) = 'object'),
    FOREIGN KEY (tax_code, profile) REFERENCES subjects (tax_code, profile)
        ON UPDATE CASCADE ON DELETE CASCADE
);

-- The attempt counter, changed only by UPDATEs in SQL (reserve, settle, save rules).
CREATE TABLE attempts (
    tax_code text    NOT NULL PRIMARY KEY REFERENCES subjects (tax_code) ON DELETE CASCADE,
    serial   bigint  NOT NULL CHECK (serial >= 0),
    failures bigint  NOT NULL CHECK (failures BETWEEN 0 AND 4294967295),
    blocked  boolean NOT NULL
);

-- Append-only, hash-chained audit log: hash = SHA-256(prev_hash || event). The event is
-- text, not jsonb, so that the hashed bytes are kept exactly.
CREATE TABLE audit (
    id        bigint NOT NULL PRIMARY KEY CHECK (id >= 1),
    tax_code  text   NOT NULL,
    event     text   NOT NULL CHECK (jsonb_typeof(event::jsonb) = 'object'),
    prev_hash bytea  NOT NULL CHECK (length(prev_hash) = 32),
    hash      bytea  NOT NULL CHECK (length(hash) = 32)
);

CREATE INDEX audit_by_subject ON audit (tax_code, id);

-- The last row of the chain, one row for ever. An append locks it (FOR UPDATE) until its
-- transaction ends, so that appends from every instance form one chain.
CREATE TABLE audit_head (
    singleton boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (singleton),
    id        bigint  NOT NULL CHECK (id >= 0),
    hash      bytea   NOT NULL CHECK (length(hash) = 32)
);

INSERT INTO audit_head (singleton, id, hash) VALUES (true, 0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Every inserted row must extend the chain head, which then moves to it.
CREATE FUNCTION audit_extend_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_id   bigint;
    head_hash bytea;
BEGIN
    SELECT id, hash INTO head_id, head_hash FROM audit_head FOR UPDATE;
    IF NOT FOUND OR NEW.id <> head_id + 1 OR NEW.prev_hash <> head_hash THEN
        RAISE EXCEPTION 'an audit row must extend the chain'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    UPDATE audit_head SET id = NEW.id, hash = NEW.hash;
    RETURN NEW;
END $$;

CREATE TRIGGER audit_extends_chain BEFORE INSERT ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_extend_chain();
";

/// Schema 2: the attempts in flight (leases, so that a right PIN is never counted as a
/// failure and a killed compare is, POL-8) and the pepper-key fingerprints (a wrong key file
/// is refused before anything is counted).
const MIGRATION_2: &str = r"
CREATE SEQUENCE attempt_lease_ids AS bigint MINVALUE 1;

CREATE TABLE attempt_leases (
    id         bigint NOT NULL PRIMARY KEY CHECK (id >= 1),
    tax_code   text   NOT NULL REFERENCES subjects (tax_code) ON DELETE CASCADE,
    serial     bigint NOT NULL CHECK (serial >= 1),
    -- Unix time in milliseconds.
    expires_at bigint NOT NULL
);

CREATE INDEX attempt_leases_by_subject ON attempt_leases (tax_code);

-- HMAC-SHA-256 of a fixed label under each pepper key: identifies the key, never reveals it.
CREATE TABLE key_fingerprints (
    key_id      bigint NOT NULL PRIMARY KEY CHECK (key_id BETWEEN 0 AND 4294967295),
    fingerprint bytea  NOT NULL CHECK (length(fingerprint) = 32)
);
";

/// Schema 3: the durable delivery queue. A credential whose parts wait for their channel
/// (sealed, never in clear) carries when the earliest is due, indexed for the workers.
const MIGRATION_3: &str = r"
ALTER TABLE credentials ADD COLUMN deliver_due bigint;

CREATE INDEX credentials_deliver_due ON credentials (deliver_due)
    WHERE deliver_due IS NOT NULL;
";

/// Schema 4: the population defence's counters (`pin_core::population`): one row per failed
/// guess (the one extra write a wrong PIN costs), indexed for the per-network and per-profile
/// windowed counts, and one learned baseline per profile.
const MIGRATION_4: &str = r"
CREATE TABLE failed_guesses (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Unix time in milliseconds.
    at      bigint NOT NULL,
    profile text   NOT NULL CHECK (profile IN ('noipa', 'inps')),
    network text CHECK (network IS NULL OR length(network) BETWEEN 1 AND 64)
);

CREATE INDEX failed_guesses_by_network ON failed_guesses (network, at)
    WHERE network IS NOT NULL;
CREATE INDEX failed_guesses_by_profile ON failed_guesses (profile, at);

CREATE TABLE population_baselines (
    profile          text   NOT NULL PRIMARY KEY CHECK (profile IN ('noipa', 'inps')),
    per_window_milli bigint NOT NULL CHECK (per_window_milli >= 0),
    -- Unix time in milliseconds.
    folded_at        bigint NOT NULL
);
";

/// Schema 5: the keyed audit chain, as pin-sqlite's schema 5. `key_id` names the audit key a
/// row's HMAC is made with (`NULL`: an unkeyed SHA-256 row, as every row before schema 5);
/// `audit_keying` records the keyed boundary, the id of the first keyed row, set by a trigger
/// when that row is inserted and never changed. From then on unkeyed rows are refused.
const MIGRATION_5: &str = r"
ALTER TABLE audit ADD COLUMN key_id bigint CHECK (key_id BETWEEN 0 AND 4294967295);

CREATE TABLE audit_keying (
    singleton  boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (singleton),
    keyed_from bigint  NOT NULL CHECK (keyed_from >= 1)
);

CREATE TRIGGER audit_keying_no_change BEFORE UPDATE OR DELETE ON audit_keying
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_keying_no_truncate BEFORE TRUNCATE ON audit_keying
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Runs after audit_extends_chain (triggers fire in name order), under the head's lock.
CREATE FUNCTION audit_keep_keyed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_keying) THEN
        IF NEW.key_id IS NULL THEN
            RAISE EXCEPTION 'the audit log is keyed: a row without an audit key is refused'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    ELSIF NEW.key_id IS NOT NULL THEN
        INSERT INTO audit_keying (singleton, keyed_from) VALUES (true, NEW.id);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER audit_keyed BEFORE INSERT ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_keep_keyed();
";

/// Tables the current schema must have.
const TABLES: [&str; 10] = [
    "subjects",
    "credentials",
    "attempts",
    "audit",
    "audit_head",
    "attempt_leases",
    "key_fingerprints",
    "audit_keying",
    "failed_guesses",
    "population_baselines",
];

/// Where a store's connections go: the parsed URL, and how to name the server in messages.
#[derive(Clone)]
pub(crate) struct Target {
    config: Config,
    server: String,
    tls: crate::tls::Tls,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the Config: it holds the password.
        f.debug_struct("Target")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Parses a `postgres://` URL or a `key=value` string.
    pub(crate) fn parse(url: &str) -> Result<Self, OpenError> {
        let tls = crate::tls::extract(url)?;
        let mut config = Config::from_str(&tls.rest).map_err(|e| OpenError::InvalidUrl {
            // The parser's messages name the bad parameter, never its value.
            reason: e.to_string(),
        })?;
        if config.get_hosts().is_empty() {
            return Err(OpenError::InvalidUrl {
                reason: "no host given".into(),
            });
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("pin-postgres");
        }
        let tls = tls.resolve(&mut config)?;
        let server = describe(&config);
        Ok(Self {
            config,
            server,
            tls,
        })
    }

    /// `host:port, database D, user U` — never the password.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// Opens one connection, with a clear error when it cannot.
    pub(crate) fn connect(&self) -> Result<Client, OpenError> {
        crate::tls::connect(&self.config, &self.tls, &self.server, classify_connect)
    }

    /// Opens one connection, asking again while the server refuses for now
    /// ([`OpenError::Refused`]: full, or starting up) with a growing back-off (5 ms, 10 ms,
    /// … up to 250 ms apart), until `deadline` has passed.
    pub(crate) fn connect_within(&self, deadline: Duration) -> Result<Client, OpenError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match self.connect() {
                Err(e) if e.is_retryable() && start.elapsed() + pause <= deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                other => return other,
            }
        }
    }

    /// An error of an open connection, as an [`OpenError`].
    pub(crate) fn db_err(&self, e: postgres::Error) -> OpenError {
        OpenError::Db {
            server: self.server.clone(),
            source: DbError::new(e),
        }
    }
}

fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    let user = config.get_user().unwrap_or("(no user)");
    let db = config.get_dbname().unwrap_or(user);
    format!("{} (database {db}, user {user})", hosts.join(", "))
}

fn classify_connect(server: &str, e: postgres::Error) -> OpenError {
    let server = server.to_owned();
    if let Some(db) = e.as_db_error() {
        let reason = db.message().to_owned();
        return match db.code().code() {
            // invalid_password, invalid_authorization_specification
            "28P01" | "28000" => OpenError::Authentication { server, reason },
            // invalid_catalog_name
            "3D000" => OpenError::NoDatabase { server, reason },
            // cannot_connect_now (starting up or shutting down), too_many_connections
            "57P03" | "53300" => OpenError::Refused { server, reason },
            _ => OpenError::Db {
                server,
                source: DbError::new(e),
            },
        };
    }
    // The client's own errors keep their detail in the source.
    let text = match std::error::Error::source(&e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    };
    if text.contains("password missing") {
        return OpenError::Authentication {
            server,
            reason: "the server asks for a password and the URL gives none".into(),
        };
    }
    if crate::error::connection_lost(&e)
        || text.contains("timed out")
        || text.contains("error connecting")
    {
        let reason = std::error::Error::source(&e).map_or(text, ToString::to_string);
        return OpenError::Unreachable { server, reason };
    }
    OpenError::Db {
        server,
        source: DbError::new(e),
    }
}

/// Applies the missing migrations in one transaction under `pg_advisory_xact_lock`, so that
/// instances starting together apply each migration exactly once, then checks the tables.
pub(crate) fn migrate(client: &mut Client, target: &Target) -> Result<(), OpenError> {
    let err = |e| target.db_err(e);
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .map_err(err)?;
    let _ = tx
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS pin_migrations (
             version    integer     NOT NULL PRIMARY KEY CHECK (version >= 1),
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .map_err(err)?;
    let found: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM pin_migrations", &[])
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
    let count: i64 = tx
        .query_one("SELECT count(*) FROM pin_migrations", &[])
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            server: target.server().to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if i64::from(found) != count {
        return Err(OpenError::DamagedSchema {
            server: target.server().to_owned(),
            reason: format!("pin_migrations reaches version {found} but holds {count} rows"),
        });
    }
    for (n, sql) in (1..).zip(MIGRATIONS) {
        if n > found {
            tracing::info!(
                backend = "postgres",
                migration = n,
                "applying schema migration"
            );
            metrics::counter!(pin_core::telemetry::STORE_MIGRATIONS_TOTAL, "backend" => "postgres")
                .increment(1);
            tx.batch_execute(sql).map_err(err)?;
            let _ = tx
                .execute("INSERT INTO pin_migrations (version) VALUES ($1)", &[&n])
                .map_err(err)?;
        }
    }
    for table in TABLES {
        let present: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .and_then(|r| r.try_get(0))
            .map_err(err)?;
        if !present {
            return Err(OpenError::DamagedSchema {
                server: target.server().to_owned(),
                reason: format!("table {table} is missing"),
            });
        }
    }
    tx.commit().map_err(err)
}
