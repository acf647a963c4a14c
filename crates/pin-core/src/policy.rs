//! Every number of the lifecycle, as one value.
//!
//! A [`Policy`] holds the limits and periods that RULES.md fixes (lockout after 10 wrong
//! attempts, rotation every 6 or 3 months) and the choices it leaves open (marked *policy*
//! there: re-send limits, expiry of PINs never used, hash costs). Defaults are those of
//! RULES.md; every value can be overridden through [`PolicyBuilder`], which refuses nonsense
//! (a zero limit, a floor above the cap) when [`PolicyBuilder::build`] is called.

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::hash::HashParams;

/// Why a policy was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A count that must be at least one is zero.
    #[error("policy: {field} must be at least 1")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// A duration that must be positive is zero or negative.
    #[error("policy: {field} must be a positive duration")]
    NotPositive {
        /// The field.
        field: &'static str,
    },
    /// A value is above what the library supports.
    #[error("policy: {field} is {value}, above the maximum of {max}")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// Given value.
        value: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// The Argon2 parameters do not satisfy floor ≤ live ≤ cap, or Argon2 refuses them.
    #[error("policy: Argon2 parameters: {0}")]
    Hash(String),
}

/// The numbers of the lifecycle. Build one with [`Policy::builder`]; [`Policy::default`]
/// holds the defaults of RULES.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub(crate) noipa_lockout: u32,
    pub(crate) inps_lockout: u32,
    pub(crate) rotation_citizen_months: u32,
    pub(crate) rotation_intermediary_months: u32,
    pub(crate) noipa_rotation_months: Option<u32>,
    pub(crate) resend_limit: u32,
    pub(crate) resend_window: Duration,
    pub(crate) support_resend_after: Duration,
    pub(crate) unused_expiry_digital: Duration,
    pub(crate) unused_expiry_post: Duration,
    pub(crate) noipa_unused_expiry: Option<Duration>,
    pub(crate) noipa_auto_issue_from: NaiveDate,
    pub(crate) hash_live: HashParams,
    pub(crate) hash_floor: HashParams,
    pub(crate) hash_cap: HashParams,
    pub(crate) noipa_email_with_sms: bool,
    pub(crate) no_periodic_rotation: bool,
    pub(crate) delivery_retry_first: Duration,
    pub(crate) delivery_retry_cap: Duration,
    pub(crate) delivery_deadline: Duration,
    pub(crate) delivery_claim: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            noipa_lockout: 10,
            inps_lockout: 10,
            rotation_citizen_months: 6,
            rotation_intermediary_months: 3,
            noipa_rotation_months: None,
            resend_limit: 5,
            resend_window: Duration::hours(24),
            support_resend_after: Duration::hours(12),
            unused_expiry_digital: Duration::days(30),
            unused_expiry_post: Duration::days(90),
            noipa_unused_expiry: None,
            noipa_auto_issue_from: NaiveDate::from_ymd_opt(2014, 4, 1).unwrap_or_default(),
            hash_live: HashParams::RECOMMENDED,
            // Weakest accepted from a stored hash: OWASP's smallest Argon2id memory (7 MiB).
            hash_floor: HashParams {
                m_kib: 7_168,
                t_cost: 1,
                p_cost: 1,
            },
            // Strongest accepted: a hostile row cannot ask for more than 256 MiB × 10 passes.
            hash_cap: HashParams {
                m_kib: 262_144,
                t_cost: 10,
                p_cost: 8,
            },
            noipa_email_with_sms: false,
            no_periodic_rotation: false,
            delivery_retry_first: Duration::seconds(30),
            delivery_retry_cap: Duration::minutes(15),
            delivery_deadline: Duration::hours(24),
            delivery_claim: Duration::minutes(2),
        }
    }
}

