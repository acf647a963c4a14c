//! The texts of the messages: subject line and body per channel (e-mail, PEC), part and
//! language.
//!
//! They follow the CLI outbox's texts (`crates/pin-cli/src/outbox.rs`) sentence for sentence,
//! in Italian and in English. The secret stands alone on a line of the body — `PIN: 48213`,
//! or `PIN (part 2 of 2): K7QM2ZXA` / `PIN (parte 2 di 2): K7QM2ZXA` when the PIN is split —
//! and **never** in the subject line, which mail servers log and mail clients show in lists
//! and notifications.

use std::fmt;
use std::str::FromStr;

use pin_core::command::{Delivery, Notice, NoticeKind};
use pin_core::subject::{Channel, Origin};
use zeroize::Zeroizing;

/// The language of the messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Language {
    /// Italian, the language of NoiPA and INPS (the default).
    #[default]
    Italian,
    /// English.
    English,
}

impl FromStr for Language {
    type Err = UnknownLanguage;

    /// `it`/`italian`/`italiano` or `en`/`english`/`inglese`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "it" | "ita" | "italian" | "italiano" => Ok(Self::Italian),
            "en" | "eng" | "english" | "inglese" => Ok(Self::English),
            _ => Err(UnknownLanguage),
        }
    }
}

/// A language name other than Italian (`it`) or English (`en`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown language: use `it` (Italian) or `en` (English)")]
pub struct UnknownLanguage;

/// A message ready to send: subject line and plain-text body. The body holds the secret: it
/// is zeroized on drop and left out of `Debug`.
pub struct Rendered {
    /// The subject line (never contains the secret).
    pub subject: String,
    /// The plain-text body, with the secret on a line of its own.
    pub body: Zeroizing<String>,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { subject, body: _ } = self;
        f.debug_struct("Rendered")
            .field("subject", subject)
            .finish_non_exhaustive()
    }
}

/// Who issues the PIN, told as the outbox tells it: a 5-character PIN sent whole is NoiPA's
/// (NOIPA-1); everything else is INPS's.
fn issuer(d: &Delivery) -> &'static str {
    if d.secret.len() == 5 && d.of == 1 {
        "NoiPA"
    } else {
        "INPS"
    }
}

fn why(origin: Origin, language: Language) -> &'static str {
    match language {
        Language::English => match origin {
            Origin::Enrolment => "because you were enrolled as a public employee",
            Origin::Identification => "because you were identified by your office's RID",
            Origin::Branch => "because you asked for it at an INPS branch counter",
            Origin::Web => "because you asked for it on the INPS website",
            Origin::ContactCentre => "because you asked for it through the INPS contact centre",
            Origin::PreAssigned => "because INPS assigned you a PIN",
            Origin::Reset => "because you asked to reset your PIN",
            Origin::Resend => {
                "because the previous PIN was re-sent; the earlier one no longer works"
            }
            Origin::Import => "because your PIN was migrated",
        },
        Language::Italian => match origin {
            Origin::Enrolment => "in seguito alla Sua immatricolazione come dipendente pubblico",
            Origin::Identification => {
                "in seguito alla Sua identificazione da parte del RID del Suo ufficio"
            }
            Origin::Branch => "come da Sua richiesta allo sportello di una sede INPS",
            Origin::Web => "come da Sua richiesta sul sito internet dell'INPS",
            Origin::ContactCentre => "come da Sua richiesta al Contact Center dell'INPS",
            Origin::PreAssigned => "perché l'INPS Le ha assegnato un PIN",
            Origin::Reset => "come da Sua richiesta di ripristino del PIN",
            Origin::Resend => "in sostituzione del PIN inviato in precedenza, che non è più valido",
            Origin::Import => "perché il Suo PIN è stato trasferito al nuovo sistema",
        },
    }
}

