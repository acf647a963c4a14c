//! The SMS texts: short, one per message, in Italian or English.
//!
//! They say what the e-mails of `pin-smtp` say, shortened for a phone screen (this crate
//! does not depend on `pin-smtp`, whose texts are letters with a subject line). Each fits
//! one SMS: at most 160 characters, all in the GSM 7-bit alphabet (so `è`, never `È`, which
//! would switch the whole message to UCS-2 and 70 characters a segment). The secret
//! appears exactly once, after a colon:
//!
//! - `Il Suo PIN NoiPA: 48213. Il PIN è personale: non lo comunichi a nessuno.`
//! - `Your INPS PIN, part 2 of 2: K7QM2ZXA. It is personal: never tell it to anyone.`

use pin_core::command::{Delivery, Notice, NoticeKind};
use zeroize::Zeroizing;

use crate::config::Language;

/// Who issues the PIN: a 5-character PIN sent whole is NoiPA's (NOIPA-1); everything else
/// is INPS's.
fn issuer(d: &Delivery) -> &'static str {
    if d.secret.len() == 5 && d.of == 1 {
        "NoiPA"
    } else {
        "INPS"
    }
}

/// The SMS that carries the secret of `d`.
#[must_use]
pub fn render(d: &Delivery, language: Language) -> Zeroizing<String> {
    let issuer = issuer(d);
    let secret = d.secret.expose_secret();
    Zeroizing::new(match (d.of > 1, language) {
        (false, Language::Italian) => format!(
            "Il Suo PIN {issuer}: {secret}. Il PIN è personale: non lo comunichi a nessuno."
        ),
        (true, Language::Italian) => format!(
            "Il Suo PIN {issuer}, parte {} di {}: {secret}. Il PIN è personale: non lo \
             comunichi a nessuno.",
            d.part, d.of
        ),
        (false, Language::English) => {
            format!("Your {issuer} PIN: {secret}. It is personal: never tell it to anyone.")
        }
        (true, Language::English) => format!(
            "Your {issuer} PIN, part {} of {}: {secret}. It is personal: never tell it to \
             anyone.",
            d.part, d.of
        ),
    })
}

/// The SMS of a security notice (POL-6): what happened and when, and what to do if it was
/// not the person. It carries no secret (there is none in a [`Notice`]).
#[must_use]
pub fn render_notice(n: &Notice, language: Language) -> String {
    let when = n.at.format("%Y-%m-%d %H:%M UTC");
    match language {
        Language::Italian => {
            let what = match n.kind {
                NoticeKind::ContactsChanged => "i recapiti del Suo PIN sono stati modificati",
                NoticeKind::PinReset => "il Suo PIN è stato ripristinato",
                NoticeKind::PinIssuedByOther { .. } => {
                    "è stato emesso un nuovo PIN su richiesta di un'altra persona"
                }
                NoticeKind::Locked => "il Suo PIN è stato bloccato dopo troppi tentativi errati",
                NoticeKind::DeliveryFailed => "non siamo riusciti a consegnarLe il nuovo PIN",
            };
            format!(
                "Avviso di sicurezza: il {when} {what}. Se non è stato Lei, contatti subito \
                 l'assistenza."
            )
        }
        Language::English => {
            let what = match n.kind {
                NoticeKind::ContactsChanged => "the contacts of your PIN were changed",
                NoticeKind::PinReset => "your PIN was reset",
                NoticeKind::PinIssuedByOther { .. } => {
                    "a new PIN was issued at someone else's request"
                }
                NoticeKind::Locked => "your PIN was blocked after too many wrong attempts",
                NoticeKind::DeliveryFailed => "your new PIN could not be delivered",
            };
            format!(
                "Security notice: on {when} {what}. If it was not you, contact the issuer at \
                 once."
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use pin_core::format::{PinFormat, parse_input};
    use pin_core::subject::{Channel, Origin};
    use pin_core::tax_code::TaxCode;

    fn delivery(secret: &str, part: u8, of: u8) -> Delivery {
        let format = if secret.len() == 5 {
            PinFormat::NoipaDigits5
        } else {
            PinFormat::InpsInUse8
        };
        Delivery {
            subject: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
            serial: 1,
            part,
            of,
            channel: Channel::Sms,
            recipient: "+393471234567".into(),
            secret: parse_input(format, secret).unwrap(),
            origin: Origin::Enrolment,
        }
    }

    /// One SMS segment: at most 160 characters of the GSM 7-bit basic alphabet (the
    /// characters these texts could use; `[`, `]`, `{`, `}`, `~`, `|`, `€` and `È` are not
    /// in it).
    fn one_gsm_segment(text: &str) {
        assert!(
            text.chars().count() <= 160,
            "{} > 160: {text}",
            text.chars().count()
        );
        let gsm = |c: char| {
            c.is_ascii_alphanumeric()
                || " .,:;'!?-()+/\"@#%&*<>=_".contains(c)
                || "èéùìòàÉ".contains(c)
        };
        assert!(text.chars().all(gsm), "not GSM 7-bit: {text}");
    }

    #[test]
    fn every_text_fits_one_gsm_sms() {
        for language in [Language::Italian, Language::English] {
            for (secret, part, of) in [("48213", 1, 1), ("K7QM2ZXA", 1, 2), ("K7QM2ZXA", 2, 2)] {
                one_gsm_segment(&render(&delivery(secret, part, of), language));
            }
            for kind in [
                NoticeKind::ContactsChanged,
                NoticeKind::PinReset,
                NoticeKind::PinIssuedByOther { by: "rid" },
                NoticeKind::Locked,
                NoticeKind::DeliveryFailed,
            ] {
                one_gsm_segment(&render_notice(&notice(kind), language));
            }
        }
    }

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            subject: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
            kind,
            channel: Channel::Sms,
            recipient: "+393471234567".into(),
            at: chrono::Utc
                .with_ymd_and_hms(2026, 1, 15, 9, 0, 0)
                .single()
                .unwrap(),
        }
    }

    #[test]
    fn the_secret_appears_once_with_its_part() {
        let it = render(&delivery("48213", 1, 1), Language::Italian);
        assert!(it.starts_with("Il Suo PIN NoiPA: 48213."), "{}", *it);
        let en = render(&delivery("K7QM2ZXA", 2, 2), Language::English);
        assert!(
            en.starts_with("Your INPS PIN, part 2 of 2: K7QM2ZXA."),
            "{}",
            *en
        );
        let it = render(&delivery("K7QM2ZXA", 1, 2), Language::Italian);
        assert!(it.contains("parte 1 di 2: K7QM2ZXA."), "{}", *it);
        for t in [&it, &en] {
            assert_eq!(t.matches("K7QM2ZXA").count(), 1);
        }
    }

    // rule: POL-6 — notices in both languages, for every kind, carry no PIN.
    #[test]
    fn notices_carry_no_pin() {
        for kind in [
            NoticeKind::ContactsChanged,
            NoticeKind::PinReset,
            NoticeKind::PinIssuedByOther { by: "rid" },
            NoticeKind::Locked,
            NoticeKind::DeliveryFailed,
        ] {
            let n = notice(kind);
            for language in [Language::Italian, Language::English] {
                let t = render_notice(&n, language);
                assert!(t.contains("2026-01-15 09:00 UTC"), "{t}");
                assert!(t.contains("PIN"), "{t}");
                assert!(!t.contains("PIN:"), "{t}");
            }
        }
    }
}
