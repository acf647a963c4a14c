//! Row formats shared by the SQL adapters (pin-sqlite, pin-postgres): versioned row types
//! and their conversion into the domain types. Pure: no I/O; each adapter only binds and
//! reads the columns, with its engine's integer types.
//!
//! A row is read as it is stored ([`SubjectRowV1`], [`CredentialRowV1`], [`AttemptsRowV1`]:
//! plain integers and text) and converted with `TryFrom`, which checks every value. A row
//! that does not convert is [`StoreError::Corrupt`] — never a panic, never a record with a
//! made-up credential. A future row format gets its own `…V2` type and conversion.
//!
//! Format 1 keeps the record, without its tax code and credential, as the JSON of a body
//! type (`serde_json`, fields in declaration order, unknown fields refused) in the
//! `subjects.body` column, and the credential, without its serial and hash, in
//! `credentials.body`: the same bytes whichever store wrote them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::contact::{Contacts, Email};
use crate::format::PinFormat;
use crate::hash::PinHash;
use crate::secret::KeyId;
use crate::store::{Loaded, StoreError};
use crate::subject::{
    Attempts, Credential, Declaration, Level, Origin, Part, Pending, Profile, Representation, Role,
    Stage, Subject,
};
use crate::tax_code::TaxCode;

/// The row format written by this version (`subjects.row_format`).
pub const ROW_FORMAT: i64 = 1;

/// Longest PHC string accepted (the schemas' CHECKs say the same).
const MAX_PHC_LEN: usize = 256;

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The name of a profile in the `profile` columns.
#[must_use]
pub fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Noipa => "noipa",
        Profile::Inps => "inps",
    }
}

/// The key of the NOIPA-8 unique index: the lower-cased e-mail of a NoiPA subject.
#[must_use]
pub fn noipa_email_key(profile: Profile, contacts: &Contacts) -> Option<String> {
    match profile {
        Profile::Noipa => contacts.email.as_ref().map(Email::unique_key),
        Profile::Inps => None,
    }
}

/// A `u64` of the domain as a signed 64-bit SQL integer (SQLite's `INTEGER`, PostgreSQL's
/// `bigint`); `engine` names the database in the error message.
fn to_sql_int(value: u64, what: &str, engine: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Backend(format!("{what} {value} is beyond what {engine} can store").into())
    })
}

fn from_sql_int<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| corrupt(format_args!("{what} {value} is out of range")))
}

/// `subjects.body`, format 1: the record without its tax code (a column) and its credential
/// (a row of `credentials`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectBodyV1 {
    role: Role,
    contacts: Contacts,
    registered: Contacts,
    cns_holder: bool,
    enrolled_on: Option<NaiveDate>,
    identified_at: Option<DateTime<Utc>>,
    represented_by: Option<Representation>,
    pending: Pending,
    last_serial: u64,
    resends: Vec<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    /// Added after format 1 was first written: absent in older rows (INPS-15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    declaration: Option<Declaration>,
    /// Added after format 1 was first written: absent in older rows, which are read with
    /// the fact derived from their credential (INPS-16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified_pin: Option<bool>,
}

/// `credentials.body`, format 1: the credential without its serial and hash (columns).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialBodyV1 {
    format: PinFormat,
    level: Level,
    stage: Stage,
    origin: Origin,
    issued_at: DateTime<Utc>,
    changed_at: Option<DateTime<Utc>>,
    first_used_at: Option<DateTime<Utc>>,
    parts: Vec<Part>,
}

/// A row of `credentials`, as stored.
#[derive(Debug)]
pub struct CredentialRowV1 {
    /// `profile`: [`profile_name`] of the subject's profile.
    pub profile: String,
    /// `serial`: the credential serial, 1 or more.
    pub serial: i64,
    /// `key_id`: the id of the pepper the hash was made with.
    pub key_id: i64,
    /// `phc`: the Argon2id PHC string.
    pub phc: String,
    /// `body`: the JSON of the rest of the credential (format 1).
    pub body: String,
    /// `deliver_due` (schema 3): Unix seconds when the earliest part waiting in the
    /// delivery queue is due ([`crate::delivery::next_due`]), `NULL` when none waits — the
    /// index a delivery worker scans. Derived from the body, which stays authoritative: a
    /// reader ignores it.
    pub deliver_due: Option<i64>,
}

/// A row of `subjects` with its credential row, if any, as stored.
#[derive(Debug)]
pub struct SubjectRowV1 {
    /// `tax_code`, the primary key.
    pub tax_code: String,
    /// `row_format`: [`ROW_FORMAT`].
    pub row_format: i64,
    /// `profile`: [`profile_name`] of the role's profile.
    pub profile: String,
    /// `body`: the JSON of the record without tax code and credential (format 1).
    pub body: String,
    /// `noipa_email_key`: [`noipa_email_key`] of the profile and contacts.
    pub noipa_email_key: Option<String>,
    /// The row of `credentials`, when the subject has a credential.
    pub credential: Option<CredentialRowV1>,
}

