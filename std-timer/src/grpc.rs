//! Deadline propagation across processes in gRPC's `grpc-timeout` form (issue 7, item 5).
//!
//! gRPC does not send a call's deadline itself but the time left until it, in the
//! `grpc-timeout` request header ([gRPC over HTTP/2], "Requests"):
//!
//! ```text
//! Timeout      → "grpc-timeout" TimeoutValue TimeoutUnit
//! TimeoutValue → {positive integer as ASCII string of at most 8 digits}
//! TimeoutUnit  → "H" (hours) / "M" (minutes) / "S" (seconds)
//!              / "m" (milliseconds) / "u" (microseconds) / "n" (nanoseconds)
//! ```
//!
//! A missing header means "no deadline". This module turns a node's deadline into that text
//! on the client and the text back into a deadline node on the server.
//!
//! # Sending: the remaining time, rounded down
//!
//! [`GrpcTimeout::from_duration`] (and [`encode_timeout`], [`grpc_timeout`] for a node) sends
//! **the longest timeout the grammar can express that is not longer than the remaining time**
//! `d`. Rounding down is what keeps a deadline from being extended across the wire: the
//! receiver may stop early by a rounding error, never late.
//!
//! * Below 100 ms (`99999999n`) every duration is sent exactly, in nanoseconds.
//! * Above that (and below the saturation point), the loss `d − parse(encode(d))` is less
//!   than one unit of the finest unit in which `d` still fits into 8 digits, and less than
//!   `d / 100_000` (10 ppm): that unit is at most 1000 times the next finer one, in which `d`
//!   did not fit, so `d ≥ 10⁸` finer units.
//! * The text uses the coarsest unit that names the chosen value exactly, so two seconds go
//!   out as `2S`, not `2000000u` (the same time, fewer header bytes).
//! * Durations of 99,999,999 hours (about 11,400 years) or more saturate to `99999999H`,
//!   which is shorter than `d`, so still never later.
//! * **Zero**: the grammar has no zero (the value is a *positive* integer), so a duration of
//!   zero gives `None`, and a node whose deadline has passed gives `Err(`[`Elapsed`]`)`. Fail
//!   the call locally with `DEADLINE_EXCEEDED` instead of sending it.
//!
//! # Receiving: exactly the grammar
//!
//! [`parse_timeout`] and [`GrpcTimeout`]'s `FromStr` accept 1 to 8 ASCII digits followed by
//! one unit letter, nothing else: no sign, no spaces, no decimal point, no zero; each
//! rejection is a [`GrpcTimeoutError`] naming the problem. They never panic, whatever the
//! input.
//!
//! [`with_grpc_timeout`] (or [`Timer::grpc_timeout_source`]) makes the server's deadline
//! node: deadline = now + the parsed timeout, under a parent whose own earlier deadline still
//! wins. This is the one lenient step: a zero value (`0n`, `0S`, …), which the grammar excludes
//! but grpc-java, tonic and grpc-go send for a deadline that has already passed, gives a node
//! that is cancelled at once with [`Reason::DeadlineExceeded`] rather than an error, so a
//! caller that treats errors as "no deadline" cannot turn "no time left" into "all the time
//! in the world".
//!
//! The timeout is relative and the time the request spent in transit is unknown to the
//! receiver, so the server's deadline can be later than the client's by that transit time,
//! never by more (the spec's design; servers that want a margin can subtract one).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cutoff::{CancelSource, Parent, Reason};
//! use cutoff_timer::grpc::{self, GrpcTimeout};
//! use cutoff_timer::{DeadlineExt, with_timeout};
//!
//! // The format: rounded down, in the coarsest exact unit.
//! let t = GrpcTimeout::from_duration(Duration::from_nanos(1_234_567_891)).unwrap();
//! assert_eq!(t.to_string(), "1234567u"); // 891 ns dropped: never longer
//! assert_eq!(grpc::encode_timeout(Duration::from_millis(1500)).as_deref(), Some("1500m"));
//! assert_eq!(grpc::encode_timeout(Duration::from_secs(120)).as_deref(), Some("2M"));
//! assert_eq!(grpc::encode_timeout(Duration::ZERO), None); // expired: do not send
//! assert_eq!(grpc::parse_timeout("250m"), Ok(Duration::from_millis(250)));
//! assert!(grpc::parse_timeout("-5S").is_err());
//!
//! // Client: a request with 200 ms to live puts its remaining time into the header.
//! let request = with_timeout(Parent::Root, Duration::from_millis(200));
//! let header = grpc::grpc_timeout(&request)
//!     .expect("not expired yet")
//!     .expect("has a deadline")
//!     .to_string();
//! assert!(grpc::parse_timeout(&header).unwrap() <= Duration::from_millis(200));
//!
//! // Server: the header becomes a deadline node under the connection.
//! let connection = CancelSource::new();
//! let call = grpc::with_grpc_timeout(&connection, &header).expect("a valid grpc-timeout");
//! assert!(call.deadline().is_some());
//! assert_eq!(call.wait(), Reason::DeadlineExceeded); // about 200 ms later
//! assert!(!connection.is_cancelled());
//! ```
//!
//! # Compared with other implementations
//!
//! * grpc-go rounds **up** to a whole unit (`100000001n` does not fit, so 100,000,001 ns goes
//!   out as `100001u`, 999 ns longer) and sends `0S` (older versions `0n`) for a passed
//!   deadline; the gRPC C core rounds up to three significant figures and sends `1n`.
//! * grpc-java and tonic truncate, as here, but stop at the finest unit that fits, which
//!   between seconds and minutes (and minutes and hours) is not always the longest
//!   expressible timeout: 10⁸ s goes out as `1666666M`, 39 s shorter than `99999999S`. They
//!   send `0n` for zero; tonic panics on durations above 99,999,999 hours.
//! * On parsing, grpc-go and grpc-java use their languages' integer parsers, which accept a
//!   sign (`-5S`, `+5S`), and tonic uses Rust's `u64::from_str`, which accepts `+5S`; an older
//!   C core skips spaces and reads values over 10⁹ as "no deadline". All of them accept zero.
//!
//! [gRPC over HTTP/2]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md
#![deny(unsafe_code)]

