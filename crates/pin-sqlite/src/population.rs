//! The population defence's counters in SQL (schema 4): one `INSERT` per failed guess,
//! windowed counts on the `(network, at)` and `(profile, at)` indexes, the baseline swapped
//! on its `folded_at`.

use chrono::{DateTime, Utc};
use pin_core::store::{
    Baseline, CountRequest, FailedGuess, NetworkKey, PopulationCounts, StoreError,
};
use pin_core::subject::Profile;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::store::db;

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(format_args!("time {ms}")))
}

fn count(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format_args!("count {v}")))
}

pub(crate) fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Noipa => "noipa",
        Profile::Inps => "inps",
    }
}

const PROFILES: [Profile; 2] = [Profile::Noipa, Profile::Inps];

pub(crate) fn record(tx: &Transaction<'_>, g: &FailedGuess) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO failed_guesses (at, profile, network) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| {
            s.execute(params![
                g.at.timestamp_millis(),
                profile_name(g.profile),
                g.network.as_ref().map(NetworkKey::as_str)
            ])
        })
        .map_err(db)?;
    Ok(())
}

pub(crate) fn counts(
    tx: &Transaction<'_>,
    r: &CountRequest<'_>,
) -> Result<PopulationCounts, StoreError> {
    let mut out = PopulationCounts::default();
    if let Some(n) = r.network {
        let (c, oldest): (i64, Option<i64>) = tx
            .prepare_cached(
                "SELECT count(*), min(at) FROM failed_guesses WHERE network = ?1 AND at > ?2",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![n.as_str(), r.source_since.timestamp_millis()],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
            })
            .map_err(db)?;
        out.source = count(c)?;
        out.source_oldest = oldest.map(from_millis).transpose()?;
    }
    for p in PROFILES {
        let c: i64 = tx
            .prepare_cached("SELECT count(*) FROM failed_guesses WHERE profile = ?1 AND at > ?2")
            .and_then(|mut s| {
                s.query_row(
                    params![profile_name(p), r.population_since.timestamp_millis()],
                    |row| row.get(0),
                )
            })
            .map_err(db)?;
        out.failures.push((p, count(c)?));
        if let Some(b) = baseline(tx, p)? {
            out.baselines.push((p, b));
        }
    }
    Ok(out)
}

fn baseline(tx: &Transaction<'_>, p: Profile) -> Result<Option<Baseline>, StoreError> {
    let row: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT per_window_milli, folded_at FROM population_baselines WHERE profile = ?1",
        )
        .and_then(|mut s| {
            s.query_row([profile_name(p)], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(db)?;
    row.map(|(milli, at)| {
        Ok(Baseline {
            per_window_milli: count(milli)?,
            folded_at: from_millis(at)?,
        })
    })
    .transpose()
}

pub(crate) fn swap_baseline(
    tx: &Transaction<'_>,
    p: Profile,
    expected: Option<&Baseline>,
    next: &Baseline,
) -> Result<bool, StoreError> {
    let current = baseline(tx, p)?;
    if current.map(|b| b.folded_at) != expected.map(|b| b.folded_at) {
        return Ok(false);
    }
    let milli = i64::try_from(next.per_window_milli).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "INSERT INTO population_baselines (profile, per_window_milli, folded_at)
         VALUES (?1, ?2, ?3)
         ON CONFLICT (profile) DO UPDATE SET per_window_milli = excluded.per_window_milli,
                                             folded_at = excluded.folded_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            profile_name(p),
            milli,
            next.folded_at.timestamp_millis()
        ])
    })
    .map_err(db)?;
    Ok(true)
}

pub(crate) fn prune(tx: &Transaction<'_>, before: DateTime<Utc>) -> Result<u64, StoreError> {
    let n = tx
        .prepare_cached("DELETE FROM failed_guesses WHERE at <= ?1")
        .and_then(|mut s| s.execute([before.timestamp_millis()]))
        .map_err(db)?;
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

pub(crate) fn top_sources(
    tx: &Transaction<'_>,
    since: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<(NetworkKey, u64)>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = tx
        .prepare_cached(
            "SELECT network, count(*) AS n FROM failed_guesses
              WHERE network IS NOT NULL AND at > ?1
              GROUP BY network ORDER BY n DESC, network LIMIT ?2",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![since.timestamp_millis(), limit], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (net, n) = row.map_err(db)?;
        let key = NetworkKey::new(&net).map_err(|e| corrupt(format_args!("network: {e}")))?;
        out.push((key, count(n)?));
    }
    Ok(out)
}
