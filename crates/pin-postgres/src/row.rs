//! Versioned row types and their conversion into pin-core's domain types — the same row
//! format 1 as pin-sqlite's, so that a record reads back identically from either store.
//!
//! A row is read as it is stored ([`SubjectRowV1`], [`CredentialRowV1`], [`AttemptsRowV1`]:
//! plain integers, booleans and text) and converted with `TryFrom`, which checks every value. A row
//! that does not convert is [`StoreError::Corrupt`] — never a panic, never a record with a
//! made-up credential. A future row format gets its own `…V2` type and conversion.

use chrono::{DateTime, NaiveDate, Utc};
use pin_core::contact::{Contacts, Email};
use pin_core::format::PinFormat;
use pin_core::hash::PinHash;
use pin_core::secret::KeyId;
use pin_core::store::StoreError;
use pin_core::subject::{
    Attempts, Credential, Level, Origin, Part, Pending, Profile, Representation, Role, Stage,
    Subject,
};
use pin_core::tax_code::TaxCode;
use serde::{Deserialize, Serialize};

/// The row format written by this version (`subjects.row_format`).
pub(crate) const ROW_FORMAT: i16 = 1;

/// Longest PHC string accepted (the schema's CHECK says the same).
const MAX_PHC_LEN: usize = 256;

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The name of a profile in the `profile` columns.
pub(crate) fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Noipa => "noipa",
        Profile::Inps => "inps",
    }
}

/// The key of the NOIPA-8 unique index: the lower-cased e-mail of a NoiPA subject.
pub(crate) fn noipa_email_key(profile: Profile, contacts: &Contacts) -> Option<String> {
    match profile {
        Profile::Noipa => contacts.email.as_ref().map(Email::unique_key),
        Profile::Inps => None,
    }
}

/// A `u64` of the domain as a PostgreSQL `bigint`.
pub(crate) fn to_sql_int(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Backend(format!("{what} {value} is beyond what PostgreSQL can store").into())
    })
}

fn from_sql_int<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| corrupt(format_args!("{what} {value} is out of range")))
}

/// `subjects.body`, format 1: the record without its tax code (a column) and its credential
/// (a row of `credentials`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubjectBodyV1 {
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
}

/// `credentials.body`, format 1: the credential without its serial and hash (columns).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialBodyV1 {
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
pub(crate) struct CredentialRowV1 {
    pub(crate) profile: String,
    pub(crate) serial: i64,
    pub(crate) key_id: i64,
    pub(crate) phc: String,
    pub(crate) body: String,
}

/// A row of `subjects` with its credential row, if any, as stored.
#[derive(Debug)]
pub(crate) struct SubjectRowV1 {
    pub(crate) tax_code: String,
    pub(crate) row_format: i16,
    pub(crate) profile: String,
    pub(crate) body: String,
    pub(crate) noipa_email_key: Option<String>,
    pub(crate) credential: Option<CredentialRowV1>,
}

/// A row of `attempts`, as stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptsRowV1 {
    pub(crate) serial: i64,
    pub(crate) failures: i64,
    pub(crate) blocked: bool,
}

impl SubjectRowV1 {
    /// The row that stores `subject`.
    pub(crate) fn from_subject(subject: &Subject) -> Result<Self, StoreError> {
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
        };
        let credential = credential
            .map(|c| CredentialRowV1::from_credential(profile, c))
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
    fn from_credential(profile: Profile, c: Credential) -> Result<Self, StoreError> {
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
            serial: to_sql_int(serial, "credential serial")?,
            key_id: i64::from(hash.key_id.0),
            phc: hash.phc,
            body: to_json(&body)?,
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
        Ok(Self {
            tax_code,
            role,
            contacts,
            registered,
            cns_holder,
            enrolled_on,
            identified_at,
            represented_by,
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
        Ok(Self {
            serial: from_sql_int(serial, "attempts serial")?,
            failures: from_sql_int(failures, "attempts failures")?,
            blocked,
        })
    }
}