use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use cutoff::{CancelSource, NodeView, Parent, Reason};

use crate::{Elapsed, Timer};

/// The header's name: `grpc-timeout`.
pub const HEADER: &str = "grpc-timeout";

/// A `grpc-timeout` unit.
///
/// The variants are ordered from the finest to the coarsest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeoutUnit {
    /// `n`
    Nanoseconds,
    /// `u`
    Microseconds,
    /// `m`
    Milliseconds,
    /// `S`
    Seconds,
    /// `M`
    Minutes,
    /// `H`
    Hours,
}

impl TimeoutUnit {
    /// Every unit, finest first.
    pub const ALL: [TimeoutUnit; 6] = [
        TimeoutUnit::Nanoseconds,
        TimeoutUnit::Microseconds,
        TimeoutUnit::Milliseconds,
        TimeoutUnit::Seconds,
        TimeoutUnit::Minutes,
        TimeoutUnit::Hours,
    ];

    /// The unit's letter in the header (`H M S m u n`).
    pub const fn symbol(self) -> char {
        match self {
            TimeoutUnit::Nanoseconds => 'n',
            TimeoutUnit::Microseconds => 'u',
            TimeoutUnit::Milliseconds => 'm',
            TimeoutUnit::Seconds => 'S',
            TimeoutUnit::Minutes => 'M',
            TimeoutUnit::Hours => 'H',
        }
    }

    /// The unit with this letter (case matters: `m` is milliseconds, `M` minutes).
    pub const fn from_symbol(symbol: char) -> Option<TimeoutUnit> {
        match symbol {
            'n' => Some(TimeoutUnit::Nanoseconds),
            'u' => Some(TimeoutUnit::Microseconds),
            'm' => Some(TimeoutUnit::Milliseconds),
            'S' => Some(TimeoutUnit::Seconds),
            'M' => Some(TimeoutUnit::Minutes),
            'H' => Some(TimeoutUnit::Hours),
            _ => None,
        }
    }

