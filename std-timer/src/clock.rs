//! Time sources.
//!
//! The timer measures time as a `u64` count of nanoseconds since a clock's *origin*, an
//! [`Instant`] fixed when the clock is created. A `u64` of nanoseconds covers about 584
//! years, so every conversion here saturates instead of overflowing: an instant before the
//! origin becomes `0` (already past) and anything beyond the range, such as
//! [`Duration::MAX`], becomes `u64::MAX` (never reached in practice).
//!
//! Saturation is always in the safe direction for deadlines: a deadline rounded to `0` is
//! treated as already expired only if it really was at or before the origin, and a deadline
//! rounded to `u64::MAX` is later than the true one, so a deadline never fires early.
//!
//! * [`SystemClock`]: the real monotonic clock ([`Instant::now`]).
//! * [`ManualClock`]: a clock that only moves when told to, for deterministic tests.
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

/// A monotonic time source for the timer.
///
/// `now()` counts nanoseconds since [`origin()`](Clock::origin). Implementations must be
/// monotonic: `now()` never returns less than a value it returned before (as seen by any
/// thread that observed that earlier value).
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds elapsed since the clock's origin.
    fn now(&self) -> u64;

    /// The instant that corresponds to `now() == 0`.
    fn origin(&self) -> Instant;

    /// Converts `instant` into this clock's nanoseconds (see [`to_nanos`]).
    fn nanos_at(&self, instant: Instant) -> u64 {
        to_nanos(self.origin(), instant)
    }

    /// Converts this clock's nanoseconds back into an `Instant`, or `None` if the platform's
    /// `Instant` cannot represent it (see [`to_instant`]).
    fn instant_at(&self, nanos: u64) -> Option<Instant> {
        to_instant(self.origin(), nanos)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> u64 {
        (**self).now()
    }

    fn origin(&self) -> Instant {
        (**self).origin()
    }
}

impl<C: Clock + ?Sized> Clock for &'static C {
    fn now(&self) -> u64 {
        (**self).now()
    }

    fn origin(&self) -> Instant {
        (**self).origin()
    }
}

/// Converts a [`Duration`] to nanoseconds, saturating at `u64::MAX` (so `Duration::MAX`
/// becomes `u64::MAX`).
///
/// ```
/// # use core::time::Duration;
/// use cutoff_timer::clock::duration_to_nanos;
/// assert_eq!(duration_to_nanos(Duration::from_millis(3)), 3_000_000);
/// assert_eq!(duration_to_nanos(Duration::MAX), u64::MAX);
/// ```
#[inline]
pub fn duration_to_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Converts `instant` to nanoseconds since `origin`: instants at or before `origin` become
/// `0`, instants more than `u64::MAX` nanoseconds after it become `u64::MAX`.
///
/// ```
/// # use core::time::Duration;
/// # use std::time::Instant;
/// use cutoff_timer::clock::to_nanos;
/// let origin = Instant::now();
/// assert_eq!(to_nanos(origin, origin + Duration::from_micros(5)), 5_000);
/// assert_eq!(to_nanos(origin + Duration::from_secs(1), origin), 0);
/// ```
#[inline]
pub fn to_nanos(origin: Instant, instant: Instant) -> u64 {
    instant
        .checked_duration_since(origin)
        .map_or(0, duration_to_nanos)
}

/// The instant `nanos` nanoseconds after `origin`, or `None` if `Instant` cannot represent
/// it (on some platforms, far-future values such as `u64::MAX` nanoseconds overflow).
#[inline]
pub fn to_instant(origin: Instant, nanos: u64) -> Option<Instant> {
    origin.checked_add(Duration::from_nanos(nanos))
}

/// The real monotonic clock: [`Instant::now`] measured from the moment the clock was
/// created.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        // Fix the timers' common origin first, so this clock's origin is not before it.
        let _ = crate::global_origin();
        Self::with_origin(Instant::now())
    }

    /// A clock with the given origin. Instants before `origin` read as `0`.
    pub fn with_origin(origin: Instant) -> Self {
        Self { origin }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> u64 {
        to_nanos(self.origin, Instant::now())
    }

    #[inline]
    fn origin(&self) -> Instant {
        self.origin
    }
}

/// A clock that moves only when told to, for deterministic tests.
///
/// It starts at `0` (or at the value given to [`with_now`](Self::with_now)) and never goes
/// backwards: [`advance`](Self::advance) adds (saturating at `u64::MAX`) and
/// [`set`](Self::set) ignores values earlier than the current time. Its origin is the
/// [`Instant`] at which it was created, so `clock.origin() + d` is the instant the clock
/// reaches after advancing by `d`.
///
/// # Memory ordering
///
/// Moving the clock is a `Release` operation and [`now`](Clock::now) an `Acquire` load: a
/// thread that reads a time `t` also sees everything the thread that moved the clock to `t`
/// did before moving it.
///
/// ```
/// # use core::time::Duration;
/// use cutoff_timer::clock::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.now(), 5_000_000);
/// clock.set(1_000); // earlier: ignored
/// assert_eq!(clock.now(), 5_000_000);
/// ```
#[derive(Debug)]
pub struct ManualClock {
    origin: Instant,
    now: AtomicU64,
}

impl ManualClock {
    /// A clock at `0`, with its origin at the current instant.
    pub fn new() -> Self {
        Self::with_now(0)
    }

    /// A clock at `now` nanoseconds, with its origin at the current instant.
    pub fn with_now(now: u64) -> Self {
        // Fix the timers' common origin first, so this clock's origin is not before it.
        let _ = crate::global_origin();
        Self {
            origin: Instant::now(),
            now: AtomicU64::new(now),
        }
    }