impl Policy {
    /// A builder starting from the defaults of RULES.md.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            policy: Self::default(),
        }
    }

    /// Consecutive wrong attempts that block a NoiPA PIN (POL-1; default 10).
    #[must_use]
    pub fn noipa_lockout(&self) -> u32 {
        self.noipa_lockout
    }
    /// Consecutive wrong attempts that block an INPS PIN (INPS-12; default 10).
    #[must_use]
    pub fn inps_lockout(&self) -> u32 {
        self.inps_lockout
    }
    /// Rotation period of citizens' INPS PINs in calendar months (INPS-11; default 6).
    #[must_use]
    pub fn rotation_citizen_months(&self) -> u32 {
        self.rotation_citizen_months
    }
    /// Rotation period of intermediaries' INPS PINs in calendar months (INPS-11; default 3).
    #[must_use]
    pub fn rotation_intermediary_months(&self) -> u32 {
        self.rotation_intermediary_months
    }
    /// Rotation of NoiPA PINs in calendar months; `None`: they do not expire (POL-2).
    #[must_use]
    pub fn noipa_rotation_months(&self) -> Option<u32> {
        self.noipa_rotation_months
    }
    /// The wait before the first new try of a part whose channel was unavailable; it
    /// doubles at each further try up to [`Policy::delivery_retry_cap`] (default 30 s).
    #[must_use]
    pub fn delivery_retry_first(&self) -> Duration {
        self.delivery_retry_first
    }
    /// The longest wait between tries of an unavailable channel (default 15 min).
    #[must_use]
    pub fn delivery_retry_cap(&self) -> Duration {
        self.delivery_retry_cap
    }
    /// How long after its issue a part may stay undelivered: past it, the next try that
    /// finds the channel unavailable marks the part failed, its sealed copy is erased, and
    /// recovery is a fresh issue (POL-3; default 24 h).
    #[must_use]
    pub fn delivery_deadline(&self) -> Duration {
        self.delivery_deadline
    }
    /// How long a delivery worker holds the parts it took before another worker may take
    /// them (a worker that dies mid-send leaves them due again after this; default 2 min).
    #[must_use]
    pub fn delivery_claim(&self) -> Duration {
        self.delivery_claim
    }
    /// Re-sends allowed per subject within [`Policy::resend_window`] (POL-4; default 5).
    #[must_use]
    pub fn resend_limit(&self) -> u32 {
        self.resend_limit
    }
    /// The sliding window of the re-send limit (POL-4; default 24 h).
    #[must_use]
    pub fn resend_window(&self) -> Duration {
        self.resend_window
    }
    /// How long after identification NoiPA support may re-send (NOIPA-5; default 12 h).
    #[must_use]
    pub fn support_resend_after(&self) -> Duration {
        self.support_resend_after
    }
    /// Validity of an issued PIN never used, when every part went by a digital channel
    /// (e-mail, SMS, PEC, phone; default 30 days).
    #[must_use]
    pub fn unused_expiry_digital(&self) -> Duration {
        self.unused_expiry_digital
    }
    /// Validity of an issued PIN never used, when a part went by post or sealed envelope
    /// (default 90 days).
    #[must_use]
    pub fn unused_expiry_post(&self) -> Duration {
        self.unused_expiry_post
    }
    /// Validity of a NoiPA PIN never used; `None` (the default): NoiPA PINs do not expire
    /// (POL-2) — only a new issue replaces them (NOIPA-6).
    #[must_use]
    pub fn noipa_unused_expiry(&self) -> Option<Duration> {
        self.noipa_unused_expiry
    }
    /// People enrolled on or after this date get a NoiPA PIN at enrolment (NOIPA-2;
    /// default 2014-04-01, i.e. after 31 March 2014).
    #[must_use]
    pub fn noipa_auto_issue_from(&self) -> NaiveDate {
        self.noipa_auto_issue_from
    }
    /// Argon2id parameters for new hashes.
    #[must_use]
    pub fn hash_live(&self) -> HashParams {
        self.hash_live
    }
    /// Weakest Argon2id parameters accepted from a stored hash.
    #[must_use]
    pub fn hash_floor(&self) -> HashParams {
        self.hash_floor
    }
    /// Strongest Argon2id parameters accepted from a stored hash (protects against a hostile
    /// row asking for gigabytes).
    #[must_use]
    pub fn hash_cap(&self) -> HashParams {
        self.hash_cap
    }

    /// NoiPA delivery when a mobile number is on record: `false` (the default), the PIN goes
    /// only by SMS, as the self-service guide says; `true`, by e-mail as well, as the FAQ
    /// says (NOIPA-4).
    #[must_use]
    pub fn noipa_email_with_sms(&self) -> bool {
        self.noipa_email_with_sms
    }
    /// NIST SP 800-63B mode: no periodic change of any PIN (a change only on evidence of
    /// compromise, by reset or a new issue). Off by default, since INPS-11 asks for
    /// rotation every 6 or 3 months.
    #[must_use]
    pub fn no_periodic_rotation(&self) -> bool {
        self.no_periodic_rotation
    }

    /// The lockout limit of a profile.
    #[must_use]
    pub fn lockout(&self, profile: crate::Profile) -> u32 {
        match profile {
            crate::Profile::Noipa => self.noipa_lockout,
            crate::Profile::Inps => self.inps_lockout,
        }
    }

    /// The rotation period in months of a role; `None` when its PINs do not rotate.
    #[must_use]
    pub fn rotation_months(&self, role: crate::Role) -> Option<u32> {
        if self.no_periodic_rotation {
            return None;
        }
        match role {
            crate::Role::Employee => self.noipa_rotation_months,
            crate::Role::Citizen => Some(self.rotation_citizen_months),
            crate::Role::Intermediary => Some(self.rotation_intermediary_months),
        }
    }
}

