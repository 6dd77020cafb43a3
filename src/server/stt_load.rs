//! How busy speech-to-text is, for deciding whether a new caller can be served at all.
//!
//! A queue of waiting transcriptions alone says little: ten utterances ahead of you are a
//! third of a second with a fitted encoder window and fifteen seconds with a slow model on a
//! loaded machine. So the backlog is weighed by how long transcriptions have recently taken,
//! and a caller is sent to a person at connect only when a transcription queued now would
//! already outlast the wait any utterance is allowed ([`STT_WAIT`](super::media)), i.e. when
//! the line is certain to fail them open later anyway, after they have told their story.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Weight of the newest transcription in the running mean: the last ~8 decide it, so a burst
/// of long utterances shows within a second or two, and one outlier does not.
const NEW_WEIGHT: f64 = 0.125;

/// Until something has been transcribed: tiny.en on one core, a short utterance, fitted window.
const FIRST_GUESS: Duration = Duration::from_millis(500);

/// The decoder states transcriptions run on (one permit each), and how busy they are.
#[derive(Debug)]
pub struct SttLoad {
    states: usize,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Running mean transcription time, µs (0 = none seen yet).
    mean_us: AtomicU64,
}

impl SttLoad {
    pub fn new(states: usize) -> SttLoad {
        let states = states.max(1);
        SttLoad {
            states,
            permits: Arc::new(Semaphore::new(states)),
            waiting: AtomicUsize::new(0),
            mean_us: AtomicU64::new(0),
        }
    }

    /// A decoder state, waiting at most `limit` for one (counted as waiting meanwhile);
    /// `None` when none came free in time.
    pub async fn acquire(&self, limit: Duration) -> Option<OwnedSemaphorePermit> {
        let _waiting = self.queued();
        let permit = tokio::time::timeout(limit, self.permits.clone().acquire_owned()).await;
        permit.ok()?.ok()
    }

    /// A decoder state for work that may be skipped: only when nothing waits and it is not the
    /// last free one, which is kept for a caller who has finished speaking.
    pub fn spare(&self) -> Option<OwnedSemaphorePermit> {
        if self.waiting() > 0 || self.permits.available_permits() <= 1 {
            return None;
        }
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Marks a transcription as waiting for a state until the guard drops.
    fn queued(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(self)
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Folds one finished transcription into the running mean. Racing updates may lose one
    /// sample; the estimate stays a mean of recent samples, which is all admission needs.
    pub fn finished(&self, took: Duration) {
        let took = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.mean_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            took
        } else {
            (old as f64 * (1.0 - NEW_WEIGHT) + took as f64 * NEW_WEIGHT) as u64
        };
        self.mean_us.store(new.max(1), Ordering::Relaxed);
    }

    pub fn mean(&self) -> Duration {
        match self.mean_us.load(Ordering::Relaxed) {
            0 => FIRST_GUESS,
            us => Duration::from_micros(us),
        }
    }

    /// How long a transcription queued now would wait for a state: the backlog ahead of it,
    /// served `states` at a time.
    pub fn expected_wait(&self) -> Duration {
        expected_wait(self.waiting(), self.states, self.mean())
    }

    /// True when a transcription queued now would wait longer than `limit`.
    pub fn saturated(&self, limit: Duration) -> bool {
        self.expected_wait() > limit
    }
}

fn expected_wait(waiting: usize, states: usize, mean: Duration) -> Duration {
    // Each round frees `states` states; the new one needs `waiting / states` rounds to start.
    let rounds = waiting / states.max(1);
    mean.saturating_mul(rounds.min(u32::MAX as usize) as u32)
}

/// A transcription waiting for a decoder state; counted out when dropped.
pub struct Waiting<'a>(&'a SttLoad);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_long_queue_of_fast_transcriptions_is_not_overload() {
        let load = SttLoad::new(2);
        for _ in 0..20 {
            load.finished(ms(320));
        }
        let guards: Vec<_> = (0..20).map(|_| load.queued()).collect();
        // 20 ahead, 2 at a time, 0.32 s each: 3.2 s — inside the 5 s an utterance may wait.
        assert_eq!(load.expected_wait(), ms(3200));
        assert!(!load.saturated(LIMIT));
        drop(guards);
        assert_eq!(load.waiting(), 0);
    }

    #[test]
    fn a_short_queue_of_slow_transcriptions_is_overload() {
        let load = SttLoad::new(2);
        for _ in 0..20 {
            load.finished(ms(1500));
        }
        let _guards: Vec<_> = (0..8).map(|_| load.queued()).collect();
        assert_eq!(load.expected_wait(), ms(6000));
        assert!(load.saturated(LIMIT));
    }

    #[test]
    fn the_first_sample_replaces_the_guess_and_later_ones_blend() {
        let load = SttLoad::new(1);
        assert_eq!(load.mean(), FIRST_GUESS);
        load.finished(ms(800));
        assert_eq!(load.mean(), ms(800));
        load.finished(ms(1600));
        assert_eq!(load.mean(), ms(900));
    }

    #[test]
    fn nothing_waiting_is_never_overload() {
        let load = SttLoad::new(1);
        load.finished(Duration::from_secs(60));
        assert!(!load.saturated(Duration::ZERO));
    }

    #[tokio::test]
    async fn spare_states_never_take_the_last_one() {
        let load = SttLoad::new(2);
        let first = load.spare().expect("two free: one is spare");
        assert!(load.spare().is_none(), "the last free state is kept");
        let last = load
            .acquire(ms(10))
            .await
            .expect("a finished utterance gets it");
        assert!(
            load.acquire(ms(10)).await.is_none(),
            "none free within the limit"
        );
        assert_eq!(load.waiting(), 0);
        drop((first, last));
        assert!(load.spare().is_some());
    }

    #[test]
    fn waiting_fewer_than_the_states_starts_at_once() {
        assert_eq!(expected_wait(1, 2, ms(1000)), Duration::ZERO);
        assert_eq!(expected_wait(3, 2, ms(1000)), ms(1000));
        assert_eq!(expected_wait(5, 0, ms(10)), ms(50));
    }
}
