//! Admission: who gets a media stream, decided once, at the voice webhook.
//!
//! The webhook reserves a call slot and mints a single-use stream token bound to that call;
//! the media stream must claim the reservation with it before any audio is processed. So
//! `max_calls` counts streams that are live *or promised* (no race between 40 webhooks that
//! all saw room), a token cannot be replayed after its call (it is gone once claimed, and
//! expires if never claimed), and the caller's From/To come from the signed webhook rather
//! than from parameters the stream carries back. Sans-IO: callers pass the time in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::auth::constant_time_eq;

/// What the signed webhook said about a call, kept until its stream arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promised {
    pub call_sid: String,
    pub account_sid: String,
    pub from: String,
    pub to: String,
}

impl Promised {
    /// From a signed webhook's fields. Phone numbers are short; anything longer is cut
    /// rather than stored whole.
    pub fn new(call_sid: &str, account_sid: &str, from: &str, to: &str) -> Promised {
        let bounded = |s: &str| s.chars().take(64).collect();
        Promised {
            call_sid: call_sid.to_string(),
            account_sid: account_sid.to_string(),
            from: bounded(from),
            to: bounded(to),
        }
    }
}

/// Form fields of a provider callback, in the order they came.
pub type Form = Vec<(String, String)>;

/// The first value of `key` in a callback's form.
pub fn field<'a>(form: &'a Form, key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("at capacity")]
    AtCapacity,
    #[error("shutting down")]
    Draining,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// No reservation for this call: never answered, already claimed, or expired.
    #[error("no open reservation for this call (unknown, already used or expired)")]
    NoReservation,
    #[error("stream token does not match")]
    BadToken,
    #[error("a direct connection was refused: {0}")]
    Refused(Refused),
}

impl ClaimError {
    /// Label for `wire_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClaimError::NoReservation | ClaimError::BadToken => "bad_stream_token",
            ClaimError::Refused(Refused::AtCapacity) => "at_capacity",
            ClaimError::Refused(Refused::Draining) => "draining",
        }
    }
}

struct Reservation {
    token: String,
    promised: Promised,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    live: usize,
    reserved: HashMap<String, Reservation>,
    draining: bool,
}

pub struct Admission {
    max_calls: usize,
    /// How long a reservation waits for its stream.
    hold: Duration,
    inner: Mutex<Inner>,
}

