//! A deterministic simulator of PIN spraying (issue #14): N NoiPA people with legitimate
//! traffic, an attacker spraying 5-digit guesses from S sources, a virtual clock, pin-core's
//! population decisions ([`pin_core::population::admit`], [`pin_core::population::record`])
//! over the in-memory store, and the per-person lockout (10 consecutive wrong PINs, POL-1).
//!
//! No Argon2 and no wall clock: a compare is `guess == pin`. Every count in the report is a
//! function of the configuration and the seed alone, so a test can assert on it.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use pin_core::conformance::support::synthetic_tax_code;
use pin_core::memory::MemoryStore;
use pin_core::population::{
    self, CountRequest, DeviceId, DeviceKey, DeviceToken, Gate, Mode, NetworkKey, PopulationPolicy,
    Source, Trust,
};
use pin_core::store::Store;
use pin_core::subject::Profile;
use pin_core::tax_code::TaxCode;

/// The lockout of NoiPA (POL-1).
const LOCKOUT: u32 = 10;

/// How the attacker paces its guesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pacing {
    /// Every person in turn, one guess per round, `rounds` rounds (10: lock everyone not
    /// guessed; 9: stay below the lock).
    Horizontal {
        /// Guesses per person.
        rounds: u32,
    },
}

/// One simulated scenario.
#[derive(Clone, Debug)]
pub(crate) struct SprayConfig {
    /// People (NoiPA employees with a 5-digit PIN).
    pub(crate) people: u32,
    /// Attacker sources (distinct network keys), used in turn.
    pub(crate) sources: u32,
    /// Guesses the attacker makes (refused ones included).
    pub(crate) guesses: u64,
    /// The attacker's pacing.
    pub(crate) pacing: Pacing,
    /// When the attack starts, from the start of the simulation.
    pub(crate) attack_start: TimeDelta,
    /// Over how long the guesses are spread evenly.
    pub(crate) attack_span: TimeDelta,
    /// How long the simulation runs (legitimate traffic throughout).
    pub(crate) span: TimeDelta,
    /// Legitimate sign-ins per person per week.
    pub(crate) signins_per_week: f64,
    /// Share of sign-ins that start with one typo (a wrong PIN), per thousand.
    pub(crate) typo_permille: u64,
    /// Share of sign-ins from a device with no token (new browser, cookies cleared), per
    /// thousand.
    pub(crate) fresh_device_permille: u64,
    /// The population defence, or `None` for the per-person lockout alone.
    pub(crate) defence: Option<PopulationPolicy>,
    /// The seed of everything random.
    pub(crate) seed: u64,
}

impl SprayConfig {
    /// The issue's scenario at `people` (1,000,000 guesses over 100,000 people at full size):
    /// `sources` sources, 10 guesses per person over `attack_span`, after a day of
    /// legitimate traffic; the simulation runs for two days.
    #[must_use]
    pub(crate) fn scenario(people: u32, sources: u32, rounds: u32, attack_span: TimeDelta) -> Self {
        Self {
            people,
            sources,
            guesses: u64::from(people) * u64::from(rounds),
            pacing: Pacing::Horizontal { rounds },
            attack_start: TimeDelta::days(1),
            attack_span,
            span: TimeDelta::days(2),
            signins_per_week: 3.0,
            typo_permille: 20,
            fresh_device_permille: 30,
            defence: None,
            seed: 14,
        }
    }

    /// The same with the defence `policy`.
    #[must_use]
    pub(crate) fn defended(mut self, policy: PopulationPolicy) -> Self {
        self.defence = Some(policy);
        self
    }
}