/// A row of `attempts`, as stored.
#[derive(Debug, Clone, Copy)]
pub struct AttemptsRowV1 {
    /// `serial`: the credential serial the counter is for (0: none).
    pub serial: i64,
    /// `failures`: consecutive failed attempts.
    pub failures: i64,
    /// `blocked`: 0 or 1 (an engine with a boolean type passes `i64::from(flag)`).
    pub blocked: i64,
}

/// What one load reads: a subject's row, its record version and its attempts row.
#[derive(Debug)]
pub struct LoadRowV1 {
    /// `subjects.version`, 1 or more.
    pub version: i64,
    /// The subject's row, with its credential row.
    pub subject: SubjectRowV1,
    /// The attempts row; `None` when there is none (a corrupt database).
    pub attempts: Option<AttemptsRowV1>,
}

impl LoadRowV1 {
    /// The record loaded for `tax_code`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the version is below 1, the attempts row is missing, a
    /// row does not convert, or the row is of another tax code.
    pub fn into_loaded(self, tax_code: &TaxCode) -> Result<Loaded, StoreError> {
        let version = u64::try_from(self.version)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| corrupt(format_args!("record version {}", self.version)))?;
        let attempts = self
            .attempts
            .ok_or_else(|| corrupt("the subject has no attempt counter"))?;
        let subject = Subject::try_from(self.subject)?;
        if subject.tax_code != *tax_code {
            return Err(corrupt("the row is of another tax code"));
        }
        Ok(Loaded {
            subject,
            version,
            attempts: Attempts::try_from(attempts)?,
        })
    }
}

impl SubjectRowV1 {
    /// The row that stores `subject`; `engine` names the database in an error message.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the credential serial is beyond a signed 64-bit integer
    /// or the body cannot be written as JSON.
    pub fn from_subject(subject: &Subject, engine: &str) -> Result<Self, StoreError> {
        // Destructured so that a field added to `Subject` cannot be forgotten here.
        let Subject {
            tax_code,
            role,
            contacts,
            registered,
            cns_holder,
            enrolled_on,
            identified_at,
            represented_by,
            declaration,
            verified_pin,
            pending,
            credential,
            last_serial,
            resends,
            created_at,
        } = subject.clone();
        let profile = role.profile();
        let noipa_email_key = noipa_email_key(profile, &contacts);
        let body = SubjectBodyV1 {
            role,
            contacts,
            registered,
            cns_holder,
            enrolled_on,
            identified_at,
            represented_by,
            pending,
            last_serial,
            resends,
            created_at,
            declaration,
            verified_pin: Some(verified_pin),
        };
        let credential = credential
            .map(|c| CredentialRowV1::from_credential(profile, c, engine))
            .transpose()?;
        Ok(Self {
            tax_code: tax_code.as_str().to_owned(),
            row_format: ROW_FORMAT,
            profile: profile_name(profile).to_owned(),
            body: to_json(&body)?,
            noipa_email_key,
            credential,
        })
    }
}

impl CredentialRowV1 {
    fn from_credential(profile: Profile, c: Credential, engine: &str) -> Result<Self, StoreError> {
        let deliver_due = crate::delivery::next_due(&c).map(|t| t.timestamp());
        let Credential {
            serial,
            hash,
            format,
            level,
            stage,
            origin,
            issued_at,
            changed_at,
            first_used_at,
            parts,
        } = c;
        let body = CredentialBodyV1 {
            format,
            level,
            stage,
            origin,
            issued_at,
            changed_at,
            first_used_at,
            parts,
        };
        Ok(Self {
            profile: profile_name(profile).to_owned(),
            serial: to_sql_int(serial, "credential serial", engine)?,
            key_id: i64::from(hash.key_id.0),
            phc: hash.phc,
            body: to_json(&body)?,
            deliver_due,
        })
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(Box::new(e)))
}

impl TryFrom<SubjectRowV1> for Subject {
    type Error = StoreError;