fn split_note(d: &Delivery, language: Language) -> Option<&'static str> {
    Some(match (d.part, d.of, d.origin, language) {
        (_, 1, _, _) => return None,
        (1, 2, Origin::PreAssigned, Language::English) => {
            "This message carries the first 8 characters of your PIN. Activate it on the INPS \
             website with your health card (tessera sanitaria) data; the last 8 characters \
             will then be sent to you by e-mail or SMS."
        }
        (1, 2, Origin::PreAssigned, Language::Italian) => {
            "Questo messaggio contiene i primi 8 caratteri del Suo PIN. Lo attivi sul sito \
             internet dell'INPS con i dati della Sua tessera sanitaria; gli ultimi 8 caratteri \
             Le saranno poi inviati per e-mail o SMS."
        }
        (1, 2, _, Language::English) => {
            "These are the FIRST 8 characters of your 16-character PIN; the last 8 arrive \
             separately."
        }
        (1, 2, _, Language::Italian) => {
            "Questi sono i PRIMI 8 caratteri del Suo PIN di 16 caratteri; gli ultimi 8 Le \
             arriveranno separatamente."
        }
        (_, _, _, Language::English) => {
            "These are the LAST 8 characters of your 16-character PIN; put them after the \
             first 8 you received separately. At first access you will replace the 16 \
             characters with a PIN of 8."
        }
        (_, _, _, Language::Italian) => {
            "Questi sono gli ULTIMI 8 caratteri del Suo PIN di 16 caratteri: li scriva dopo i \
             primi 8 ricevuti separatamente. Al primo accesso sostituirà i 16 caratteri con \
             un PIN di 8."
        }
    })
}

/// The line carrying the secret.
fn secret_line(d: &Delivery, language: Language) -> Zeroizing<String> {
    let secret = d.secret.expose_secret();
    Zeroizing::new(match (d.of > 1, language) {
        (false, _) => format!("PIN: {secret}"),
        (true, Language::English) => format!("PIN (part {} of {}): {secret}", d.part, d.of),
        (true, Language::Italian) => format!("PIN (parte {} di {}): {secret}", d.part, d.of),
    })
}

/// The subject line: who issues the PIN and which part — never the secret.
#[must_use]
pub fn subject_line(d: &Delivery, language: Language) -> String {
    let issuer = issuer(d);
    match (d.of > 1, language) {
        (false, Language::English) => format!("Your {issuer} PIN"),
        (false, Language::Italian) => format!("Il Suo PIN {issuer}"),
        (true, Language::English) => format!("Your {issuer} PIN (part {} of {})", d.part, d.of),
        (true, Language::Italian) => format!("Il Suo PIN {issuer} (parte {} di {})", d.part, d.of),
    }
}

/// The message a person receives by e-mail or PEC for `d`, in `language`. For other
/// channels the text is the e-mail's (this crate delivers only e-mail and PEC).
#[must_use]
pub fn render(d: &Delivery, language: Language) -> Rendered {
    let issuer = issuer(d);
    let mut body = Zeroizing::new(String::new());
    let mut line = |s: &str| {
        body.push_str(s);
        body.push('\n');
    };
    let pec = d.channel == Channel::Pec;
    match language {
        Language::English => {
            line("Dear user,");
            line("");
            line(&format!(
                "we are sending you your personal {issuer} PIN {}.",
                why(d.origin, language)
            ));
        }
        Language::Italian => {
            line("Gentile utente,");
            line("");
            line(&format!(
                "Le inviamo il Suo PIN personale {issuer} {}.",
                why(d.origin, language)
            ));
        }
    }
    if let Some(note) = split_note(d, language) {
        line(note);
    }
    line("");
    line(&secret_line(d, language));
    line("");
    match language {
        Language::English => {
            line("The PIN is personal and secret: never tell it to anyone, not even to our staff.");
            line(&format!(
                "If you did not ask for it, contact {issuer} at once."
            ));
            if pec {
                line("");
                line(
                    "This message was sent by PEC (certified e-mail) to your registered PEC address.",
                );
            }
        }
        Language::Italian => {
            line(
                "Il PIN è personale e segreto: non lo comunichi a nessuno, nemmeno al nostro \
                 personale.",
            );
            line(&format!(
                "Se non lo ha richiesto, contatti subito l'assistenza {issuer}."
            ));
            if pec {
                line("");
                line(
                    "Questo messaggio Le è stato inviato tramite PEC (posta elettronica \
                     certificata) all'indirizzo PEC registrato.",
                );
            }
        }
    }
    Rendered {
        subject: subject_line(d, language),
        body,
    }
}