    /// Moves the clock forward by `by` (saturating at `u64::MAX`) and returns the new time.
    pub fn advance(&self, by: Duration) -> u64 {
        self.advance_nanos(duration_to_nanos(by))
    }

    /// Moves the clock forward by `nanos` (saturating at `u64::MAX`) and returns the new
    /// time.
    pub fn advance_nanos(&self, nanos: u64) -> u64 {
        let prev = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(nanos))
            })
            .unwrap_or_else(|now| now);
        prev.saturating_add(nanos)
    }

    /// Moves the clock to `now` if that is later than the current time (the clock never goes
    /// backwards) and returns the resulting time.
    pub fn set(&self, now: u64) -> u64 {
        self.now.fetch_max(now, Ordering::AcqRel).max(now)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }

    #[inline]
    fn origin(&self) -> Instant {
        self.origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    #[test]
    fn duration_to_nanos_saturates() {
        assert_eq!(duration_to_nanos(Duration::ZERO), 0);
        assert_eq!(duration_to_nanos(Duration::from_nanos(1)), 1);
        assert_eq!(duration_to_nanos(Duration::from_secs(1)), 1_000_000_000);
        assert_eq!(duration_to_nanos(Duration::from_nanos(u64::MAX)), u64::MAX);
        assert_eq!(
            duration_to_nanos(Duration::from_nanos(u64::MAX) + Duration::from_nanos(1)),
            u64::MAX
        );
        assert_eq!(duration_to_nanos(Duration::MAX), u64::MAX);
    }

    #[test]
    fn to_nanos_before_at_and_after_origin() {
        let origin = Instant::now();
        assert_eq!(to_nanos(origin, origin), 0);
        assert_eq!(to_nanos(origin, origin + Duration::from_nanos(7)), 7);
        assert_eq!(to_nanos(origin + Duration::from_millis(1), origin), 0);
        // Far future: either representable (then saturating) or not constructible at all.
        if let Some(far) = origin.checked_add(Duration::from_nanos(u64::MAX) + YEAR) {
            assert_eq!(to_nanos(origin, far), u64::MAX);
        }
    }

    #[test]
    fn to_instant_round_trips() {
        let origin = Instant::now();
        for nanos in [0, 1, 999, 1_000_000, 3_600_000_000_000] {
            let at = to_instant(origin, nanos).expect("representable");
            assert_eq!(to_nanos(origin, at), nanos);
        }
    }

    #[test]
    fn system_clock_is_monotonic_and_starts_near_zero() {
        let clock = SystemClock::new();
        let first = clock.now();
        assert!(first < 1_000_000_000, "a fresh clock reads {first} ns");
        let mut prev = first;
        for _ in 0..10_000 {
            let now = clock.now();
            assert!(now >= prev, "went backwards: {prev} -> {now}");
            prev = now;
        }
        // `now` follows `Instant::now`.
        let before = clock.nanos_at(Instant::now());
        let now = clock.now();
        let after = clock.nanos_at(Instant::now());
        assert!(before <= now && now <= after);
    }

    #[test]
    fn system_clock_origin_in_the_past() {
        let origin = Instant::now();
        let clock = SystemClock::with_origin(origin);
        assert_eq!(clock.origin(), origin);
        let at = origin + Duration::from_millis(2);
        assert_eq!(clock.nanos_at(at), 2_000_000);
        assert_eq!(clock.instant_at(2_000_000), Some(at));
    }

    #[test]
    fn manual_clock_moves_only_forward() {
        let clock = ManualClock::new();
        assert_eq!(clock.now(), 0);
        assert_eq!(clock.advance(Duration::from_millis(3)), 3_000_000);
        assert_eq!(clock.advance_nanos(5), 3_000_005);
        assert_eq!(clock.set(10), 3_000_005, "set backwards is ignored");
        assert_eq!(clock.now(), 3_000_005);
        assert_eq!(clock.set(4_000_000), 4_000_000);
        assert_eq!(clock.now(), 4_000_000);
        assert_eq!(ManualClock::with_now(42).now(), 42);
    }

    #[test]
    fn manual_clock_jumps_years_and_saturates() {
        let clock = ManualClock::new();
        let ten_years = duration_to_nanos(YEAR * 10);
        assert_eq!(clock.advance(YEAR * 10), ten_years);
        assert_eq!(clock.advance(YEAR * 1000), u64::MAX);
        assert_eq!(clock.advance(Duration::MAX), u64::MAX);
        assert_eq!(clock.advance_nanos(1), u64::MAX);
        assert_eq!(clock.now(), u64::MAX);
    }

    #[test]
    fn manual_clock_maps_instants() {
        let clock = ManualClock::new();
        let at = clock.origin() + Duration::from_millis(7);
        assert_eq!(clock.nanos_at(at), 7_000_000);
        clock.advance(Duration::from_millis(7));
        assert_eq!(clock.now(), clock.nanos_at(at));
    }

    #[test]
    fn clocks_behind_pointers_and_dyn() {
        let shared = Arc::new(ManualClock::new());
        let as_dyn: Arc<dyn Clock> = shared.clone();
        shared.advance(Duration::from_nanos(9));
        assert_eq!(as_dyn.now(), 9);
        assert_eq!(Clock::now(&shared), 9);
        assert_eq!(as_dyn.origin(), shared.origin());

        static STATIC: std::sync::OnceLock<ManualClock> = std::sync::OnceLock::new();
        let clock: &'static ManualClock = STATIC.get_or_init(ManualClock::new);
        fn takes_clock(c: impl Clock) -> u64 {
            c.now()
        }
        assert_eq!(takes_clock(clock), 0);
    }

    #[test]
    fn manual_clock_concurrent_advances_add_up() {
        let clock = Arc::new(ManualClock::new());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        clock.advance_nanos(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(clock.now(), 2000);
    }
}