/// What happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SprayReport {
    /// Guesses the attacker made.
    pub(crate) attack_guesses: u64,
    /// Guesses that were compared with a PIN.
    pub(crate) attack_compared: u64,
    /// Guesses answered try-later (source limit).
    pub(crate) attack_try_later: u64,
    /// Guesses answered challenge-required.
    pub(crate) attack_challenged: u64,
    /// Accounts whose PIN the attacker found.
    pub(crate) accounts_guessed: u64,
    /// People locked at the end (none of them by their own typos).
    pub(crate) people_locked: u64,
    /// People locked who hold a trusted device.
    pub(crate) locked_with_device: u64,
    /// Legitimate sign-ins.
    pub(crate) signins: u64,
    /// Of which decided in defended mode (any device).
    pub(crate) signins_defended: u64,
    /// Of which from a trusted device.
    pub(crate) signins_trusted: u64,
    /// Sign-ins outside defended mode that met a try-later or a challenge.
    pub(crate) friction_normal: u64,
    /// Sign-ins in defended mode that met a challenge or a try-later.
    pub(crate) friction_defended: u64,
    /// Sign-ins from a trusted device that met a challenge or a try-later.
    pub(crate) friction_trusted: u64,
    /// Sign-ins refused because the person was locked.
    pub(crate) signins_locked_out: u64,
    /// Wrong PINs compared (typos and attack).
    pub(crate) wrong_pins: u64,
    /// Rows written for failed guesses (the extra write per wrong PIN).
    pub(crate) guess_rows: u64,
}

impl SprayReport {
    /// Accounts an attacker is expected to have guessed: compared guesses ÷ 100,000.
    #[must_use]
    pub(crate) fn expected_guessed(&self) -> f64 {
        population::expected_guessed(Profile::Noipa, self.attack_compared)
    }
}

/// splitmix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy, Debug)]
enum Event {
    /// Person, which device (0 or 1; 2 = a fresh one), with a typo first.
    SignIn { person: u32, device: u8, typo: bool },
    /// The k-th guess of the attack.
    Guess { k: u64 },
}