    /// The unit's length in nanoseconds.
    pub const fn nanos(self) -> u64 {
        match self {
            TimeoutUnit::Nanoseconds => 1,
            TimeoutUnit::Microseconds => 1_000,
            TimeoutUnit::Milliseconds => 1_000_000,
            TimeoutUnit::Seconds => 1_000_000_000,
            TimeoutUnit::Minutes => 60 * 1_000_000_000,
            TimeoutUnit::Hours => 3_600 * 1_000_000_000,
        }
    }

    /// The unit's length.
    pub const fn duration(self) -> Duration {
        Duration::from_nanos(self.nanos())
    }
}

/// A valid `grpc-timeout` value: 1 to 99,999,999 of one [`TimeoutUnit`].
///
/// `Display` writes the header text (`"250m"`, at most 9 bytes, no allocation); `FromStr`
/// parses it exactly per the grammar (see [`parse_timeout`]). Equality compares the text:
/// `1S` and `1000m` are the same time but not equal values.
///
/// ```
/// use std::time::Duration;
/// use cutoff_timer::grpc::{GrpcTimeout, TimeoutUnit};
///
/// let t: GrpcTimeout = "90S".parse().unwrap();
/// assert_eq!((t.value(), t.unit()), (90, TimeoutUnit::Seconds));
/// assert_eq!(t.to_duration(), Duration::from_secs(90));
/// assert_eq!(GrpcTimeout::new(0, TimeoutUnit::Seconds), None); // must be positive
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GrpcTimeout {
    value: u32,
    unit: TimeoutUnit,
}

impl GrpcTimeout {
    /// The largest value: 8 digits.
    pub const MAX_VALUE: u32 = 99_999_999;

    /// The longest timeout the header can carry, `99999999H` (about 11,400 years).
    pub const MAX: GrpcTimeout = GrpcTimeout {
        value: Self::MAX_VALUE,
        unit: TimeoutUnit::Hours,
    };

    /// `value` of `unit`, or `None` unless `1 <= value <= 99_999_999`.
    pub const fn new(value: u32, unit: TimeoutUnit) -> Option<GrpcTimeout> {
        if value == 0 || value > Self::MAX_VALUE {
            None
        } else {
            Some(GrpcTimeout { value, unit })
        }
    }

    /// The longest timeout the header can express that is not longer than `remaining`
    /// (see the [module docs](self) for the rounding rule and its bound), or `None` if
    /// `remaining` is zero, which the grammar cannot express: the deadline has passed.
    ///
    /// Durations of [`GrpcTimeout::MAX`] or more give `GrpcTimeout::MAX`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cutoff_timer::grpc::GrpcTimeout;
    ///
    /// let enc = |d| GrpcTimeout::from_duration(d).map(|t| t.to_string());
    /// assert_eq!(enc(Duration::from_nanos(99_999_999)).as_deref(), Some("99999999n"));
    /// assert_eq!(enc(Duration::from_nanos(100_000_001)).as_deref(), Some("100m"));
    /// assert_eq!(enc(Duration::from_secs(3600)).as_deref(), Some("1H"));
    /// assert_eq!(enc(Duration::MAX).as_deref(), Some("99999999H"));
    /// assert_eq!(enc(Duration::ZERO), None);
    /// ```
    pub fn from_duration(remaining: Duration) -> Option<GrpcTimeout> {
        Self::from_nanos(remaining.as_nanos())
    }

