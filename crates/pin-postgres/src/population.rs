//! The population defence's counters in SQL (schema 4): one `INSERT` per failed guess,
//! windowed counts on the `(network, at)` and `(profile, at)` indexes, the baseline swapped
//! by one conditional statement on its `folded_at`.

use chrono::{DateTime, Utc};
use pin_core::store::{
    Baseline, CountRequest, FailedGuess, NetworkKey, PopulationCounts, StoreError,
};
use pin_core::subject::Profile;

use crate::pool::{Tx, TxError, get};

fn corrupt(what: impl std::fmt::Display) -> TxError {
    TxError::Store(StoreError::Corrupt(what.to_string()))
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, TxError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(format_args!("time {ms}")))
}

fn count(v: i64) -> Result<u64, TxError> {
    u64::try_from(v).map_err(|_| corrupt(format_args!("count {v}")))
}

fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Noipa => "noipa",
        Profile::Inps => "inps",
    }
}

const PROFILES: [Profile; 2] = [Profile::Noipa, Profile::Inps];

pub(crate) fn record(tx: &mut Tx<'_>, g: &FailedGuess) -> Result<(), TxError> {
    let _ = tx.execute(
        "INSERT INTO failed_guesses (at, profile, network) VALUES ($1, $2, $3)",
        &[
            &g.at.timestamp_millis(),
            &profile_name(g.profile),
            &g.network.as_ref().map(NetworkKey::as_str),
        ],
    )?;
    Ok(())
}

pub(crate) fn counts(tx: &mut Tx<'_>, r: &CountRequest<'_>) -> Result<PopulationCounts, TxError> {
    let mut out = PopulationCounts::default();
    if let Some(n) = r.network {
        let row = tx.query_one(
            "SELECT count(*), min(at) FROM failed_guesses WHERE network = $1 AND at > $2",
            &[&n.as_str(), &r.source_since.timestamp_millis()],
        )?;
        out.source = count(get(&row, 0)?)?;
        let oldest: Option<i64> = get(&row, 1)?;
        out.source_oldest = oldest.map(from_millis).transpose()?;
    }
    for p in PROFILES {
        let row = tx.query_one(
            "SELECT count(*) FROM failed_guesses WHERE profile = $1 AND at > $2",
            &[&profile_name(p), &r.population_since.timestamp_millis()],
        )?;
        out.failures.push((p, count(get(&row, 0)?)?));
    }
    let rows = tx.query(
        "SELECT profile, per_window_milli, folded_at FROM population_baselines",
        &[],
    )?;
    for row in &rows {
        let name: String = get(row, 0)?;
        let p = PROFILES
            .into_iter()
            .find(|p| profile_name(*p) == name)
            .ok_or_else(|| corrupt(format_args!("profile {name}")))?;
        out.baselines.push((
            p,
            Baseline {
                per_window_milli: count(get(row, 1)?)?,
                folded_at: from_millis(get(row, 2)?)?,
            },
        ));
    }
    Ok(out)
}

pub(crate) fn swap_baseline(
    tx: &mut Tx<'_>,
    p: Profile,
    expected: Option<&Baseline>,
    next: &Baseline,
) -> Result<bool, TxError> {
    let milli = i64::try_from(next.per_window_milli).unwrap_or(i64::MAX);
    let at = next.folded_at.timestamp_millis();
    let changed = match expected {
        None => tx.execute(
            "INSERT INTO population_baselines (profile, per_window_milli, folded_at)
             VALUES ($1, $2, $3) ON CONFLICT (profile) DO NOTHING",
            &[&profile_name(p), &milli, &at],
        )?,
        Some(b) => tx.execute(
            "UPDATE population_baselines SET per_window_milli = $2, folded_at = $3
              WHERE profile = $1 AND folded_at = $4",
            &[
                &profile_name(p),
                &milli,
                &at,
                &b.folded_at.timestamp_millis(),
            ],
        )?,
    };
    Ok(changed == 1)
}

pub(crate) fn prune(tx: &mut Tx<'_>, before: DateTime<Utc>) -> Result<u64, TxError> {
    Ok(tx.execute(
        "DELETE FROM failed_guesses WHERE at <= $1",
        &[&before.timestamp_millis()],
    )?)
}

pub(crate) fn top_sources(
    tx: &mut Tx<'_>,
    since: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<(NetworkKey, u64)>, TxError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = tx.query(
        "SELECT network, count(*) AS n FROM failed_guesses
          WHERE network IS NOT NULL AND at > $1
          GROUP BY network ORDER BY n DESC, network COLLATE \"C\" LIMIT $2",
        &[&since.timestamp_millis(), &limit],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let net: String = get(row, 0)?;
        let key = NetworkKey::new(&net).map_err(|e| corrupt(format_args!("network: {e}")))?;
        out.push((key, count(get(row, 1)?)?));
    }
    Ok(out)
}