struct Person {
    tax: TaxCode,
    pin: u32,
    failures: u32,
    locked: bool,
    guessed: bool,
    devices: [Option<DeviceToken>; 2],
    home: NetworkKey,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Runs `config`.
#[must_use]
pub(crate) fn simulate(config: &SprayConfig) -> SprayReport {
    let mut rng = Rng(config.seed);
    let key = DeviceKey::new(&[0x5a; 32]).ok();
    let store = MemoryStore::new();
    let mut people: Vec<Person> = (0..config.people)
        .map(|i| {
            let tax = synthetic_tax_code(u64::from(i));
            let two = rng.below(2) == 1;
            let before = t0() - TimeDelta::days(1);
            let token = |d: u8| {
                key.as_ref()
                    .map(|k| k.issue(&tax, 1, DeviceId([d; 16]), before))
            };
            Person {
                pin: u32::try_from(rng.below(100_000)).unwrap_or(0),
                failures: 0,
                locked: false,
                guessed: false,
                devices: [token(0), if two { token(1) } else { None }],
                home: NetworkKey::new(&format!("h{i}")).unwrap_or_else(|_| unreachable!()),
                tax,
            }
        })
        .collect();

    // Every event, by time in milliseconds.
    let span_ms = config.span.num_milliseconds();
    let mean_gap = 7.0 * 86_400_000.0 / config.signins_per_week.max(1e-9);
    let mut events: Vec<(i64, Event)> = Vec::new();
    for (i, p) in people.iter().enumerate() {
        let mut at = 0.0f64;
        loop {
            at += -rng.unit().ln() * mean_gap;
            if at >= span_ms as f64 {
                break;
            }
            let fresh = rng.below(1000) < config.fresh_device_permille;
            let device = if fresh {
                2
            } else if p.devices[1].is_some() || (key.is_none() && rng.below(2) == 1) {
                u8::try_from(rng.below(2)).unwrap_or(0)
            } else {
                0
            };
            let typo = rng.below(1000) < config.typo_permille;
            let person = u32::try_from(i).unwrap_or(u32::MAX);
            events.push((
                at as i64,
                Event::SignIn {
                    person,
                    device,
                    typo,
                },
            ));
        }
    }
    let start = config.attack_start.num_milliseconds();
    let dur = config.attack_span.num_milliseconds();
    for k in 0..config.guesses {
        let offset = i64::try_from(u128::from(k) * dur as u128 / u128::from(config.guesses.max(1)))
            .unwrap_or(i64::MAX);
        events.push((start + offset, Event::Guess { k }));
    }
    events.sort_by_key(|(at, e)| (*at, matches!(e, Event::Guess { .. })));

    let mut r = SprayReport::default();
    let nets: Vec<NetworkKey> = (0..config.sources)
        .map(|s| NetworkKey::new(&format!("a{s}")).unwrap_or_else(|_| unreachable!()))
        .collect();
    let Pacing::Horizontal { rounds } = config.pacing;
    for (at, event) in events {
        let now = t0() + TimeDelta::milliseconds(at);
        match event {
            Event::Guess { k } => {
                let n = u64::from(config.people.max(1));
                let person = usize::try_from(k % n).unwrap_or(0);
                let round = k / n;
                let Some(p) = people.get_mut(person) else {
                    continue;
                };
                if round >= u64::from(rounds) || p.guessed || p.locked {
                    // The attacker knows: a locked answer or a found PIN ends that person.
                    continue;
                }
                r.attack_guesses += 1;
                let src = nets
                    .get(usize::try_from(k % u64::from(config.sources.max(1))).unwrap_or(0))
                    .cloned();
                let source = Source {
                    network: src,
                    device: None,
                    challenge_passed: false,
                };
                let trust = match (&config.defence, &key) {
                    (Some(policy), Some(key)) => {
                        let a =
                            population::admit(&store, policy, key, &source, &p.tax, Some(1), now);
                        if let Ok(a) = &a {
                            population::learn(&store, policy, a, now);
                        }
                        match a.map(|a| (a.gate, a.trust)) {
                            Ok((Gate::Pass { .. }, t)) => Some(t),
                            Ok((Gate::TryLater { .. }, _)) => {
                                r.attack_try_later += 1;
                                continue;
                            }
                            Ok((Gate::Challenge, _)) => {
                                r.attack_challenged += 1;
                                continue;
                            }
                            Err(_) => continue,
                        }
                    }
                    _ => None,
                };
                r.attack_compared += 1;
                // Distinct guesses per person, from an offset the attacker cannot know.
                let guess =
                    u32::try_from((u64::from(p.pin) + 1 + round * 7_919) % 100_000).unwrap_or(0);
                let guess = if rng.below(100_000) == 0 {
                    p.pin
                } else {
                    guess
                };
                if guess == p.pin {
                    p.guessed = true;
                    r.accounts_guessed += 1;
                    p.failures = 0;
                } else {
                    r.wrong_pins += 1;
                    p.failures += 1;
                    p.locked = p.failures >= LOCKOUT;
                    if let Some(t) = trust
                        && population::record(&store, Profile::Noipa, &source, t, now).is_ok()
                    {
                        r.guess_rows += 1;
                    }
                }
            }
            Event::SignIn {
                person,
                device,
                typo,
            } => {
                let Some(p) = people.get_mut(usize::try_from(person).unwrap_or(0)) else {
                    continue;
                };
                r.signins += 1;
                let token = p.devices.get(usize::from(device)).cloned().flatten();
                let mut source = Source {
                    network: Some(p.home.clone()),
                    device: token,
                    challenge_passed: false,
                };
                let mut trust = None;
                if let (Some(policy), Some(key)) = (&config.defence, &key) {
                    let Ok(a) =
                        population::admit(&store, policy, key, &source, &p.tax, Some(1), now)
                    else {
                        continue;
                    };
                    population::learn(&store, policy, &a, now);
                    let trusted = a.trust == Trust::Trusted;
                    // A trusted device reads no counters; the simulator reads them to know
                    // the mode its sign-in happened in.
                    let mode = a.mode.unwrap_or_else(|| {
                        store
                            .population_counts(&CountRequest::at(policy, None, now))
                            .map_or(Mode::Normal, |c| population::mode(policy, &c))
                    });
                    let defended = mode == Mode::Defended;
                    if trusted {
                        r.signins_trusted += 1;
                    }
                    if defended {
                        r.signins_defended += 1;
                    }
                    if !matches!(a.gate, Gate::Pass { .. }) {
                        if trusted {
                            r.friction_trusted += 1;
                        }
                        if defended {
                            r.friction_defended += 1;
                        } else {
                            r.friction_normal += 1;
                        }
                        // The person passes the challenge (or waits) and tries again.
                        source.challenge_passed = true;
                    }
                    trust = Some(a.trust);
                }
                if p.locked {
                    r.signins_locked_out += 1;
                    continue;
                }
                if typo {
                    r.wrong_pins += 1;
                    p.failures += 1;
                    p.locked = p.failures >= LOCKOUT;
                    if let Some(t) = trust
                        && population::record(&store, Profile::Noipa, &source, t, now).is_ok()
                    {
                        r.guess_rows += 1;
                    }
                    if p.locked {
                        r.signins_locked_out += 1;
                        continue;
                    }
                }
                p.failures = 0;
                // A right PIN from a device without a token: the device gets one.
                if trust == Some(Trust::Untrusted)
                    && device < 2
                    && let (Some(slot), Some(k)) = (p.devices.get_mut(usize::from(device)), &key)
                {
                    *slot = Some(k.issue(&p.tax, 1, DeviceId([device; 16]), now));
                }
            }
        }
    }
    r.people_locked = people.iter().filter(|p| p.locked).count() as u64;
    r.locked_with_device = people
        .iter()
        .filter(|p| p.locked && p.devices.iter().any(Option::is_some))
        .count() as u64;
    let _ = store.prune_failed_guesses(t0() + config.span);
    r
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        return "—".to_owned();
    }
    format!("{:.2} %", 100.0 * n as f64 / of as f64)
}