    fn from_nanos(nanos: u128) -> Option<GrpcTimeout> {
        let max = u128::from(Self::MAX_VALUE);
        // In each unit, the longest timeout not above `nanos` is min(floor(nanos / unit),
        // MAX_VALUE) units; take the longest over all units. (The finest unit in which `nanos`
        // fits is not always it: 10^8 s is 1666666M but also 99999999S, 39 s more.)
        let best = TimeoutUnit::ALL
            .into_iter()
            .map(|u| {
                let unit = u128::from(u.nanos());
                (nanos / unit).min(max) * unit
            })
            .max()
            .unwrap_or(0);
        if best == 0 {
            return None;
        }
        // Name it in the coarsest unit that divides it (nanoseconds always do). The value fits:
        // the unit `best` came from divides it too and is not coarser.
        let unit = TimeoutUnit::ALL
            .into_iter()
            .rev()
            .find(|u| best % u128::from(u.nanos()) == 0)
            .unwrap_or(TimeoutUnit::Nanoseconds);
        let value = best / u128::from(unit.nanos());
        debug_assert!((1..=max).contains(&value), "{nanos} ns -> {value} {unit:?}");
        Self::new(u32::try_from(value).ok()?, unit)
    }

    /// The number of units (1 to 99,999,999).
    pub const fn value(self) -> u32 {
        self.value
    }

    /// The unit.
    pub const fn unit(self) -> TimeoutUnit {
        self.unit
    }

    /// The timeout as a [`Duration`] (exact: the longest, `99999999H`, is far below
    /// `Duration::MAX`).
    pub const fn to_duration(self) -> Duration {
        let v = self.value as u64;
        match self.unit {
            TimeoutUnit::Nanoseconds => Duration::from_nanos(v),
            TimeoutUnit::Microseconds => Duration::from_micros(v),
            TimeoutUnit::Milliseconds => Duration::from_millis(v),
            TimeoutUnit::Seconds => Duration::from_secs(v),
            TimeoutUnit::Minutes => Duration::from_secs(v * 60),
            TimeoutUnit::Hours => Duration::from_secs(v * 3_600),
        }
    }
}

impl fmt::Display for GrpcTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.value, self.unit.symbol())
    }
}

impl FromStr for GrpcTimeout {
    type Err = GrpcTimeoutError;

    /// Parses a header value exactly per the grammar; see [`parse_timeout`].
    fn from_str(text: &str) -> Result<GrpcTimeout, GrpcTimeoutError> {
        let Some((unit_at, last)) = text.char_indices().next_back() else {
            return Err(GrpcTimeoutError::Empty);
        };
        let unit = match TimeoutUnit::from_symbol(last) {
            Some(unit) => unit,
            None if last.is_ascii_digit() => return Err(GrpcTimeoutError::MissingUnit),
            None => return Err(GrpcTimeoutError::UnknownUnit(last)),
        };
        // `unit_at` starts a character, so this slice cannot panic.
        let digits = &text[..unit_at];
        if digits.is_empty() {
            return Err(GrpcTimeoutError::MissingValue);
        }
        if let Some((index, found)) = digits.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            return Err(GrpcTimeoutError::NotADigit { index, found });
        }
        if digits.len() > 8 {
            return Err(GrpcTimeoutError::TooManyDigits(digits.len()));
        }
        // At most 8 ASCII digits: no overflow.
        let value = digits
            .bytes()
            .fold(0u32, |v, b| v * 10 + u32::from(b - b'0'));
        GrpcTimeout::new(value, unit).ok_or(GrpcTimeoutError::Zero)
    }
}

impl From<GrpcTimeout> for Duration {
    fn from(timeout: GrpcTimeout) -> Duration {
        timeout.to_duration()
    }
}

/// Why a `grpc-timeout` value was rejected.
///
/// The grammar is 1 to 8 ASCII digits, a positive value, then one of `H M S m u n`. The
/// checks run from the end of the text: the unit first, then the digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrpcTimeoutError {
    /// The value is empty.
    Empty,
    /// The value ends in a digit: no unit (`"100"`).
    MissingUnit,
    /// A unit with no digits before it (`"S"`).
    MissingValue,
    /// The last character is not one of `H M S m u n` (`"5s"`, `"5ms"`, `"5S "`).
    UnknownUnit(char),
    /// More than 8 digits; the number of digits found (`"123456789S"` gives 9).
    TooManyDigits(usize),
    /// A character that is not an ASCII digit before the unit: a sign, a space, a decimal
    /// point, a non-ASCII digit (`"+5S"`, `"1.5S"`).
    NotADigit {
        /// Its byte offset in the value.
        index: usize,
        /// The character.
        found: char,
    },
    /// The digits are all zeros: the grammar asks for a positive integer.
    /// ([`with_grpc_timeout`] treats a zero value as a deadline that has already passed.)
    Zero,
}

