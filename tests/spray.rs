//! The spraying simulator at a small size (issue #14): its goals asserted on the simulated
//! counts, which are deterministic — never on wall time.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../benches/spray/sim.rs"]
#[allow(dead_code, reason = "the bench uses all of it, this test a part")]
mod sim;

use chrono::TimeDelta;
use pin_core::population::PopulationPolicy;
use sim::{SprayConfig, SprayReport, simulate};

/// 2,000 people: a fiftieth of the population, so the floor is a fiftieth too.
const PEOPLE: u32 = 2_000;

fn policy() -> PopulationPolicy {
    PopulationPolicy::default().with_budget(TimeDelta::hours(1), 4, 2, 168)
}

fn run(sources: u32, rounds: u32, span: TimeDelta) -> (SprayReport, SprayReport) {
    let config = SprayConfig::scenario(PEOPLE, sources, rounds, span);
    let off = simulate(&config);
    let on = simulate(&config.defended(policy()));
    println!("{}", sim::table("small run", &off, &on));
    (off, on)
}

fn assert_goals(off: &SprayReport, on: &SprayReport) {
    // Without the defence every guess is compared; with it, the attack is cut to a sliver.
    assert_eq!(off.attack_compared, off.attack_guesses);
    assert!(
        on.attack_compared * 20 < off.attack_compared,
        "compared {} of {} (off: {})",
        on.attack_compared,
        on.attack_guesses,
        off.attack_compared
    );
    assert_eq!(
        on.attack_guesses,
        on.attack_compared + on.attack_try_later + on.attack_challenged,
        "every guess is compared, told to wait or challenged"
    );
    // Friction: none on a trusted device; ≤ 0.1 % outside defended mode; ≤ 5 % inside.
    assert_eq!(on.friction_trusted, 0, "{on:?}");
    assert!(
        on.friction_normal * 1000 <= on.signins - on.signins_defended,
        "{on:?}"
    );
    assert!(
        on.friction_defended * 20 <= on.signins_defended.max(1),
        "{on:?}"
    );
    // One extra row per wrong PIN, never more.
    assert_eq!(on.guess_rows, on.wrong_pins);
    // Legitimate traffic alone locks nobody.
    assert!(on.signins > 0);
}

// rule: POL-8 — challenged and try-later guesses are never compared and never counted: the
// people locked with the defence are only those with 10 compared wrong PINs.
#[test]
fn spray_ten_per_person_from_few_sources() {
    let (off, on) = run(20, 10, TimeDelta::hours(12));
    assert_goals(&off, &on);
    // Without the defence, ten guesses each lock most people (a sign-in of their own
    // between two rounds resets the count, POL-1 counts consecutive failures).
    assert!(off.people_locked * 2 > u64::from(PEOPLE), "{off:?}");
    assert!(on.people_locked * 20 < off.people_locked, "{on:?}");
}

#[test]
fn spray_nine_per_person_stays_below_the_lock() {
    let (off, on) = run(20, 9, TimeDelta::hours(12));
    assert_goals(&off, &on);
    // Nine guesses plus a typo of the person's own lock a few without the defence; with it,
    // fewer guesses are compared and fewer people locked.
    assert!(on.people_locked <= off.people_locked, "{on:?} {off:?}");
    assert!(
        on.people_locked * 5 <= off.people_locked.max(1),
        "{on:?} {off:?}"
    );
}

#[test]
fn spray_from_many_sources_one_guess_an_hour_each() {
    // 2,000 sources, 20,000 guesses over 10 hours: one guess per source per hour.
    let (off, on) = run(PEOPLE, 10, TimeDelta::hours(10));
    assert_goals(&off, &on);
    assert_eq!(on.attack_try_later, 0, "no single source is over its limit");
    assert!(on.attack_challenged > 0);
}

#[test]
fn the_simulation_is_deterministic() {
    let config = SprayConfig::scenario(300, 5, 10, TimeDelta::hours(2)).defended(policy());
    assert_eq!(simulate(&config), simulate(&config));
}
