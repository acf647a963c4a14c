//! Conformance of the population counters ([`crate::population`]): window edges, concurrent
//! sources, a clock that goes backwards, the baseline's compare and swap, pruning and the
//! top sources.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use crate::population::{Baseline, CountRequest, FailedGuess, NetworkKey};
use crate::store::Store;
use crate::subject::Profile;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 1, 10, 0, 0).single().unwrap()
}

fn net(i: usize) -> NetworkKey {
    NetworkKey::new(&format!("198.51.{i}.0/24")).unwrap()
}

fn guess(at: DateTime<Utc>, profile: Profile, network: Option<NetworkKey>) -> FailedGuess {
    FailedGuess {
        at,
        profile,
        network,
    }
}

fn request(network: Option<&NetworkKey>, since: DateTime<Utc>) -> CountRequest<'_> {
    CountRequest {
        network,
        source_since: since,
        population_since: since,
    }
}

/// Runs every population check, each on a fresh store.
pub fn run_all<S: Store + Sync>(make: &impl Fn() -> S) {
    window_edges(&make());
    concurrent_sources(&make());
    clock_going_backwards(&make());
    baseline_compare_and_swap(&make());
    prune_and_top_sources(&make());
}

/// A guess exactly at `since` is out of the window, one millisecond later is in; counts are
/// per network and per profile, and the oldest in the window is reported.
pub fn window_edges<S: Store>(store: &S) {
    let ms = TimeDelta::milliseconds;
    store
        .record_failed_guess(&guess(t0(), Profile::Noipa, Some(net(1))))
        .unwrap();
    store
        .record_failed_guess(&guess(t0() + ms(1), Profile::Noipa, Some(net(1))))
        .unwrap();
    store
        .record_failed_guess(&guess(t0() + ms(2), Profile::Inps, Some(net(2))))
        .unwrap();
    store
        .record_failed_guess(&guess(t0() + ms(3), Profile::Noipa, None))
        .unwrap();
    let n1 = net(1);
    let c = store.population_counts(&request(Some(&n1), t0())).unwrap();
    assert_eq!(c.source, 1, "a guess at `since` is outside the window");
    assert_eq!(
        c.source_oldest,
        Some(t0() + ms(1)),
        "the oldest in the window"
    );
    assert_eq!(c.failures_of(Profile::Noipa), 2);
    assert_eq!(c.failures_of(Profile::Inps), 1);
    let c = store
        .population_counts(&request(Some(&n1), t0() - ms(1)))
        .unwrap();
    assert_eq!(c.source, 2, "one millisecond earlier both are in");
    assert_eq!(c.source_oldest, Some(t0()));
    assert_eq!(c.failures_of(Profile::Noipa), 3);
    let c = store
        .population_counts(&request(None, t0() + ms(3)))
        .unwrap();
    assert_eq!(
        (c.source, c.source_oldest),
        (0, None),
        "no network, no source count"
    );
    assert_eq!(
        c.failures_of(Profile::Noipa) + c.failures_of(Profile::Inps),
        0
    );
    let other = net(9);
    let c = store
        .population_counts(&request(Some(&other), t0() - ms(1)))
        .unwrap();
    assert_eq!(c.source, 0, "an unknown network has no failures");
    assert!(c.baselines.is_empty(), "no baseline learned yet");
}

/// Guesses recorded at once from many threads and sources are all counted, none twice.
pub fn concurrent_sources<S: Store + Sync>(store: &S) {
    std::thread::scope(|scope| {
        for i in 0..4 {
            scope.spawn(move || {
                for k in 0..25 {
                    let at = t0() + TimeDelta::seconds(k);
                    store
                        .record_failed_guess(&guess(at, Profile::Noipa, Some(net(i % 2))))
                        .unwrap();
                }
            });
        }
    });
    let since = t0() - TimeDelta::seconds(1);
    for i in 0..2 {
        let n = net(i);
        let c = store.population_counts(&request(Some(&n), since)).unwrap();
        assert_eq!(c.source, 50, "every guess of network {i} counted once");
        assert_eq!(c.failures_of(Profile::Noipa), 100);
    }
}

/// A guess recorded "in the future" of a later decision (a clock that went backwards, or
/// two instances whose clocks differ) still counts: a count has no upper bound.
pub fn clock_going_backwards<S: Store>(store: &S) {
    let n = net(3);
    store
        .record_failed_guess(&guess(
            t0() + TimeDelta::hours(1),
            Profile::Noipa,
            Some(n.clone()),
        ))
        .unwrap();
    store
        .record_failed_guess(&guess(t0(), Profile::Noipa, Some(n.clone())))
        .unwrap();
    let c = store
        .population_counts(&request(Some(&n), t0() - TimeDelta::minutes(30)))
        .unwrap();
    assert_eq!(c.source, 2, "a guess after the decision's now still counts");
    assert_eq!(
        c.source_oldest,
        Some(t0()),
        "the oldest, not the first recorded"
    );
    assert_eq!(c.failures_of(Profile::Noipa), 2);
}

/// The baseline is replaced only when the one on record is the one expected.
pub fn baseline_compare_and_swap<S: Store>(store: &S) {
    let first = Baseline {
        per_window_milli: 50_000,
        folded_at: t0(),
    };
    let second = Baseline {
        per_window_milli: 51_500,
        folded_at: t0() + TimeDelta::hours(1),
    };
    assert!(
        !store
            .swap_baseline(Profile::Noipa, Some(&first), &second)
            .unwrap(),
        "nothing on record: an expected baseline does not match"
    );
    assert!(store.swap_baseline(Profile::Noipa, None, &first).unwrap());
    assert!(
        !store.swap_baseline(Profile::Noipa, None, &first).unwrap(),
        "a second first learner loses"
    );
    assert!(
        store
            .swap_baseline(Profile::Noipa, Some(&first), &second)
            .unwrap()
    );
    assert!(
        !store
            .swap_baseline(Profile::Noipa, Some(&first), &first)
            .unwrap(),
        "a stale learner loses"
    );
    let c = store.population_counts(&request(None, t0())).unwrap();
    assert_eq!(c.baseline_of(Profile::Noipa), Some(&second));
    assert_eq!(
        c.baseline_of(Profile::Inps),
        None,
        "baselines are per profile"
    );
}

/// Pruning deletes guesses at or before the instant; the top sources are ordered by count,
/// ties by network, within the window and the limit.
pub fn prune_and_top_sources<S: Store>(store: &S) {
    let s = TimeDelta::seconds;
    for (i, n) in [(1, 3), (2, 1), (3, 3), (4, 2)] {
        for k in 0..n {
            store
                .record_failed_guess(&guess(t0() + s(k), Profile::Noipa, Some(net(i))))
                .unwrap();
        }
    }
    let top = store.top_sources(t0() - s(1), 3).unwrap();
    assert_eq!(top, vec![(net(1), 3), (net(3), 3), (net(4), 2)]);
    let top = store.top_sources(t0(), 10).unwrap();
    assert_eq!(
        top,
        vec![(net(1), 2), (net(3), 2), (net(4), 1)],
        "only guesses after `since`"
    );
    assert_eq!(store.prune_failed_guesses(t0()).unwrap(), 4);
    let c = store
        .population_counts(&request(None, t0() - s(10)))
        .unwrap();
    assert_eq!(c.failures_of(Profile::Noipa), 5, "the later guesses stay");
    let top = store.top_sources(t0() - s(10), 10).unwrap();
    assert_eq!(top, vec![(net(1), 2), (net(3), 2), (net(4), 1)]);
}