impl Admission {
    pub fn new(max_calls: usize, hold: Duration) -> Arc<Admission> {
        Arc::new(Admission {
            max_calls,
            hold,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a slot for a call the webhook is about to answer with a stream; returns the
    /// stream token. A repeated webhook for the same call replaces its reservation.
    pub fn reserve(&self, promised: Promised, token: String, now: Instant) -> Result<(), Refused> {
        let mut g = self.lock();
        if g.draining {
            return Err(Refused::Draining);
        }
        g.reserved.retain(|_, r| r.expires > now);
        let taken =
            g.live + g.reserved.len() - usize::from(g.reserved.contains_key(&promised.call_sid));
        if taken >= self.max_calls {
            return Err(Refused::AtCapacity);
        }
        g.reserved.insert(
            promised.call_sid.clone(),
            Reservation {
                token,
                promised,
                expires: now + self.hold,
            },
        );
        Ok(())
    }

    /// Turns a reservation into a live call. The token is used up whether or not it matched,
    /// so a guessed token gets one try per answered call.
    pub fn claim(
        self: &Arc<Self>,
        call_sid: &str,
        token: &str,
        now: Instant,
    ) -> Result<(Slot, Promised), ClaimError> {
        let mut g = self.lock();
        let r = g
            .reserved
            .remove(call_sid)
            .filter(|r| r.expires > now)
            .ok_or(ClaimError::NoReservation)?;
        if !constant_time_eq(r.token.as_bytes(), token.as_bytes()) {
            return Err(ClaimError::BadToken);
        }
        g.live += 1;
        Ok((Slot(self.clone()), r.promised))
    }

    /// A call that arrives on a connection with no webhook before it (a PBX's AudioSocket):
    /// a slot now, or a refusal the PBX's dialplan turns into a direct dial.
    pub fn admit_direct(
        self: &Arc<Self>,
        call_sid: &str,
        now: Instant,
    ) -> Result<(Slot, Promised), ClaimError> {
        let mut g = self.lock();
        if g.draining {
            return Err(ClaimError::Refused(Refused::Draining));
        }
        g.reserved.retain(|_, r| r.expires > now);
        if g.live + g.reserved.len() >= self.max_calls {
            return Err(ClaimError::Refused(Refused::AtCapacity));
        }
        g.live += 1;
        let promised = Promised {
            call_sid: call_sid.to_string(),
            account_sid: String::new(),
            from: String::new(),
            to: String::new(),
        };
        Ok((Slot(self.clone()), promised))
    }

    /// Stops admitting: webhooks get a person directly from now on.
    pub fn drain(&self) {
        self.lock().draining = true;
    }

    pub fn draining(&self) -> bool {
        self.lock().draining
    }

    pub fn live(&self) -> usize {
        self.lock().live
    }
}

/// A live call's place; released when the call task ends, however it ends.
pub struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.live = g.live.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promised(sid: &str) -> Promised {
        Promised {
            call_sid: sid.into(),
            account_sid: "AC1".into(),
            from: "+1555".into(),
            to: "+1666".into(),
        }
    }

    #[test]
    fn reservations_count_against_max_calls_before_any_stream_connects() {
        let a = Admission::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        let admitted = (0..40)
            .filter(|i| {
                a.reserve(promised(&format!("CA{i}")), "tok".into(), t0)
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, 3);
        // The same call's webhook again (a provider retry) keeps its one slot.
        assert_eq!(a.reserve(promised("CA0"), "tok2".into(), t0), Ok(()));
    }

    #[test]
    fn a_token_is_single_use_and_bound_to_its_call() {
        let a = Admission::new(5, Duration::from_secs(30));
        let t0 = Instant::now();
        a.reserve(promised("CA1"), "secret".into(), t0).unwrap();
        a.reserve(promised("CA2"), "other".into(), t0).unwrap();
        assert_eq!(
            a.claim("CA2", "secret", t0).err(),
            Some(ClaimError::BadToken)
        );
        // The failed try used CA2's reservation up.
        assert_eq!(
            a.claim("CA2", "other", t0).err(),
            Some(ClaimError::NoReservation)
        );
        let (slot, p) = a.claim("CA1", "secret", t0).unwrap();
        assert_eq!(p, promised("CA1"));
        assert_eq!(a.live(), 1);
        assert_eq!(
            a.claim("CA1", "secret", t0).err(),
            Some(ClaimError::NoReservation)
        );
        drop(slot);
        assert_eq!(a.live(), 0);
        assert_eq!(
            a.claim("CA1", "secret", t0).err(),
            Some(ClaimError::NoReservation)
        );
    }

    #[test]
    fn unclaimed_reservations_expire_and_free_their_slot() {
        let a = Admission::new(1, Duration::from_secs(30));
        let t0 = Instant::now();
        a.reserve(promised("CA1"), "t".into(), t0).unwrap();
        assert_eq!(
            a.reserve(promised("CA2"), "t".into(), t0),
            Err(Refused::AtCapacity)
        );
        let later = t0 + Duration::from_secs(31);
        assert_eq!(
            a.claim("CA1", "t", later).err(),
            Some(ClaimError::NoReservation)
        );
        assert_eq!(a.reserve(promised("CA2"), "t".into(), later), Ok(()));
    }

    #[test]
    fn draining_refuses_new_calls_but_keeps_count_of_live_ones() {
        let a = Admission::new(5, Duration::from_secs(30));
        let t0 = Instant::now();
        a.reserve(promised("CA1"), "t".into(), t0).unwrap();
        let (slot, _) = a.claim("CA1", "t", t0).unwrap();
        a.drain();
        assert_eq!(
            a.reserve(promised("CA2"), "t".into(), t0),
            Err(Refused::Draining)
        );
        assert_eq!(a.live(), 1);
        drop(slot);
        assert_eq!(a.live(), 0);
    }
}
