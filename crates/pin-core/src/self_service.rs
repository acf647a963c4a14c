//! NoiPA self-services that need the PIN or the CNS (NOIPA-10, NOIPA-11).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::command::{Authenticated, CnsAuthenticated, Want};
use crate::error::Refusal;
use crate::subject::{Attempts, Profile, Subject};

/// A NoiPA self-service that requires the PIN or the CNS (NOIPA-11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfService {
    /// *Piccolo prestito*: small loan.
    SmallLoan,
    /// Complementary pension.
    ComplementaryPension,
    /// Change of e-mail and phone.
    ContactChange,
    /// Family deductions.
    FamilyDeductions,
    /// Residence change.
    ResidenceChange,
    /// *730* tax assistance.
    TaxAssistance730,
    /// Salary payment method change.
    SalaryPaymentMethod,
}

/// How the person proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proof<'a> {
    /// The PIN, verified by [`crate::service::PinService::authenticate`].
    Pin(&'a Authenticated),
    /// The *CNS* (national service card): the proof the card middleware gave
    /// ([`CnsAuthenticated::check`]), never a bare flag (NOIPA-10, NOIPA-13).
    Cns(&'a CnsAuthenticated),
}

/// Whether `subject`, whose attempt counter is `attempts`, may use `service` with `proof`
/// at `now` (NOIPA-10, NOIPA-11). A PIN proof must be this person's, of the current PIN,
/// given to access a service, not blocked since and fresh; a CNS proof must name this person,
/// be fresh, and the person must be registered as a CNS holder.
///
/// # Errors
/// [`Refusal`] explaining what is missing.
pub fn authorize(
    subject: &Subject,
    attempts: &Attempts,
    service: SelfService,
    proof: &Proof<'_>,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let _ = service; // every listed service needs the same proof (NOIPA-11)
    if subject.profile() != Profile::Noipa {
        return Err(Refusal::NotForProfile {
            action: "NoiPA self-services",
            profile: "INPS",
        });
    }
    match proof {
        Proof::Pin(a) => a
            .check(
                subject,
                attempts,
                now,
                &[Want::Access],
                "use a NoiPA self-service",
            )
            .map(|_| ()),
        Proof::Cns(card) => card.check_for(subject, now),
    }
}
