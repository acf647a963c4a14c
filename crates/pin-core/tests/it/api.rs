//! What an embedding service sees of the public API: a status without secrets, `Debug`
//! that redacts personal data.

use std::sync::Arc;

use pin_core::audit::AuditEvent;
use pin_core::command::{AttemptsUpdate, Check, Command, Enrolment, Notice, NoticeKind};
use pin_core::conformance::sample_subject;
use pin_core::hash::Keyring;
use pin_core::keycheck::KeyFingerprint;
use pin_core::memory::MemoryStore;
use pin_core::notify::{DeliveryError, MemoryOutbox, Notifier, Receipt};
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::{PinService, State};
use pin_core::store::{
    LeaseId, Loaded, Reservation, ReserveRequest, Settled, Settlement, Store, StoreError,
};
use pin_core::subject::{Channel, Role, Subject as SubjectRecord};
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, Level, VerifyOutcome};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::harness::{
    LAURA, MARIO, PEPPER, cheap_policy, date, email_only, enrol_inps, full_contacts, service,
    subject, t0, tax,
};

const EMAIL: &str = "laura.bianchi@example.it";
const MOBILE: &str = "+393471234567";
const PEC: &str = "pec.user@pec.example.it";
const ADDRESS: &str = "Via Roma 1, 00100 Roma RM";

/// A service where Laura has every contact and a PIN waiting for its first use.
fn laura_with_a_pin() -> crate::harness::Service {
    let s = service();
    let _ = enrol_inps(&s, LAURA, Role::Citizen, full_contacts(EMAIL), t0());
    let _ = s
        .execute(
            &tax(LAURA),
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            t0(),
        )
        .unwrap();
    s
}

fn assert_no_personal_data(what: &str, text: &str) {
    for full in [
        EMAIL,
        MOBILE,
        PEC,
        ADDRESS,
        "3471234567",
        "laura.bianchi",
        "Via Roma",
    ] {
        assert!(!text.contains(full), "{what} shows {full:?}: {text}");
    }
}

// rule: BOTH-2 — the status a caller can show or log holds no hash of the PIN, and the
// contacts only masked.
#[test]
fn both_2_status_serialises_without_hash_and_with_masked_contacts() {
    let s = laura_with_a_pin();
    let record = subject(&s, LAURA);
    let phc = record.credential.as_ref().unwrap().hash.phc.clone();
    assert!(phc.starts_with("$argon2id$"), "{phc}");

    let st = s.status(&tax(LAURA), t0()).unwrap();
    let json = serde_json::to_string(&st).unwrap();
    assert!(!json.contains("$argon2"), "{json}");
    assert!(!json.contains(&phc), "{json}");
    assert!(!json.contains("phc") && !json.contains("hash"), "{json}");
    assert_no_personal_data("Status JSON", &json);
    let debug = format!("{st:?}");
    assert!(!debug.contains("$argon2"), "{debug}");
    assert_no_personal_data("Status Debug", &debug);

    // What a caller needs is there: the masked contacts, the PIN without its hash.
    assert_eq!(st.contacts.email.as_deref(), Some("l***@example.it"));
    assert_eq!(st.contacts.mobile.as_deref(), Some("+39*******567"));
    assert_eq!(st.contacts.pec.as_deref(), Some("p***@pec.example.it"));
    assert!(st.contacts.address);
    assert_eq!(st.tax_code, tax(LAURA));
    assert_eq!(st.profile(), record.profile());
    let c = st.credential.as_ref().unwrap();
    let r = record.credential.as_ref().unwrap();
    assert_eq!(
        (c.serial, c.format, c.stage, c.issued_at, &c.parts),
        (r.serial, r.format, r.stage, r.issued_at, &r.parts)
    );
    assert_eq!(st.state, State::MustChange);
}

#[test]
fn status_without_contacts_or_pin_is_empty_not_missing() {
    let s = service();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        pin_core::contact::Contacts::default(),
        t0(),
    );
    let st = s.status(&tax(LAURA), t0()).unwrap();
    assert_eq!(st.contacts, pin_core::status::MaskedContacts::default());
    assert_eq!(st.credential, None);
    assert_eq!(st.state, State::NoPin);
}

