//! The spraying simulator at the size (issue #14): 100,000 NoiPA people, 1,000,000
//! guesses, defence off against on; prints the Markdown tables of BENCHMARKS.md, then the
//! cost of a pure population decision.
//!
//! `cargo bench --bench spray` (`PIN_SPRAY_PEOPLE=10000` for a quicker run). The simulated
//! counts are deterministic; only the last line (decisions per second) is a timing.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a bench prints its results"
)]

#[path = "spray/sim.rs"]
mod sim;

use std::hint::black_box;
use std::time::Instant;

use chrono::{TimeDelta, TimeZone, Utc};
use pin_core::population::{self, PopulationCounts, PopulationPolicy, Trust};
use pin_core::subject::Profile;
use sim::{SprayConfig, simulate, table};

fn main() {
    let people: u32 = std::env::var("PIN_SPRAY_PEOPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // The floor scales with the population: 50 failed guesses an hour for 100,000 people.
    let floor = (people / 2_000).max(2);
    let policy = PopulationPolicy::default().with_budget(TimeDelta::hours(1), 4, floor, 168);
    let scenarios = [
        (
            format!("fast: 10 guesses on each of {people} people from 1,000 sources in 12 h"),
            SprayConfig::scenario(people, 1_000, 10, TimeDelta::hours(12)),
        ),
        (
            format!(
                "below the lock: 9 guesses on each of {people} people from 1,000 sources in 12 h"
            ),
            SprayConfig::scenario(people, 1_000, 9, TimeDelta::hours(12)),
        ),
        (
            format!(
                "slow and distributed: 10 guesses on each of {people} people from {people} sources, one guess per source per hour"
            ),
            SprayConfig::scenario(people, people, 10, TimeDelta::hours(10)),
        ),
    ];
    for (name, config) in scenarios {
        let off = simulate(&config);
        let on = simulate(&config.clone().defended(policy));
        println!("{}", table(&name, &off, &on));
    }

    // The pure decision alone (no store): counts in, gate out.
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).single().unwrap();
    let counts = PopulationCounts {
        source: 7,
        source_oldest: Some(now - TimeDelta::minutes(30)),
        failures: vec![(Profile::Noipa, 180), (Profile::Inps, 3)],
        baselines: Vec::new(),
    };
    let n = 5_000_000u32;
    let start = Instant::now();
    for i in 0..n {
        let _ = black_box(population::gate(
            black_box(&policy),
            black_box(&counts),
            Trust::Untrusted,
            i % 2 == 0,
            now,
        ));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "\npure decision (population::gate): {:.1} million/s ({n} decisions in {secs:.3} s)",
        f64::from(n) / secs / 1e6
    );
}