/// Builds a [`Policy`], checking it when [`PolicyBuilder::build`] is called.
#[derive(Clone, Debug)]
#[must_use]
pub struct PolicyBuilder {
    policy: Policy,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.policy.$name = value;
            self
        }
    };
}

const MAX_LOCKOUT: u32 = 1_000;
const MAX_MONTHS: u32 = 120;

impl PolicyBuilder {
    setter!(/// Sets [`Policy::noipa_lockout`].
        noipa_lockout: u32);
    setter!(/// Sets [`Policy::inps_lockout`].
        inps_lockout: u32);
    setter!(/// Sets [`Policy::rotation_citizen_months`].
        rotation_citizen_months: u32);
    setter!(/// Sets [`Policy::rotation_intermediary_months`].
        rotation_intermediary_months: u32);
    setter!(/// Sets [`Policy::noipa_rotation_months`].
        noipa_rotation_months: Option<u32>);
    setter!(/// Sets [`Policy::resend_limit`].
        resend_limit: u32);
    setter!(/// Sets [`Policy::resend_window`].
        resend_window: Duration);
    setter!(/// Sets [`Policy::support_resend_after`].
        support_resend_after: Duration);
    setter!(/// Sets [`Policy::unused_expiry_digital`].
        unused_expiry_digital: Duration);
    setter!(/// Sets [`Policy::unused_expiry_post`].
        unused_expiry_post: Duration);
    setter!(/// Sets [`Policy::noipa_unused_expiry`].
        noipa_unused_expiry: Option<Duration>);
    setter!(/// Sets [`Policy::noipa_auto_issue_from`].
        noipa_auto_issue_from: NaiveDate);
    setter!(/// Sets [`Policy::hash_live`].
        hash_live: HashParams);
    setter!(/// Sets [`Policy::hash_floor`].
        hash_floor: HashParams);
    setter!(/// Sets [`Policy::hash_cap`].
        hash_cap: HashParams);
    setter!(/// Sets [`Policy::noipa_email_with_sms`] (NOIPA-4).
        noipa_email_with_sms: bool);
    setter!(/// Sets [`Policy::no_periodic_rotation`] (NIST SP 800-63B mode; INPS-11).
        no_periodic_rotation: bool);
    setter!(/// Sets [`Policy::delivery_retry_first`].
        delivery_retry_first: Duration);
    setter!(/// Sets [`Policy::delivery_retry_cap`].
        delivery_retry_cap: Duration);
    setter!(/// Sets [`Policy::delivery_deadline`].
        delivery_deadline: Duration);
    setter!(/// Sets [`Policy::delivery_claim`].
        delivery_claim: Duration);