#[test]
fn debug_of_a_subject_and_its_contacts_redacts_personal_data() {
    let s = laura_with_a_pin();
    let record = subject(&s, LAURA);
    let debug = format!("{record:?}");
    assert_no_personal_data("Subject Debug", &debug);
    // The tax code may show; the contacts only masked.
    assert!(debug.contains(LAURA), "{debug}");
    assert!(debug.contains("l***@example.it"), "{debug}");
    assert!(debug.contains("+39*******567"), "{debug}");
    assert!(debug.contains("p***@pec.example.it"), "{debug}");
    assert!(debug.ends_with(", .. }"), "{debug}");

    let contacts = full_contacts(EMAIL);
    let pretty = format!("{contacts:#?}");
    assert_no_personal_data("Contacts Debug", &pretty);
    for (what, text) in [
        ("Email", format!("{:?}", contacts.email.as_ref().unwrap())),
        ("PEC", format!("{:?}", contacts.pec.as_ref().unwrap())),
        ("Mobile", format!("{:?}", contacts.mobile.as_ref().unwrap())),
        (
            "Address",
            format!("{:?}", contacts.address.as_ref().unwrap()),
        ),
    ] {
        assert_no_personal_data(what, &text);
        assert!(text.ends_with(".. }"), "{what}: {text}");
    }
    assert_eq!(
        format!("{:?}", contacts.email.unwrap()),
        r#"Email { masked: "l***@example.it", .. }"#
    );
    assert_eq!(format!("{:?}", contacts.address.unwrap()), "Address { .. }");
}

/// A store whose provided methods are its own: behind a pointer, the pointer must call
/// them, not the trait's defaults.
struct OwnBatch(pin_core::memory::MemoryStore);

const OWN: &str = "the store's own create_many";

