//! How responsive a tokio runtime stays while it serves PIN verifies through `pin-async`.
//!
//! A timer task on a runtime with 2 worker threads sleeps 1 ms again and again; its *lag*
//! is how much later than asked each sleep ends. The figure is a **ratio in the same run**:
//! the lag while 1,000 verifies are in flight through [`AsyncPinService`] (each of 1,000
//! tasks awaits one verify after another, the default policy's Argon2id on a pool of 2
//! threads) ÷ the lag on an idle runtime. For contrast, measured once and printed beside
//! it: 20 tasks calling the blocking `PinService::verify` directly on the runtime (what the
//! driver exists to avoid).
//!
//! Run: `cargo bench --bench async_verify`; in CI, `cargo bench --bench async_verify --
//! --test` runs each once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    missing_docs
)]

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use criterion::Criterion;
use pin_async::{AsyncPinService, PoolOptions};
use pin_core::conformance::support::{enrol_noipa, synthetic_tax_code};
use pin_core::hash::Keyring;
use pin_core::memory::MemoryStore;
use pin_core::notify::MemoryOutbox;
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::PinService;
use pin_core::tax_code::TaxCode;
use pin_core::{Level, Policy};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::runtime::Runtime;

const IN_FLIGHT: usize = 1_000;
const SUBJECTS: u64 = 10;
const TICK: Duration = Duration::from_millis(1);
/// Tasks calling the blocking driver on the runtime, in the contrast.
const BLOCKING_TASKS: usize = 20;
/// The contrast's mean lag per tick, in nanoseconds.
static CONTRAST_NS: AtomicU64 = AtomicU64::new(0);

type Service = PinService<MemoryStore, MemoryOutbox, ChaCha20Rng>;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 9, 5, 0).unwrap()
}

fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// A service with the default policy (real Argon2id cost) and enrolled subjects.
fn service() -> (Service, Vec<(TaxCode, String)>) {
    let keys = Keyring::new(Pepper::new(KeyId(1), &[0x42; 32]).unwrap());
    let svc = PinService::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        Policy::default(),
        keys,
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let people = (0..SUBJECTS)
        .map(|i| {
            let tax = synthetic_tax_code(i);
            let pin = enrol_noipa(&svc, &tax, &format!("p{i}@example.it"));
            (tax, pin)
        })
        .collect();
    (svc, people)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Total lag of `iters` sleeps of [`TICK`], measured by a task spawned on the runtime.
fn lag(rt: &Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        tokio::spawn(async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                tokio::time::sleep(TICK).await;
                total += start.elapsed().saturating_sub(TICK);
            }
            total
        })
        .await
        .unwrap()
    })
}

/// What keeps [`IN_FLIGHT`] verifies going until it is stopped; counts them.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
}

impl Load {
    fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            done: Arc::new(AtomicU64::new(0)),
        }
    }

    /// `tasks` tasks, each awaiting one verify of `call` after another (yielding between
    /// two, so that a task that never awaits anything cannot hold a worker for ever).
    fn start<F, Fut>(&self, rt: &Runtime, tasks: usize, call: F)
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let call = Arc::new(call);
        for k in 0..tasks {
            let (stop, done, call) = (
                Arc::clone(&self.stop),
                Arc::clone(&self.done),
                Arc::clone(&call),
            );
            drop(rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    call(k).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }));
        }
    }

    fn stop(&self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.done.load(Ordering::Relaxed)
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("async_verify");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(if test_mode() { 1 } else { 8 }));

    // Idle: the timer alone.
    let rt = runtime();
    group.bench_function("timer_lag_idle", |b| b.iter_custom(|iters| lag(&rt, iters)));
    drop(rt);

    // 1,000 verifies in flight through the async driver (pool of 2 threads).
    let rt = runtime();
    let (svc, people) = service();
    let people = Arc::new(people);
    let svc = AsyncPinService::with_options(
        svc,
        PoolOptions::default().with_threads(NonZeroUsize::new(2).unwrap()),
    )
    .unwrap();
    let load = Load::new();
    load.start(&rt, IN_FLIGHT, move |k| {
        let (tax, pin) = &people[k % people.len()];
        let call = svc.verify(tax, pin.as_str(), Level::Online, now());
        async move {
            let _ = call.await.unwrap();
        }
    });
    let started = Instant::now();
    group.bench_function("timer_lag_1000_async_verifies", |b| {
        b.iter_custom(|iters| lag(&rt, iters))
    });
    let done = load.stop();
    println!(
        "async driver: {done} verifies answered in {:.1} s while the timer was measured",
        started.elapsed().as_secs_f64()
    );
    rt.shutdown_background();

    group.finish();
    contrast();
}

/// For contrast, once (not a criterion benchmark: each tick takes seconds): the blocking
/// driver called on the runtime's own threads by [`BLOCKING_TASKS`] tasks; the mean lag of
/// a few ticks. The runtime's 2 workers hash in turn for every task before the timer runs.
fn contrast() {
    let rt = runtime();
    let (svc, people) = service();
    let (svc, people) = (Arc::new(svc), Arc::new(people));
    let load = Load::new();
    load.start(&rt, BLOCKING_TASKS, move |k| {
        let (svc, people) = (Arc::clone(&svc), Arc::clone(&people));
        async move {
            let (tax, pin) = &people[k % people.len()];
            let _ = svc.verify(tax, pin, Level::Online, now()).unwrap();
        }
    });
    let ticks = if test_mode() { 1 } else { 5 };
    let lag = lag(&rt, ticks);
    let _ = load.stop();
    rt.shutdown_background();
    CONTRAST_NS.store(
        u64::try_from(lag.as_nanos() / u128::from(ticks)).unwrap_or(u64::MAX),
        Ordering::SeqCst,
    );
}

/// Mean of a benchmark from criterion's saved estimates, in nanoseconds.
fn mean_ns(group: &str, name: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let file = target
        .join("criterion")
        .join(group)
        .join(name)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn report() {
    let idle = mean_ns("async_verify", "timer_lag_idle");
    println!("\n== ratios (same run) ==");
    let loaded = mean_ns("async_verify", "timer_lag_1000_async_verifies");
    if let Some((loaded, idle)) = loaded.zip(idle) {
        println!(
            "timer lag with 1,000 verifies in flight through pin-async / idle = {:.2} \
             ({:.3} ms / {:.3} ms per 1 ms tick)",
            loaded / idle,
            loaded / 1e6,
            idle / 1e6
        );
    }
    let contrast = CONTRAST_NS.load(Ordering::SeqCst) as f64;
    if let Some(idle) = idle {
        println!(
            "contrast, not a goal: timer lag with {BLOCKING_TASKS} tasks calling the blocking \
             PinService::verify on the runtime / idle = {:.0} ({:.1} ms per tick)",
            contrast / idle,
            contrast / 1e6
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    if !test_mode() {
        report();
    }
}