impl fmt::Display for GrpcTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid grpc-timeout: ")?;
        match self {
            GrpcTimeoutError::Empty => f.write_str("empty value"),
            GrpcTimeoutError::MissingUnit => {
                f.write_str("no unit after the digits (expected one of H M S m u n)")
            }
            GrpcTimeoutError::MissingValue => f.write_str("no digits before the unit"),
            GrpcTimeoutError::UnknownUnit(c) => {
                write!(f, "unknown unit {c:?} (expected one of H M S m u n)")
            }
            GrpcTimeoutError::TooManyDigits(n) => write!(f, "{n} digits (at most 8)"),
            GrpcTimeoutError::NotADigit { index, found } => {
                write!(f, "{found:?} at byte {index} is not an ASCII digit")
            }
            GrpcTimeoutError::Zero => f.write_str("zero (the value must be positive)"),
        }
    }
}

impl core::error::Error for GrpcTimeoutError {}

/// The `grpc-timeout` text for `remaining`: the longest expressible timeout not longer than
/// it, or `None` if `remaining` is zero (the deadline has passed: do not send the call).
/// Shorthand for [`GrpcTimeout::from_duration`] and `to_string`.
///
/// ```
/// use std::time::Duration;
/// use cutoff_timer::grpc::encode_timeout;
///
/// assert_eq!(encode_timeout(Duration::from_nanos(123_456_789)).as_deref(), Some("123456u"));
/// ```
pub fn encode_timeout(remaining: Duration) -> Option<String> {
    GrpcTimeout::from_duration(remaining).map(|t| t.to_string())
}

/// Parses a `grpc-timeout` value exactly per the grammar: 1 to 8 ASCII digits with a
/// positive value, then one unit letter.
///
/// # Errors
///
/// A [`GrpcTimeoutError`] naming the first problem found, reading from the end: an empty
/// value, a missing or unknown unit, no digits, a character that is not an ASCII digit (a
/// sign, a space, `.`), more than 8 digits, or zero. Never panics, whatever the input.
///
/// ```
/// use std::time::Duration;
/// use cutoff_timer::grpc::{GrpcTimeoutError, parse_timeout};
///
/// assert_eq!(parse_timeout("3H"), Ok(Duration::from_secs(3 * 3600)));
/// assert_eq!(parse_timeout("000000250m"), Err(GrpcTimeoutError::TooManyDigits(9)));
/// assert_eq!(parse_timeout("5s"), Err(GrpcTimeoutError::UnknownUnit('s')));
/// assert_eq!(
///     parse_timeout("+5S"),
///     Err(GrpcTimeoutError::NotADigit { index: 0, found: '+' })
/// );
/// ```
pub fn parse_timeout(text: &str) -> Result<Duration, GrpcTimeoutError> {
    text.parse::<GrpcTimeout>().map(GrpcTimeout::to_duration)
}

