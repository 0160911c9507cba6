//! `ledger bench --with-tree`: the Merkle tree follower running beside the appends
//! (as in `serve`), and the tree's own figures on the scratch log: build from the
//! log, inclusion and consistency proofs and a signed head at the full size, proof
//! sizes, memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use ledger_app::health::Health;
use ledger_app::transparency::{HeadSigner, SigningPolicy, TransparencyLog};
use ledger_store::EventStore;
use rand::Rng as _;
use serde::Serialize;

/// The follower, signing by the default policy, while the bench appends.
pub struct Follower {
    log: Arc<TransparencyLog>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    pub fn start(store: Arc<dyn EventStore>) -> Self {
        let log = Arc::new(TransparencyLog::new(
            store,
            HeadSigner::generate(),
            SigningPolicy::default(),
        ));
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = {
            let log = log.clone();
            tokio::spawn(async move {
                let health = Health::new();
                log.follow(
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                    &health,
                )
                .await
            })
        };
        Self { log, stop, task }
    }

    /// Waits until the tree holds `size` records; returns how long that took
    /// after the last append (the follower's lag), then stops it.
    pub async fn finish(self, size: u64) -> Result<f64> {
        let t = Instant::now();
        while self.log.size() < size {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(120),
                "the tree follower did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let lag = t.elapsed().as_secs_f64() * 1e3;
        let _ = self.stop.send(true);
        let _ = self.task.await;
        Ok(lag)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TreeFigures {
    pub size: u64,
    pub build_s: f64,
    pub build_events_per_s: f64,
    pub memory_mb: f64,
    pub inclusion_mean_us: f64,
    pub inclusion_p99_us: f64,
    pub inclusion_hashes_max: usize,
    pub consistency_mean_us: f64,
    pub consistency_p99_us: f64,
    pub consistency_hashes_max: usize,
    pub signed_head_mean_us: f64,
}

fn stats(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let p99 = xs
        .get(((xs.len() as f64 - 1.0) * 0.99).round() as usize)
        .copied()
        .unwrap_or(0.0);
    (mean, p99)
}

/// Builds the tree from the whole log, then times 10,000 proofs of each kind at
/// the full size (the app calls the API handlers make, without HTTP).
pub async fn measure(store: Arc<dyn EventStore>) -> Result<TreeFigures> {
    let log = TransparencyLog::new(store, HeadSigner::generate(), SigningPolicy::default());
    let t = Instant::now();
    let size = log.catch_up().await?;
    let build_s = t.elapsed().as_secs_f64();
    let mut rng = rand::thread_rng();
    let (mut inc, mut con, mut sig) = (Vec::new(), Vec::new(), Vec::new());
    let (mut inc_max, mut con_max) = (0, 0);
    for _ in 0..10_000 {
        let p = rng.gen_range(1..=size);
        let t = Instant::now();
        let proof = log.inclusion(p, Some(size)).await?;
        inc.push(t.elapsed().as_secs_f64() * 1e6);
        inc_max = inc_max.max(proof.proof.inclusion_path.len());
        let m = rng.gen_range(1..=size);
        let t = Instant::now();
        let proof = log.consistency(m, Some(size)).await?;
        con.push(t.elapsed().as_secs_f64() * 1e6);
        con_max = con_max.max(proof.consistency_path.len());
    }
    for _ in 0..1_000 {
        let t = Instant::now();
        log.signed_head_at(size).await?;
        sig.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (inclusion_mean_us, inclusion_p99_us) = stats(inc);
    let (consistency_mean_us, consistency_p99_us) = stats(con);
    Ok(TreeFigures {
        size,
        build_s,
        build_events_per_s: size as f64 / build_s.max(1e-9),
        memory_mb: log.memory_bytes() as f64 / 1e6,
        inclusion_mean_us,
        inclusion_p99_us,
        inclusion_hashes_max: inc_max,
        consistency_mean_us,
        consistency_p99_us,
        consistency_hashes_max: con_max,
        signed_head_mean_us: stats(sig).0,
    })
}
