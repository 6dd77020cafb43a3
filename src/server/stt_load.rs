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
    /// Threads for a transcription that has the machine to itself (see [`share`]).
    solo_threads: usize,
    /// Cores other processes are using (see [`machine_idle`]).
    others_cores: fn() -> Option<f64>,
    /// Whisper runs under way anywhere in this process ([`crate::stt::engine::runs_under_way`]).
    runs_under_way: fn() -> usize,
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
            solo_threads: 1,
            others_cores: || crate::procstat::OTHERS.cores(),
            runs_under_way: crate::stt::engine::runs_under_way,
            permits: Arc::new(Semaphore::new(states)),
            waiting: AtomicUsize::new(0),
            mean_us: AtomicU64::new(0),
        }
    }

    /// Lets a transcription that finds every state free and nothing waiting run on `threads`
    /// threads, holding all the states meanwhile (1: never).
    pub fn with_solo_threads(mut self, threads: usize) -> SttLoad {
        self.solo_threads = threads.max(1);
        self
    }

    /// A decoder state for a caller who has finished speaking, waiting at most `limit` for
    /// one (counted as waiting meanwhile); `None` when none came free in time.
    pub async fn acquire(&self, limit: Duration) -> Option<Grant> {
        if let Some(solo) = self.take(false) {
            return Some(solo);
        }
        let _waiting = self.queued();
        let permit = tokio::time::timeout(limit, self.permits.clone().acquire_owned()).await;
        Some(Grant::one(permit.ok()?.ok()?))
    }

    /// A decoder state for work that may be skipped (a transcript at a pause), only if one can
    /// be had now without holding up a caller who has finished. Such work should stop when
    /// [`Self::waiting`] rises: it is run with [`Grant::speculative`] set.
    pub fn spare(&self) -> Option<Grant> {
        self.take(true)
    }

    fn take(&self, speculative: bool) -> Option<Grant> {
        let free = self.permits.available_permits();
        let solo_threads = if self.solo_threads > 1 && free >= self.states {
            // Another Whisper run in this process (a second in-process instance, a test next
            // door) is load the other-processes reading cannot see.
            if (self.runs_under_way)() == 0
                && machine_idle((self.others_cores)(), self.solo_threads)
            {
                self.solo_threads
            } else {
                1
            }
        } else {
            1
        };
        let (n, threads) = share(free, self.states, self.waiting(), speculative, solo_threads);
        if n == 0 {
            return None;
        }
        let permit = self.permits.clone().try_acquire_many_owned(n as u32).ok()?;
        Some(Grant {
            _permit: permit,
            threads,
            speculative,
        })
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

/// How a transcription asking for a decoder state now is served: how many of the `free`
/// states it takes and how many threads it runs on; `(0, 0)` when it gets none now (a finished
/// caller's then queues for one, a speculative one is skipped).
///
/// - Anything waiting goes first: nobody jumps the queue.
/// - Every state free: the transcription takes them all and runs on `solo_threads` threads,
///   about twice as fast on two cores. Holding every state keeps a second transcription from
///   starting beside it: ggml's threads spin at each barrier, and 2-thread jobs sharing two
///   cores with anything took seconds instead of a third of a second. One that finished
///   speaking in the meantime waits for it (a fraction of its own run); a speculative one
///   gives way at once (it is called off).
/// - Otherwise one state, one thread; speculative work never takes the last free state.
pub fn share(
    free: usize,
    states: usize,
    waiting: usize,
    speculative: bool,
    solo_threads: usize,
) -> (usize, usize) {
    if waiting > 0 || free == 0 {
        return (0, 0);
    }
    if free >= states && solo_threads > 1 {
        return (states, solo_threads);
    }
    if speculative && free <= 1 {
        return (0, 0);
    }
    (1, 1)
}

/// Whether nothing else competes for the cores a solo transcription's threads would spin on:
/// other processes have used less than half a core lately ([`crate::procstat::OthersCpu`]).
/// On 2 vCPUs shared with two compilers, 2-thread transcriptions took 7 s on average instead
/// of 0.15 s, because a descheduled thread leaves its partner spinning at every ggml barrier.
/// This server's own work does not count: the 1-minute load average used before rose past
/// half a core from one caller's transcriptions alone, and a caller alone on the line was
/// then transcribed on one thread (a 3 s request for a person: 350 ms instead of 210 ms).
/// Unknown load (no /proc, or no recent reading) counts as busy.
pub fn machine_idle(others_cores: Option<f64>, solo_threads: usize) -> bool {
    solo_threads > 1 && others_cores.is_some_and(|c| c < IDLE_OTHERS_CORES)
}

/// See [`machine_idle`].
const IDLE_OTHERS_CORES: f64 = 0.5;

/// Decoder states held for one transcription, and how to run it.
#[derive(Debug)]
pub struct Grant {
    _permit: OwnedSemaphorePermit,
    /// Threads to run it on.
    pub threads: usize,
    /// It may be skipped, and should stop when a finished caller waits for a state.
    pub speculative: bool,
}

impl Grant {
    fn one(permit: OwnedSemaphorePermit) -> Grant {
        Grant {
            _permit: permit,
            threads: 1,
            speculative: false,
        }
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

    #[test]
    fn alone_with_every_state_free_a_transcription_takes_them_all() {
        // 2 states, 2 cores: nothing else running, nothing waiting.
        assert_eq!(share(2, 2, 0, false, 2), (2, 2));
        assert_eq!(share(2, 2, 0, true, 2), (2, 2), "a pause transcript too");
        // Solo threads off: one state, one thread, as before.
        assert_eq!(share(2, 2, 0, false, 1), (1, 1));
        assert_eq!(share(2, 2, 0, true, 1), (1, 1));
    }

    #[test]
    fn beside_another_transcription_one_state_one_thread() {
        assert_eq!(share(1, 2, 0, false, 2), (1, 1));
        assert_eq!(share(3, 4, 0, false, 4), (1, 1));
        assert_eq!(share(2, 4, 0, true, 4), (1, 1));
    }

    #[test]
    fn speculative_work_never_takes_the_last_state_beside_another() {
        assert_eq!(share(1, 2, 0, true, 2), (0, 0));
        assert_eq!(share(1, 2, 0, true, 1), (0, 0));
        assert_eq!(share(0, 2, 0, false, 2), (0, 0), "a finished turn queues");
    }

    #[test]
    fn nobody_jumps_the_queue() {
        assert_eq!(share(2, 2, 1, false, 2), (0, 0));
        assert_eq!(share(2, 2, 1, true, 2), (0, 0));
        assert_eq!(share(1, 2, 3, false, 1), (0, 0));
    }

    #[test]
    fn solo_threads_only_on_an_idle_machine() {
        assert!(machine_idle(Some(0.2), 2));
        assert!(!machine_idle(Some(0.5), 2), "half a core busy already");
        assert!(!machine_idle(Some(6.5), 2), "two compilers running");
        assert!(!machine_idle(None, 2), "unknown load is busy");
        assert!(!machine_idle(Some(0.0), 1), "solo off");
    }

    fn idle() -> Option<f64> {
        Some(0.1)
    }

    /// The tests around this file may run Whisper meanwhile: these see none.
    fn none_running() -> usize {
        0
    }

    fn busy() -> Option<f64> {
        Some(3.0)
    }

    #[tokio::test]
    async fn on_a_busy_machine_nothing_runs_solo() {
        let load = SttLoad {
            others_cores: busy,
            runs_under_way: none_running,
            ..SttLoad::new(2).with_solo_threads(2)
        };
        let g = load.acquire(ms(10)).await.expect("all free");
        assert_eq!(g.threads, 1);
        let early = load.spare();
        assert!(early.is_none(), "the last free state is kept");
    }

    #[tokio::test]
    async fn a_whisper_run_elsewhere_in_the_process_keeps_a_transcription_to_one_thread() {
        // A second in-process instance transcribing: its states are not this one's, but its
        // threads spin on the same cores.
        let load = SttLoad {
            others_cores: idle,
            runs_under_way: || 1,
            ..SttLoad::new(2).with_solo_threads(2)
        };
        let g = load.acquire(ms(10)).await.expect("all free");
        assert_eq!(g.threads, 1);
    }

    #[tokio::test]
    async fn a_solo_transcription_holds_every_state_until_it_ends() {
        let load = SttLoad {
            others_cores: idle,
            runs_under_way: none_running,
            ..SttLoad::new(2).with_solo_threads(2)
        };
        let solo = load.acquire(ms(10)).await.expect("all free");
        assert_eq!((solo.threads, solo.speculative), (2, false));
        assert!(load.spare().is_none());
        assert!(
            load.acquire(ms(10)).await.is_none(),
            "nothing runs beside it"
        );
        drop(solo);
        let one = load.acquire(ms(10)).await.expect("free again");
        assert_eq!(one.threads, 2, "alone again: solo");
        drop(one);
        let early = load.spare().expect("a pause transcript may run solo");
        assert_eq!((early.threads, early.speculative), (2, true));
    }

    #[tokio::test]
    async fn a_finished_caller_waiting_is_what_a_speculative_run_yields_to() {
        let load = Arc::new(SttLoad {
            others_cores: idle,
            runs_under_way: none_running,
            ..SttLoad::new(2).with_solo_threads(2)
        });
        let early = load.spare().expect("all free");
        assert_eq!(load.waiting(), 0);
        let waiter = {
            let load = load.clone();
            tokio::spawn(async move {
                load.acquire(Duration::from_secs(5))
                    .await
                    .map(|g| g.threads)
            })
        };
        // The waiter is counted while the speculative run holds every state…
        for _ in 0..100 {
            if load.waiting() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(load.waiting(), 1);
        // …and gets a state as soon as the run is called off.
        drop(early);
        assert_eq!(waiter.await.unwrap(), Some(1));
        assert_eq!(load.waiting(), 0);
    }
}