/// One row per measure, defence off against on, as a Markdown table.
#[must_use]
pub(crate) fn table(name: &str, off: &SprayReport, on: &SprayReport) -> String {
    let normal = |r: &SprayReport| r.signins.saturating_sub(r.signins_defended);
    let rows = [
        (
            "guesses made",
            off.attack_guesses.to_string(),
            on.attack_guesses.to_string(),
        ),
        (
            "guesses compared (try-later / challenged)",
            off.attack_compared.to_string(),
            format!(
                "{} ({} / {})",
                on.attack_compared, on.attack_try_later, on.attack_challenged
            ),
        ),
        (
            "expected accounts guessed (compared ÷ 100,000)",
            format!("{:.3}", off.expected_guessed()),
            format!("{:.3}", on.expected_guessed()),
        ),
        (
            "accounts actually guessed (this seed)",
            off.accounts_guessed.to_string(),
            on.accounts_guessed.to_string(),
        ),
        (
            "people locked by the attack (of whom with their own device)",
            format!("{} ({})", off.people_locked, off.locked_with_device),
            format!("{} ({})", on.people_locked, on.locked_with_device),
        ),
        (
            "legitimate sign-ins in defended mode",
            pct(off.signins_defended, off.signins),
            pct(on.signins_defended, on.signins),
        ),
        (
            "friction outside defended mode (challenge or try-later)",
            pct(off.friction_normal, normal(off)),
            pct(on.friction_normal, normal(on)),
        ),
        (
            "friction inside defended mode",
            pct(off.friction_defended, off.signins_defended),
            pct(on.friction_defended, on.signins_defended),
        ),
        (
            "friction, trusted device",
            pct(off.friction_trusted, off.signins_trusted),
            pct(on.friction_trusted, on.signins_trusted),
        ),
        (
            "legitimate sign-ins refused: person locked",
            off.signins_locked_out.to_string(),
            on.signins_locked_out.to_string(),
        ),
        (
            "extra rows written per wrong PIN",
            "0".to_owned(),
            format!("{:.2}", on.guess_rows as f64 / on.wrong_pins.max(1) as f64),
        ),
    ];
    let mut out =
        format!("\n**{name}**\n\n| measure | defence off | defence on |\n|---|---|---|\n");
    for (m, a, b) in rows {
        out.push_str(&format!("| {m} | {a} | {b} |\n"));
    }
    out
}
