//! `pin key add | list | retire`: the pepper keyring of the key file.
//!
//! New hashes use the key of the highest id; a successful verify rehashes a PIN made under
//! an older key with the current one (pin-core), so an old key protects fewer and fewer PINs
//! and may be retired when it protects none.

use pin_core::keycheck::{self, KeyFingerprint};
use pin_core::secret::{KeyId, Pepper};
use pin_core::store::Store;
use serde_json::json;

use crate::app::{self, Ctx};
use crate::cli::KeyCmd;
use crate::db::{Access, AnyStore};
use crate::exit::Failure;
use crate::key::{self, FileKey};
use crate::report::Done;

/// Runs a `pin key` sub-command.
pub(crate) fn run(ctx: &Ctx, cmd: &KeyCmd) -> Result<Done, Failure> {
    match cmd {
        KeyCmd::List => list(ctx),
        KeyCmd::Add => add(ctx),
        KeyCmd::Retire { id, force } => retire(ctx, KeyId(*id), *force),
    }
}

/// The keys of the file, checked against the fingerprints the store recorded (a wrong key
/// file is refused before anything changes).
fn checked_keys(ctx: &Ctx, store: &AnyStore) -> Result<Vec<FileKey>, Failure> {
    let keys = key::load_keys(&ctx.key_file)?;
    let ring = key::keyring(&keys).map_err(Failure::storage)?;
    keycheck::check(store, &ring)?;
    Ok(keys)
}

fn fingerprint(id: KeyId, key: &[u8]) -> Result<KeyFingerprint, Failure> {
    Pepper::new(id, key)
        .map(|p| KeyFingerprint::of(&p))
        .map_err(|e| Failure::internal(e.to_string()))
}

fn count(counts: &[(KeyId, u64)], id: KeyId) -> u64 {
    counts.iter().find(|(k, _)| *k == id).map_or(0, |(_, n)| *n)
}

/// `pin key list`.
fn list(ctx: &Ctx) -> Result<Done, Failure> {
    let store = app::open_store_for(ctx, Access::Read)?;
    let keys = checked_keys(ctx, &store)?;
    let counts = store.hashes_per_key()?;
    let recorded = store.key_fingerprints()?;
    let current = keys.iter().map(|(id, _)| *id).max();
    let mut rows = Vec::new();
    let mut text = String::new();
    let mut sorted: Vec<&FileKey> = keys.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    for (id, k) in sorted {
        let fp = fingerprint(*id, &k[..])?;
        let hashes = count(&counts, *id);
        let is_current = Some(*id) == current;
        let on_record = recorded.iter().any(|(r, _)| r == id);
        text.push_str(&format!(
            "key {}{}  fingerprint {}…  protects {hashes} PIN hash(es){}\n",
            id.0,
            if is_current { " (current)" } else { "" },
            fp.to_hex().get(..16).unwrap_or_default(),
            if on_record {
                ""
            } else {
                "  (not yet recorded in the database)"
            },
        ));
        rows.push(json!({
            "id": id.0,
            "current": is_current,
            "fingerprint": fp.to_hex(),
            "recorded": on_record,
            "hashes": hashes,
        }));
    }
    let missing: Vec<_> = counts
        .iter()
        .filter(|(id, _)| !keys.iter().any(|(k, _)| k == id))
        .map(|(id, n)| {
            text.push_str(&format!(
                "key {} is not in the key file: {n} PIN hash(es) made with it cannot be verified\n",
                id.0
            ));
            json!({ "id": id.0, "hashes": n })
        })
        .collect();
    Ok(Done::ok(
        "key list",
        json!({ "keys": rows, "missing": missing }),
        text,
    ))
}