impl Timer {
    /// The `grpc-timeout` for a call made under `node`: the time left until `node`'s
    /// deadline ([`NodeView::deadline_raw`], the earliest on its path) on this timer's clock,
    /// rounded down as [`GrpcTimeout::from_duration`] does.
    ///
    /// # Returns
    ///
    /// * `Ok(Some(timeout))`: send it as the `grpc-timeout` header.
    /// * `Ok(None)`: `node` has no deadline; send no header (the server assumes none).
    /// * `Err(`[`Elapsed`]`)`: the deadline has passed, or `node` was cancelled with
    ///   [`Reason::DeadlineExceeded`] (also when it was born cancelled under an expired
    ///   deadline and so reports none, docs/DESIGN.md "Known limitations"). The grammar
    ///   cannot say "no time left": fail the call locally with `DEADLINE_EXCEEDED`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use cutoff::Parent;
    /// use cutoff_timer::clock::ManualClock;
    /// use cutoff_timer::{Elapsed, Timer};
    ///
    /// let clock = Arc::new(ManualClock::new());
    /// let timer = Timer::manual(clock.clone());
    /// let call = timer.timeout_source(Parent::Root, Duration::from_secs(2));
    /// assert_eq!(timer.grpc_timeout(&call).unwrap().unwrap().to_string(), "2S");
    /// clock.advance(Duration::from_nanos(1));
    /// assert_eq!(timer.grpc_timeout(&call).unwrap().unwrap().to_string(), "1999999u");
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(timer.grpc_timeout(&call), Err(Elapsed));
    /// ```
    pub fn grpc_timeout(&self, node: &NodeView) -> Result<Option<GrpcTimeout>, Elapsed> {
        if matches!(node.reason(), Some(Reason::DeadlineExceeded)) {
            return Err(Elapsed);
        }
        let Some(deadline) = node.deadline_raw() else {
            return Ok(None);
        };
        let remaining = deadline.saturating_sub(self.inner().now());
        GrpcTimeout::from_nanos(u128::from(remaining))
            .map(Some)
            .ok_or(Elapsed)
    }

    /// A deadline node under `parent` for a call that arrived with the `grpc-timeout` value
    /// `header`: its deadline is this timer's now plus the parsed timeout (or the parent's
    /// deadline, if that is earlier), and it cancels itself with
    /// [`Reason::DeadlineExceeded`] then, as [`Timer::timeout_source`] does.
    ///
    /// A zero value (`0n`, `0S`, …), outside the grammar but sent by grpc-java, tonic and
    /// grpc-go for a deadline that has already passed, gives a node cancelled at once with
    /// `DeadlineExceeded`.
    ///
    /// # Errors
    ///
    /// Any other value [`parse_timeout`] rejects; no node is made. (A server usually fails
    /// the call then; treating a malformed timeout as "no deadline" is what tonic does.)
    pub fn grpc_timeout_source<'a>(
        &self,
        parent: impl Into<Parent<'a>>,
        header: &str,
    ) -> Result<CancelSource, GrpcTimeoutError> {
        let timeout = match parse_timeout(header) {
            Ok(timeout) => timeout,
            Err(GrpcTimeoutError::Zero) => Duration::ZERO,
            Err(e) => return Err(e),
        };
        Ok(self.timeout_source(parent, timeout))
    }
}

/// [`Timer::grpc_timeout`] on the global timer: the `grpc-timeout` for a call made under
/// `node`; `Ok(None)` without a deadline, `Err(Elapsed)` once it has passed.
pub fn grpc_timeout(node: &NodeView) -> Result<Option<GrpcTimeout>, Elapsed> {
    Timer::global().grpc_timeout(node)
}

/// [`Timer::grpc_timeout_source`] on the global timer: a deadline node under `parent` for a
/// call that arrived with the `grpc-timeout` value `header`.
///
/// # Errors
///
/// A malformed `header` (see [`parse_timeout`]; zero is accepted as already expired).
///
/// ```
/// use cutoff::{CancelSource, Reason};
/// use cutoff_timer::grpc::{GrpcTimeoutError, with_grpc_timeout};
///
/// let connection = CancelSource::new();
/// let call = with_grpc_timeout(&connection, "2m").unwrap();
/// assert_eq!(call.wait(), Reason::DeadlineExceeded);
/// assert!(with_grpc_timeout(&connection, "0n").unwrap().is_cancelled());
/// assert_eq!(
///     with_grpc_timeout(&connection, "2 m").err(),
///     Some(GrpcTimeoutError::NotADigit { index: 1, found: ' ' })
/// );
/// ```
pub fn with_grpc_timeout<'a>(
    parent: impl Into<Parent<'a>>,
    header: &str,
) -> Result<CancelSource, GrpcTimeoutError> {
    Timer::global().grpc_timeout_source(parent, header)
}