    fn try_from(row: SubjectRowV1) -> Result<Self, StoreError> {
        let SubjectRowV1 {
            tax_code,
            row_format,
            profile,
            body,
            noipa_email_key: key,
            credential,
        } = row;
        if row_format != ROW_FORMAT {
            return Err(corrupt(format_args!(
                "subject row format {row_format} is unknown"
            )));
        }
        let tax_code =
            TaxCode::parse(&tax_code).map_err(|e| corrupt(format_args!("tax code: {e}")))?;
        let body: SubjectBodyV1 =
            serde_json::from_str(&body).map_err(|e| corrupt(format_args!("subject body: {e}")))?;
        let SubjectBodyV1 {
            role,
            contacts,
            registered,
            cns_holder,
            enrolled_on,
            identified_at,
            represented_by,
            pending,
            last_serial,
            resends,
            created_at,
            declaration,
            verified_pin,
        } = body;
        if profile != profile_name(role.profile()) {
            return Err(corrupt(format_args!(
                "profile column {profile:?} does not match the role"
            )));
        }
        if key != noipa_email_key(role.profile(), &contacts) {
            return Err(corrupt(
                "the NoiPA e-mail key column does not match the contacts",
            ));
        }
        let credential = credential
            .map(|c| {
                if c.profile != profile {
                    return Err(corrupt(
                        "the credential's profile differs from the subject's",
                    ));
                }
                Credential::try_from(c)
            })
            .transpose()?;
        if let Some(c) = &credential
            && c.serial > last_serial
        {
            return Err(corrupt(format_args!(
                "credential serial {} is above the last serial {last_serial}",
                c.serial
            )));
        }
        // A row written before the fact was kept: a person with a PIN past activation
        // received it through one of the channels of that time.
        let verified_pin = verified_pin.unwrap_or_else(|| {
            credential
                .as_ref()
                .is_some_and(|c| c.stage != Stage::AwaitingActivation)
        });
        Ok(Self {
            tax_code,
            role,
            contacts,
            registered,
            cns_holder,
            enrolled_on,
            identified_at,
            represented_by,
            declaration,
            verified_pin,
            pending,
            credential,
            last_serial,
            resends,
            created_at,
        })
    }
}

impl TryFrom<CredentialRowV1> for Credential {
    type Error = StoreError;

    fn try_from(row: CredentialRowV1) -> Result<Self, StoreError> {
        let CredentialRowV1 {
            profile: _,
            serial,
            key_id,
            phc,
            body,
            deliver_due: _,
        } = row;
        let serial: u64 = from_sql_int(serial, "credential serial")?;
        if serial == 0 {
            return Err(corrupt("credential serial 0"));
        }
        let key_id = KeyId(from_sql_int(key_id, "pepper key id")?);
        if !phc.starts_with("$argon2id$") || phc.len() > MAX_PHC_LEN {
            return Err(corrupt("the stored hash is not an Argon2id PHC string"));
        }
        let body: CredentialBodyV1 = serde_json::from_str(&body)
            .map_err(|e| corrupt(format_args!("credential body: {e}")))?;
        let CredentialBodyV1 {
            format,
            level,
            stage,
            origin,
            issued_at,
            changed_at,
            first_used_at,
            parts,
        } = body;
        for p in &parts {
            if !(1..=2).contains(&p.of) || p.index == 0 || p.index > p.of {
                return Err(corrupt(format_args!(
                    "delivery part {} of {}",
                    p.index, p.of
                )));
            }
        }
        Ok(Self {
            serial,
            hash: PinHash { key_id, phc },
            format,
            level,
            stage,
            origin,
            issued_at,
            changed_at,
            first_used_at,
            parts,
        })
    }
}

impl TryFrom<AttemptsRowV1> for Attempts {
    type Error = StoreError;

    fn try_from(row: AttemptsRowV1) -> Result<Self, StoreError> {
        let AttemptsRowV1 {
            serial,
            failures,
            blocked,
        } = row;
        let blocked = match blocked {
            0 => false,
            1 => true,
            other => return Err(corrupt(format_args!("attempts blocked flag {other}"))),
        };
        Ok(Self {
            serial: from_sql_int(serial, "attempts serial")?,
            failures: from_sql_int(failures, "attempts failures")?,
            blocked,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::conformance::sample_subject;

    fn tax() -> TaxCode {
        TaxCode::parse("RSSMRA85T10A562S").unwrap()
    }

    /// A body as rows written before the declaration and verified-PIN facts were kept.
    fn without_new_fields(row: &mut SubjectRowV1) {
        let mut body: serde_json::Value = serde_json::from_str(&row.body).unwrap();
        let map = body.as_object_mut().unwrap();
        assert!(map.remove("verified_pin").is_some());
        let _ = map.remove("declaration");
        row.body = body.to_string();
    }

    // rule: INPS-16, INPS-15 — rows written before these facts were kept still read: a
    // person with a PIN past activation counts as having received a verified PIN, one without
    // does not; new rows round-trip both facts.
    #[test]
    fn older_rows_read_with_the_new_facts_derived() {
        for (serial, verified) in [(1, true), (0, false)] {
            let s = sample_subject(tax(), Role::Citizen, "m@example.it", serial);
            let mut row = SubjectRowV1::from_subject(&s, "test").unwrap();
            without_new_fields(&mut row);
            let back = Subject::try_from(row).unwrap();
            assert_eq!(back.verified_pin, verified);
            assert_eq!(back.declaration, None);
        }
        let mut s = sample_subject(tax(), Role::Citizen, "m@example.it", 0);
        s.verified_pin = true;
        s.declaration = Some(Declaration {
            role: Representation::Curator,
            received_by: "branch_operator:B1".to_owned(),
            at: s.created_at,
        });
        let row = SubjectRowV1::from_subject(&s, "test").unwrap();
        assert_eq!(Subject::try_from(row).unwrap(), s);
    }
}
