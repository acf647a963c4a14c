//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/*`) through the same checks the
//! fuzz targets run, on stable Rust, so CI checks every saved input — including each crash
//! ever found, kept as a regression — without nightly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(
            result.is_ok(),
            "{target}: input {} broke an invariant",
            path.display()
        );
        n += 1;
    }
    assert!(n > 0, "{target}: the corpus is empty");
}

#[test]
fn tax_code_corpus() {
    replay("tax_code", pin_lifecycle::fuzz::tax_code);
}

#[test]
fn contacts_corpus() {
    replay("contacts", pin_lifecycle::fuzz::contacts);
}

#[test]
fn pin_input_corpus() {
    replay("pin_input", pin_lifecycle::fuzz::pin_input);
}

#[test]
fn stored_hash_corpus() {
    replay("stored_hash", pin_lifecycle::fuzz::stored_hash);
}

#[test]
fn stored_record_corpus() {
    replay("stored_record", pin_lifecycle::fuzz::stored_record);
}

#[test]
fn machine_corpus() {
    replay("machine", pin_lifecycle::fuzz::machine);
}