impl Store for OwnBatch {
    fn load(&self, t: &TaxCode) -> Result<Option<Loaded>, StoreError> {
        self.0.load(t)
    }
    fn create(&self, s: &SubjectRecord, a: &[AuditEvent]) -> Result<u64, StoreError> {
        self.0.create(s, a)
    }
    fn create_many(&self, _: &[(SubjectRecord, Vec<AuditEvent>)]) -> Result<(), StoreError> {
        Err(StoreError::Backend(OWN.into()))
    }
    fn save(
        &self,
        s: &SubjectRecord,
        e: u64,
        u: AttemptsUpdate,
        a: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        self.0.save(s, e, u, a)
    }
    fn reserve_attempt(&self, t: &TaxCode, r: &ReserveRequest) -> Result<Reservation, StoreError> {
        self.0.reserve_attempt(t, r)
    }
    fn settle_attempt(
        &self,
        t: &TaxCode,
        s: u64,
        l: LeaseId,
        limit: u32,
        x: Settlement,
        a: &AuditEvent,
    ) -> Result<Settled, StoreError> {
        self.0.settle_attempt(t, s, l, limit, x, a)
    }
    fn key_fingerprints(&self) -> Result<Vec<(KeyId, KeyFingerprint)>, StoreError> {
        self.0.key_fingerprints()
    }
    fn record_key_fingerprint(
        &self,
        id: KeyId,
        f: &KeyFingerprint,
    ) -> Result<KeyFingerprint, StoreError> {
        self.0.record_key_fingerprint(id, f)
    }
    fn append_audit(&self, e: &[AuditEvent]) -> Result<(), StoreError> {
        self.0.append_audit(e)
    }
    fn audit_log(&self, t: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError> {
        self.0.audit_log(t)
    }
    // `awaiting_outbound` left to the default: it answers an error.
}

/// `create_many` and `awaiting_outbound` through `store`, whatever pointer it is.
fn provided<S: Store>(store: S) -> (String, bool) {
    let batch = vec![(
        sample_subject(tax(LAURA), Role::Citizen, "laura@example.it", 1),
        Vec::new(),
    )];
    let many = match store.create_many(&batch) {
        Ok(()) => "default".to_owned(),
        Err(e) => e.to_string(),
    };
    (many, store.awaiting_outbound().is_ok())
}

#[test]
fn store_behind_box_and_arc_passes_the_conformance_suite() {
    pin_core::conformance::run_all(|| Arc::new(MemoryStore::new()));
    pin_core::conformance::run_all(|| Box::new(MemoryStore::new()));
    pin_core::conformance::run_all(|| -> Box<dyn Store + Sync> { Box::new(MemoryStore::new()) });
}

#[test]
fn store_pointers_forward_the_provided_methods() {
    let own = |o: (String, bool)| {
        assert!(o.0.contains(OWN), "{o:?}");
        assert!(!o.1, "{o:?}");
    };
    own(provided(OwnBatch(MemoryStore::new())));
    own(provided::<&OwnBatch>(&OwnBatch(MemoryStore::new())));
    own(provided(Box::new(OwnBatch(MemoryStore::new()))));
    own(provided(Arc::new(OwnBatch(MemoryStore::new()))));
    let boxed: Box<dyn Store> = Box::new(OwnBatch(MemoryStore::new()));
    own(provided(boxed));
    // The memory store lists the outbound queue: the pointers ask it, not the default.
    assert_eq!(
        provided(Arc::new(MemoryStore::new())),
        ("default".to_owned(), true)
    );
    assert_eq!(
        provided(Box::new(MemoryStore::new())),
        ("default".to_owned(), true)
    );
}

fn notice() -> Notice {
    Notice {
        subject: tax(LAURA),
        kind: NoticeKind::PinReset,
        channel: Channel::Email,
        recipient: EMAIL.to_owned(),
        at: t0(),
    }
}

#[test]
fn debug_of_a_notice_leaves_the_recipient_out() {
    let debug = format!("{:?}", notice());
    assert_no_personal_data("Notice Debug", &debug);
    assert!(
        debug.contains("PinReset") && debug.ends_with(".. }"),
        "{debug}"
    );
}

fn notify_via<N: Notifier>(n: N) -> Result<Receipt, DeliveryError> {
    n.notify(&notice())
}

#[test]
fn notifier_behind_box_and_arc_forwards_notices() {
    let outbox = Arc::new(MemoryOutbox::new());
    assert!(matches!(notify_via(Arc::clone(&outbox)), Ok(Receipt::Sent)));
    assert!(matches!(notify_via(&outbox), Ok(Receipt::Sent)));
    assert_eq!(outbox.take_notices(), vec![notice(), notice()]);
    let boxed: Box<dyn Notifier> = Box::new(MemoryOutbox::new());
    assert!(matches!(notify_via(boxed), Ok(Receipt::Sent)));
    assert!(matches!(
        notify_via(Box::new(MemoryOutbox::new())),
        Ok(Receipt::Sent)
    ));
}

#[test]
fn a_service_runs_over_shared_store_and_notifier() {
    let store = Arc::new(MemoryStore::new());
    let outbox = Arc::new(MemoryOutbox::new());
    let keys = Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap());
    let s = PinService::new(
        Arc::clone(&store),
        Arc::clone(&outbox),
        cheap_policy().build().unwrap(),
        keys,
        ChaCha20Rng::seed_from_u64(3),
    )
    .unwrap();
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::Rid("rid-1".into()),
            &Command::Enrol(Enrolment {
                role: Role::Employee,
                contacts: email_only("mario@example.it"),
                cns_holder: false,
                enrolled_on: Some(date(2020, 9, 1)),
            }),
            t0(),
        )
        .unwrap();
    let mail = outbox.take();
    assert_eq!(mail.len(), 1);
    let pin = mail[0].delivery.secret.expose_secret().to_owned();
    assert!(matches!(
        s.verify(&tax(MARIO), &pin, Level::Online, t0()).unwrap(),
        VerifyOutcome::Accepted { .. }
    ));
    // The caller's handle sees what the service stored.
    assert!(store.load(&tax(MARIO)).unwrap().is_some());
}