/// Who asked for a PIN issued at someone else's request (POL-6).
fn requester(by: &str, language: Language) -> &'static str {
    match (by, language) {
        ("rid", Language::English) => "your office's RID",
        ("rid", Language::Italian) => "il RID del Suo ufficio",
        ("support", Language::English) => "the support service",
        ("support", Language::Italian) => "il servizio di assistenza",
        ("branch_operator", Language::English) => "an INPS branch operator",
        ("branch_operator", Language::Italian) => "un operatore di una sede INPS",
        ("contact_centre", Language::English) => "an INPS contact-centre operator",
        ("contact_centre", Language::Italian) => "un operatore del Contact Center INPS",
        ("representative", Language::English) => "a representative acting for you",
        ("representative", Language::Italian) => "un rappresentante che agisce per Suo conto",
        (_, Language::English) => "someone other than you",
        (_, Language::Italian) => "una persona diversa da Lei",
    }
}

/// A security notice (POL-6) by e-mail or PEC, in `language`: what happened and when, and
/// what to do if it was not the person. It carries no secret (there is none in a
/// [`Notice`]).
#[must_use]
pub fn render_notice(n: &Notice, language: Language) -> Rendered {
    let when = n.at.format("%Y-%m-%d %H:%M UTC");
    let (subject, what) = match language {
        Language::English => (
            "Security notice about your credentials".to_owned(),
            match n.kind {
                NoticeKind::ContactsChanged => {
                    "the contacts on record for your PIN were changed".to_owned()
                }
                NoticeKind::PinReset => "your PIN was reset; a new one was sent to you".to_owned(),
                NoticeKind::PinIssuedByOther { by } => format!(
                    "a new PIN was issued at the request of {}; the earlier one no longer works",
                    requester(by, language)
                ),
                NoticeKind::Locked => {
                    "your PIN was blocked after too many wrong attempts".to_owned()
                }
                NoticeKind::DeliveryFailed => "a new PIN could not be delivered to you; ask \
                     for a new one (a re-send, not counted against your limit) or update your \
                     contacts"
                    .to_owned(),
            },
        ),
        Language::Italian => (
            "Avviso di sicurezza sulle Sue credenziali".to_owned(),
            match n.kind {
                NoticeKind::ContactsChanged => {
                    "i recapiti registrati per il Suo PIN sono stati modificati".to_owned()
                }
                NoticeKind::PinReset => {
                    "il Suo PIN è stato ripristinato; Le è stato inviato un nuovo PIN".to_owned()
                }
                NoticeKind::PinIssuedByOther { by } => format!(
                    "è stato emesso un nuovo PIN su richiesta di {}; il precedente non è più valido",
                    requester(by, language)
                ),
                NoticeKind::Locked => {
                    "il Suo PIN è stato bloccato dopo troppi tentativi errati".to_owned()
                }
                NoticeKind::DeliveryFailed => "non è stato possibile consegnarLe un nuovo PIN; \
                     ne chieda un altro (il reinvio non rientra nel limite) o aggiorni i Suoi \
                     recapiti"
                    .to_owned(),
            },
        ),
    };
    let body = match language {
        Language::English => format!(
            "Dear user,\n\non {when} {what}.\n\nIf this was you, nothing else is needed. If it \
             was not, contact the issuer at once: someone may be acting in your name.\nThis \
             notice never contains a PIN, and nobody will ever ask you for yours.\n"
        ),
        Language::Italian => format!(
            "Gentile utente,\n\nil {when} {what}.\n\nSe è stato Lei, non deve fare altro. Se non \
             è stato Lei, contatti subito l'assistenza: qualcuno potrebbe agire a Suo nome.\n\
             Questo avviso non contiene mai un PIN, e nessuno Le chiederà mai il Suo.\n"
        ),
    };
    Rendered {
        subject,
        body: Zeroizing::new(body),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use pin_core::format::{PinFormat, parse_input};
    use pin_core::tax_code::TaxCode;

    // rule: POL-6 — notices in both languages, for every kind, with no PIN line.
    #[test]
    fn notices_in_both_languages_carry_no_pin() {
        use chrono::TimeZone;
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 1, 15, 9, 0, 0)
            .single()
            .unwrap();
        for kind in [
            NoticeKind::ContactsChanged,
            NoticeKind::PinReset,
            NoticeKind::PinIssuedByOther { by: "rid" },
            NoticeKind::Locked,
            NoticeKind::DeliveryFailed,
        ] {
            let n = Notice {
                subject: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
                kind,
                channel: Channel::Email,
                recipient: "old@example.it".into(),
                at,
            };
            let it = render_notice(&n, Language::Italian);
            let en = render_notice(&n, Language::English);
            assert!(it.body.contains("2026-01-15 09:00 UTC"));
            assert!(it.body.contains("Gentile utente"));
            assert!(en.body.contains("Dear user"));
            for r in [&it, &en] {
                assert!(!r.body.lines().any(|l| l.starts_with("PIN")), "{}", *r.body);
            }
        }
    }

    fn delivery(secret: &str, part: u8, of: u8, channel: Channel, origin: Origin) -> Delivery {
        Delivery {
            subject: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
            serial: 1,
            part,
            of,
            channel,
            recipient: "mario.rossi@example.it".into(),
            secret: if secret.len() == 5 {
                parse_input(PinFormat::NoipaDigits5, secret).unwrap()
            } else {
                parse_input(PinFormat::InpsInUse8, secret).unwrap()
            },
            origin,
        }
    }

    #[test]
    fn noipa_whole_pin_in_both_languages() {
        let d = delivery("48213", 1, 1, Channel::Email, Origin::Enrolment);
        let it = render(&d, Language::Italian);
        assert_eq!(it.subject, "Il Suo PIN NoiPA");
        assert!(it.body.lines().any(|l| l == "PIN: 48213"));
        assert!(it.body.contains("immatricolazione"));
        let en = render(&d, Language::English);
        assert_eq!(en.subject, "Your NoiPA PIN");
        assert!(en.body.lines().any(|l| l == "PIN: 48213"));
        assert!(en.body.contains("enrolled as a public employee"));
    }

    #[test]
    fn inps_halves_say_which_part() {
        let first = delivery("K7QM2ZXA", 1, 2, Channel::Pec, Origin::Web);
        let it = render(&first, Language::Italian);
        assert_eq!(it.subject, "Il Suo PIN INPS (parte 1 di 2)");
        assert!(it.body.lines().any(|l| l == "PIN (parte 1 di 2): K7QM2ZXA"));
        assert!(it.body.contains("PRIMI 8"));
        assert!(it.body.contains("PEC"));
        let last = delivery("K7QM2ZXA", 2, 2, Channel::Email, Origin::PreAssigned);
        let en = render(&last, Language::English);
        assert_eq!(en.subject, "Your INPS PIN (part 2 of 2)");
        assert!(en.body.lines().any(|l| l == "PIN (part 2 of 2): K7QM2ZXA"));
        assert!(en.body.contains("LAST 8"));
    }

    #[test]
    fn the_secret_stays_out_of_subject_and_debug() {
        for language in [Language::Italian, Language::English] {
            for (secret, part, of) in [("48213", 1, 1), ("K7QM2ZXA", 1, 2), ("K7QM2ZXA", 2, 2)] {
                let d = delivery(secret, part, of, Channel::Email, Origin::Resend);
                let r = render(&d, language);
                assert!(!r.subject.contains(secret));
                assert!(!format!("{r:?}").contains(secret));
                assert_eq!(r.body.matches(secret).count(), 1);
            }
        }
    }

    #[test]
    fn languages_parse() {
        assert_eq!("IT".parse(), Ok(Language::Italian));
        assert_eq!("english".parse(), Ok(Language::English));
        assert_eq!("fr".parse::<Language>(), Err(UnknownLanguage));
    }
}
