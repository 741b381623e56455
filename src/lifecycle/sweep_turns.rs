//! Sweeps asked for at the same time share one. A Redis blip seen by each primary's watcher of
//! a cluster asks for a sweep from each, and every sweep reads every live session of the node
//! from the store: N primaries would otherwise cost N sweeps at once.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

/// The sweeps asked for, numbered, and how far the finished ones reach.
#[derive(Debug, Default)]
pub(super) struct SweepTurns {
    /// How many sweeps were asked for so far. A sweep covers every ask made before it started,
    /// so it reads this when it starts.
    asked: AtomicU64,
    /// One sweep at a time. Holds the number of the last ask a finished sweep covered: an
    /// async lock, because it is held for the whole sweep.
    covered: Mutex<u64>,
}

impl SweepTurns {
    /// Runs `sweep` and returns what it returns, unless a sweep that started after this call
    /// finishes meanwhile (then returns `None`): whoever asks gets a sweep that started after
    /// they asked, and the asks made during one sweep share the next.
    pub(super) async fn take<T, F: Future<Output = T>>(
        &self,
        sweep: impl FnOnce() -> F,
    ) -> Option<T> {
        let mine = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
        let mut covered = self.covered.lock().await;
        if *covered >= mine {
            return None;
        }
        let starting = self.asked.load(Ordering::Acquire);
        let out = sweep().await;
        *covered = starting;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn asks_made_during_a_sweep_share_the_next_one() {
        let turns = Arc::new(SweepTurns::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn({
            let (turns, runs) = (turns.clone(), runs.clone());
            async move {
                turns
                    .take(|| async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        held.await.ok();
                    })
                    .await
            }
        });
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Five asks while the first sweep runs: one more sweep covers them all.
        let later: Vec<_> = (0..5)
            .map(|_| {
                let (turns, runs) = (turns.clone(), runs.clone());
                tokio::spawn(async move {
                    turns
                        .take(|| async {
                            runs.fetch_add(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        while turns.asked.load(Ordering::SeqCst) < 6 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        assert!(first.await.unwrap().is_some());
        let ran = futures_util::future::join_all(later).await;
        assert_eq!(
            ran.iter().filter(|r| r.as_ref().unwrap().is_some()).count(),
            1
        );
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "the first sweep and one for the five"
        );
        // Asked afterwards: a sweep of its own.
        assert!(turns.take(|| async {}).await.is_some());
    }
}