/// `pin key add`: a fresh key of the next id, current from now on.
fn add(ctx: &Ctx) -> Result<Done, Failure> {
    let store = app::open_store_for(ctx, Access::Write)?;
    let mut keys = checked_keys(ctx, &store)?;
    // The next id after every id in use: in the file, on record, or in a stored hash.
    let used = keys
        .iter()
        .map(|(id, _)| *id)
        .chain(store.key_fingerprints()?.into_iter().map(|(id, _)| id))
        .chain(store.hashes_per_key()?.into_iter().map(|(id, _)| id))
        .max()
        .unwrap_or(KeyId(0));
    let id = KeyId(
        used.0
            .checked_add(1)
            .ok_or_else(|| Failure::refused("the key ids are exhausted (4294967295 is in use)"))?,
    );
    let new = key::random_key()?;
    let fp = fingerprint(id, &new[..])?;
    // Recorded first: the store then refuses any other key under this id.
    if store.record_key_fingerprint(id, &fp)? != fp {
        return Err(Failure::refused(format!(
            "the database already records another key of id {}",
            id.0
        )));
    }
    keys.push((id, new));
    key::replace(&ctx.key_file, &keys)?;
    Ok(Done::ok(
        "key add",
        json!({ "id": id.0, "fingerprint": fp.to_hex(), "keys": keys.len() }),
        format!(
            "Added key {} to {} (fingerprint {}…): new PIN hashes use it; a PIN made under an older key is rehashed with it at its next successful verify.\nBack the key file up again, apart from the database.\n",
            id.0,
            ctx.key_file.display(),
            fp.to_hex().get(..16).unwrap_or_default()
        ),
    ))
}

/// `pin key retire ID [--force]`.
fn retire(ctx: &Ctx, id: KeyId, force: bool) -> Result<Done, Failure> {
    let store = app::open_store_for(ctx, Access::Write)?;
    let mut keys = checked_keys(ctx, &store)?;
    let current = keys.iter().map(|(k, _)| *k).max();
    if !keys.iter().any(|(k, _)| *k == id) {
        return Err(Failure::input(format!(
            "there is no key {} in {} (`pin key list` shows the keys)",
            id.0,
            ctx.key_file.display()
        )));
    }
    if Some(id) == current {
        return Err(Failure::refused(format!(
            "key {} is the current key, which new PIN hashes use; add a new key first (`pin key add`)",
            id.0
        )));
    }
    let hashes = count(&store.hashes_per_key()?, id);
    let queued = queued_under(&store, id)?;
    let parts = if queued > 0 {
        format!(
            "; {queued} delivery part(s) still queued are sealed under it and could not be sent after it is gone (run `pin deliver` first)"
        )
    } else {
        String::new()
    };
    if hashes > 0 && !force {
        return Err(Failure::refused(format!(
            "key {} still protects {hashes} PIN hash(es); each is rehashed with the current key at its next successful verify{parts}. Retire it when none is left, or pass --force: those {hashes} PIN(s) could then never be verified again",
            id.0
        )));
    }
    keys.retain(|(k, _)| *k != id);
    key::replace(&ctx.key_file, &keys)?;
    let mut text = if hashes > 0 {
        format!(
            "Retired key {} with --force: {hashes} PIN(s) made under it can no longer be verified; their holders need a new PIN (`pin resend`, or an INPS reset).\n",
            id.0
        )
    } else {
        format!("Retired key {}: no PIN hash depended on it.\n", id.0)
    };
    if queued > 0 {
        text.push_str(&format!(
            "{queued} delivery part(s) still queued were sealed under it: `pin deliver` can no longer open them; re-send those PINs.\n"
        ));
    }
    Ok(Done::ok(
        "key retire",
        json!({ "id": id.0, "forced": force, "pins_killed": hashes, "queued_parts_sealed": queued }),
        text,
    ))
}

/// How many parts waiting in the delivery queue are sealed under key `id`.
fn queued_under(store: &AnyStore, id: KeyId) -> Result<u64, Failure> {
    let mut n = 0_u64;
    for tax in store.due_deliveries(chrono::DateTime::<chrono::Utc>::MAX_UTC, usize::MAX)? {
        let Some(loaded) = store.load(&tax)? else {
            continue;
        };
        n += loaded
            .subject
            .credential
            .iter()
            .flat_map(|c| &c.parts)
            .filter(|p| p.queued.as_ref().is_some_and(|q| q.sealed.key_id() == id))
            .map(|_| 1)
            .sum::<u64>();
    }
    Ok(n)
}