    /// Checks the policy and returns it.
    ///
    /// # Errors
    /// [`PolicyError`] names the first field that makes no sense.
    pub fn build(self) -> Result<Policy, PolicyError> {
        let p = self.policy;
        for (field, value, max) in [
            ("noipa_lockout", p.noipa_lockout, MAX_LOCKOUT),
            ("inps_lockout", p.inps_lockout, MAX_LOCKOUT),
            (
                "rotation_citizen_months",
                p.rotation_citizen_months,
                MAX_MONTHS,
            ),
            (
                "rotation_intermediary_months",
                p.rotation_intermediary_months,
                MAX_MONTHS,
            ),
            (
                "noipa_rotation_months",
                p.noipa_rotation_months.unwrap_or(1),
                MAX_MONTHS,
            ),
            ("resend_limit", p.resend_limit, MAX_LOCKOUT),
        ] {
            if value == 0 {
                return Err(PolicyError::Zero { field });
            }
            if value > max {
                return Err(PolicyError::TooLarge {
                    field,
                    value: value.into(),
                    max: max.into(),
                });
            }
        }
        for (field, value) in [
            ("resend_window", p.resend_window),
            ("unused_expiry_digital", p.unused_expiry_digital),
            ("unused_expiry_post", p.unused_expiry_post),
            ("delivery_retry_first", p.delivery_retry_first),
            ("delivery_retry_cap", p.delivery_retry_cap),
            ("delivery_deadline", p.delivery_deadline),
            ("delivery_claim", p.delivery_claim),
        ] {
            if value <= Duration::zero() {
                return Err(PolicyError::NotPositive { field });
            }
        }
        if p.noipa_unused_expiry.is_some_and(|d| d <= Duration::zero()) {
            return Err(PolicyError::NotPositive {
                field: "noipa_unused_expiry",
            });
        }
        if p.support_resend_after < Duration::zero() {
            return Err(PolicyError::NotPositive {
                field: "support_resend_after",
            });
        }
        let (l, f, c) = (p.hash_live, p.hash_floor, p.hash_cap);
        let le = |a: HashParams, b: HashParams| {
            a.m_kib <= b.m_kib && a.t_cost <= b.t_cost && a.p_cost <= b.p_cost
        };
        if !le(f, l) || !le(l, c) {
            return Err(PolicyError::Hash(format!(
                "need floor ≤ live ≤ cap in every component; floor {f:?}, live {l:?}, cap {c:?}"
            )));
        }
        l.validate().map_err(|e| PolicyError::Hash(e.to_string()))?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // rule: INPS-12, POL-1, INPS-11, POL-2, POL-4, NOIPA-5 — the defaults are RULES.md's numbers.
    #[test]
    fn defaults_are_the_rules() {
        let p = Policy::default();
        assert_eq!(p.inps_lockout(), 10);
        assert_eq!(p.noipa_lockout(), 10);
        assert_eq!(p.rotation_citizen_months(), 6);
        assert_eq!(p.rotation_intermediary_months(), 3);
        assert_eq!(p.noipa_rotation_months(), None);
        assert_eq!(p.resend_limit(), 5);
        assert_eq!(p.resend_window(), Duration::hours(24));
        assert_eq!(p.support_resend_after(), Duration::hours(12));
        assert_eq!(Policy::builder().build(), Ok(Policy::default()));
    }

    #[test]
    fn nonsense_is_refused() {
        assert_eq!(
            Policy::builder().inps_lockout(0).build(),
            Err(PolicyError::Zero {
                field: "inps_lockout"
            })
        );
        assert_eq!(
            Policy::builder().resend_window(Duration::zero()).build(),
            Err(PolicyError::NotPositive {
                field: "resend_window"
            })
        );
        assert!(matches!(
            Policy::builder().rotation_citizen_months(10_000).build(),
            Err(PolicyError::TooLarge {
                field: "rotation_citizen_months",
                ..
            })
        ));
        assert!(matches!(
            Policy::builder()
                .hash_floor(HashParams {
                    m_kib: 65_536,
                    t_cost: 3,
                    p_cost: 1
                })
                .build(),
            Err(PolicyError::Hash(_))
        ));
        assert!(matches!(
            Policy::builder().noipa_rotation_months(Some(0)).build(),
            Err(PolicyError::Zero { .. })
        ));
    }

    // rule: NOIPA-4, INPS-11 — SMS only and periodic rotation unless the policy says otherwise.
    #[test]
    fn noipa_email_and_nist_mode_are_off_by_default() {
        let p = Policy::default();
        assert!(!p.noipa_email_with_sms());
        assert!(!p.no_periodic_rotation());
        assert_eq!(p.rotation_months(crate::Role::Citizen), Some(6));
        let nist = Policy::builder().no_periodic_rotation(true).build();
        let months = nist.as_ref().map(|p| {
            (
                p.rotation_months(crate::Role::Citizen),
                p.rotation_months(crate::Role::Intermediary),
            )
        });
        assert_eq!(months, Ok((None, None)));
    }

    #[test]
    fn overrides_stick() {
        let p = Policy::builder()
            .inps_lockout(3)
            .noipa_rotation_months(Some(12))
            .build();
        let p = p
            .as_ref()
            .map(|p| (p.inps_lockout(), p.noipa_rotation_months()));
        assert_eq!(p, Ok((3, Some(12))));
    }
}
