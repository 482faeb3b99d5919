//! Black-box tests of `grpc-timeout` encoding, parsing and deadline propagation: tables of
//! every unit and every error, properties of the round trip, and node-level behaviour on a
//! manual clock (deterministic, no sleeps except the global-timer smoke test).
#![allow(clippy::std_instead_of_core)]

use std::sync::Arc;
use std::time::Duration;

use cutoff::{CancelSource, Parent, Reason};
use cutoff_timer::clock::ManualClock;
use cutoff_timer::grpc::{
    self, GrpcTimeout, GrpcTimeoutError, TimeoutUnit, encode_timeout, parse_timeout,
};
use cutoff_timer::{DeadlineExt, Elapsed, Timer};
use proptest::prelude::*;

const NS: Duration = Duration::from_nanos(1);
const US: Duration = Duration::from_micros(1);
const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const H: Duration = Duration::from_secs(3600);
const MAX_VALUE: u32 = 99_999_999;

fn manual() -> (Arc<ManualClock>, Timer) {
    let clock = Arc::new(ManualClock::new());
    let timer = Timer::manual(clock.clone());
    (clock, timer)
}

fn enc(d: Duration) -> String {
    encode_timeout(d).unwrap_or_else(|| panic!("{d:?} is not zero"))
}

// ---------------------------------------------------------------------------------------
// Encoding tables
// ---------------------------------------------------------------------------------------

#[test]
fn encodes_every_unit() {
    let cases: &[(Duration, &str)] = &[
        (NS, "1n"),
        (999 * NS, "999n"),
        (US, "1u"),
        (1_001 * NS, "1001n"),
        (MS, "1m"),
        (1_500 * US, "1500u"),
        (S, "1S"),
        (1_500 * MS, "1500m"),
        (MIN, "1M"),
        (90 * S, "90S"),
        (H, "1H"),
        (90 * MIN, "90M"),
        (3 * H, "3H"),
        (25 * H, "25H"),
    ];
    for &(d, text) in cases {
        assert_eq!(enc(d), text, "{d:?}");
        assert_eq!(parse_timeout(text), Ok(d), "{text}");
    }
}

#[test]
fn rounds_down_at_every_unit_boundary() {
    let cases: &[(Duration, &str)] = &[
        // Exact below 100 ms.
        (Duration::from_nanos(99_999_999), "99999999n"),
        (Duration::from_nanos(12_345_678), "12345678n"),
        // 9 digits of ns: microseconds, rounded down.
        (Duration::from_nanos(100_000_000), "100m"),
        (Duration::from_nanos(100_000_001), "100m"),
        (Duration::from_nanos(100_000_999), "100m"),
        (Duration::from_nanos(100_001_000), "100001u"),
        (Duration::from_nanos(123_456_789), "123456u"),
        (Duration::from_nanos(99_999_999_999), "99999999u"),
        // 9 digits of µs: milliseconds.
        (Duration::from_micros(100_000_001), "100S"),
        (Duration::from_nanos(100_000_999_999), "100S"),
        (Duration::from_nanos(100_001_999_999), "100001m"),
        (
            Duration::from_millis(99_999_999) + 999_999 * NS,
            "99999999m",
        ),
        // 9 digits of ms: seconds.
        (Duration::from_millis(100_000_001), "100000S"),
        (
            Duration::from_secs(99_999_999) + 999_999_999 * NS,
            "99999999S",
        ),
        // Seconds to minutes: 99999999S is longer than the whole minutes below 10^8 s.
        (Duration::from_secs(100_000_000), "99999999S"),
        (Duration::from_secs(100_000_019), "99999999S"),
        (Duration::from_secs(100_000_020), "1666667M"),
        (Duration::from_secs(100_000_079), "1666667M"),
        (Duration::from_secs(100_000_080), "1666668M"),
        (Duration::from_secs(99_999_999 * 60 + 59), "99999999M"),
        // Minutes to hours, likewise.
        (Duration::from_secs(100_000_000 * 60), "99999999M"),
        (Duration::from_secs(100_000_020 * 60), "1666667H"),
        // Saturation.
        (Duration::from_secs(99_999_999 * 3600), "99999999H"),
        (Duration::from_secs(99_999_999 * 3600 + 3599), "99999999H"),
        (Duration::from_secs(100_000_000 * 3600), "99999999H"),
        (Duration::from_secs(u64::MAX), "99999999H"),
        (Duration::MAX, "99999999H"),
    ];
    for &(d, text) in cases {
        let got = enc(d);
        assert_eq!(got, text, "{d:?}");
        assert!(parse_timeout(&got).unwrap() <= d, "{d:?} -> {got}");
    }
}

#[test]
fn zero_is_not_encoded() {
    assert_eq!(encode_timeout(Duration::ZERO), None);
    assert_eq!(GrpcTimeout::from_duration(Duration::ZERO), None);
    assert_eq!(enc(NS), "1n", "the smallest positive duration is sent");
}

#[test]
fn value_type_accessors_and_bounds() {
    let t = GrpcTimeout::new(42, TimeoutUnit::Minutes).unwrap();
    assert_eq!((t.value(), t.unit()), (42, TimeoutUnit::Minutes));
    assert_eq!(t.to_string(), "42M");
    assert_eq!(Duration::from(t), 42 * MIN);
    assert_eq!(GrpcTimeout::new(0, TimeoutUnit::Seconds), None);
    assert_eq!(GrpcTimeout::new(MAX_VALUE + 1, TimeoutUnit::Seconds), None);
    assert_eq!(
        GrpcTimeout::new(MAX_VALUE, TimeoutUnit::Hours),
        Some(GrpcTimeout::MAX)
    );
    assert_eq!(GrpcTimeout::MAX.to_string(), "99999999H");
    assert_eq!(GrpcTimeout::MAX.to_duration(), 99_999_999 * H);
    assert_eq!(grpc::HEADER, "grpc-timeout");
    for (u, (sym, len)) in TimeoutUnit::ALL.into_iter().zip([
        ('n', NS),
        ('u', US),
        ('m', MS),
        ('S', S),
        ('M', MIN),
        ('H', H),
    ]) {
        assert_eq!(u.symbol(), sym);
        assert_eq!(TimeoutUnit::from_symbol(sym), Some(u));
        assert_eq!(u.duration(), len);
        assert_eq!(u128::from(u.nanos()), len.as_nanos());
    }
    assert!(TimeoutUnit::ALL.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(TimeoutUnit::from_symbol('s'), None);
    assert_eq!(TimeoutUnit::from_symbol('h'), None);
}

// ---------------------------------------------------------------------------------------
// Parsing tables
// ---------------------------------------------------------------------------------------

#[test]
fn parses_every_unit() {
    let cases: &[(&str, Duration)] = &[
        ("1n", NS),
        ("1u", US),
        ("1m", MS),
        ("1S", S),
        ("1M", MIN),
        ("1H", H),
        ("82n", 82 * NS),
        ("2u", 2 * US),
        ("13m", 13 * MS),
        ("42S", 42 * S),
        ("3H", 3 * H),
        ("99999999n", Duration::from_nanos(99_999_999)),
        ("99999999H", 99_999_999 * H),
        // Leading zeros count towards the 8 digits but are allowed.
        ("007m", 7 * MS),
        ("00000001S", S),
    ];
    for &(text, d) in cases {
        assert_eq!(parse_timeout(text), Ok(d), "{text}");
        let t: GrpcTimeout = text.parse().unwrap();
        assert_eq!(t.to_duration(), d);
        assert_eq!(t.to_string(), text.trim_start_matches('0'), "{text}");
    }
}

#[test]
fn rejects_every_malformed_value() {
    use GrpcTimeoutError::*;
    let not_digit = |index, found| NotADigit { index, found };
    let cases: &[(&str, GrpcTimeoutError)] = &[
        ("", Empty),
        ("1", MissingUnit),
        ("100", MissingUnit),
        ("1234567890", MissingUnit),
        ("S", MissingValue),
        ("n", MissingValue),
        ("5s", UnknownUnit('s')),
        ("5h", UnknownUnit('h')),
        ("5ms", UnknownUnit('s')),
        ("5x", UnknownUnit('x')),
        ("5S ", UnknownUnit(' ')),
        ("5S\n", UnknownUnit('\n')),
        ("5µ", UnknownUnit('µ')),
        ("5\u{1F600}", UnknownUnit('\u{1F600}')),
        ("s", UnknownUnit('s')),
        ("123456789S", TooManyDigits(9)),
        ("000000001S", TooManyDigits(9)),
        ("000000000n", TooManyDigits(9)),
        ("99999999999999999999999H", TooManyDigits(23)),
        ("+5S", not_digit(0, '+')),
        ("-5S", not_digit(0, '-')),
        ("-0S", not_digit(0, '-')),
        (" 5S", not_digit(0, ' ')),
        ("5 S", not_digit(1, ' ')),
        ("1.5S", not_digit(1, '.')),
        ("1_000m", not_digit(1, '_')),
        ("0x10S", not_digit(1, 'x')),
        ("1e3m", not_digit(1, 'e')),
        ("SS", not_digit(0, 'S')),
        ("\u{FF11}S", not_digit(0, '\u{FF11}')), // fullwidth digit one
        ("\u{0661}S", not_digit(0, '\u{0661}')), // Arabic-Indic digit one
        ("5µS", not_digit(1, 'µ')),
        ("123456789+S", not_digit(9, '+')),
        ("0S", Zero),
        ("0n", Zero),
        ("00000000H", Zero),
    ];
    for &(text, err) in cases {
        assert_eq!(parse_timeout(text), Err(err), "{text:?}");
        assert_eq!(text.parse::<GrpcTimeout>(), Err(err), "{text:?}");
    }
}

#[test]
fn errors_name_the_problem() {
    use GrpcTimeoutError::*;
    let cases: &[(GrpcTimeoutError, &str)] = &[
        (Empty, "empty"),
        (MissingUnit, "no unit"),
        (MissingValue, "no digits"),
        (UnknownUnit('s'), "unknown unit 's'"),
        (TooManyDigits(9), "9 digits (at most 8)"),
        (
            NotADigit {
                index: 0,
                found: '+',
            },
            "'+' at byte 0",
        ),
        (Zero, "zero"),
    ];
    for &(err, needle) in cases {
        let msg = err.to_string();
        assert!(msg.starts_with("invalid grpc-timeout: "), "{msg}");
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        let _: &dyn core::error::Error = &err;
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// The grammar, written independently of the parser: 1 to 8 ASCII digits, not all zeros,
/// then one unit letter. Returns the duration it denotes.
fn model(text: &str) -> Option<Duration> {
    let bytes = text.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    let unit = match unit {
        b'n' => NS,
        b'u' => US,
        b'm' => MS,
        b'S' => S,
        b'M' => MIN,
        b'H' => H,
        _ => return None,
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (value > 0).then(|| unit * value)
}

/// What the encoder output must look like: no leading zero, 1 to 8 digits, one unit.
fn canonical(text: &str) -> bool {
    let b = text.as_bytes();
    (2..=9).contains(&b.len())
        && b[0] != b'0'
        && b[..b.len() - 1].iter().all(u8::is_ascii_digit)
        && b"numSMH".contains(&b[b.len() - 1])
}

/// The finest unit in which `d` fits into 8 digits (the bound on the loss), or `None` when
/// not even hours fit.
fn finest_fit(d: Duration) -> Option<Duration> {
    [NS, US, MS, S, MIN, H]
        .into_iter()
        .find(|u| d.as_nanos() / u.as_nanos() <= u128::from(MAX_VALUE))
}

/// Durations with weight near every unit's 8-digit boundary, plus anything at all.
fn duration() -> impl Strategy<Value = Duration> {
    let value = prop_oneof![99_999_900u64..100_000_100, 99_000_000u64..101_000_000];
    let near = (0usize..6, value, 0u64..3_600_000_000_000).prop_map(|(unit, value, extra)| {
        let u = [NS, US, MS, S, MIN, H][unit];
        let unit_nanos = u64::try_from(u.as_nanos()).unwrap();
        let extra = Duration::from_nanos(extra % unit_nanos);
        u.checked_mul(u32::try_from(value).unwrap_or(u32::MAX))
            .and_then(|d| d.checked_add(extra))
            .unwrap_or(Duration::MAX)
    });
    prop_oneof![
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        any::<u64>().prop_map(Duration::from_nanos),
        (0u64..200_000_000).prop_map(Duration::from_nanos),
        (0u64..400_000_000_000).prop_map(Duration::from_micros),
        near,
    ]
}

/// Strings close to valid values: digits, unit letters, near-miss letters, signs, spaces,
/// dots and non-ASCII digits and letters, 0 to 12 characters.
fn near_miss() -> impl Strategy<Value = String> {
    let alphabet = prop::sample::select(vec![
        '0',
        '1',
        '5',
        '9',
        'n',
        'u',
        'm',
        'S',
        'M',
        'H',
        's',
        'h',
        'U',
        'N',
        '+',
        '-',
        ' ',
        '.',
        '\t',
        'µ',
        '\u{FF11}',
        '\u{0661}',
        'é',
        '\u{1F600}',
        '\0',
    ]);
    prop::collection::vec(alphabet, 0..12).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// parse(encode(d)) <= d; the loss is below the finest unit in which d fits into 8 digits
    /// and below d / 100_000 (exact under 100 ms); the text is canonical; and no expressible
    /// timeout is longer than the one chosen while still <= d.
    #[test]
    fn round_trip_never_longer(d in duration()) {
        let Some(t) = GrpcTimeout::from_duration(d) else {
            prop_assert_eq!(d, Duration::ZERO);
            return Ok(());
        };
        let text = t.to_string();
        prop_assert!(canonical(&text), "{:?} -> {}", d, text);
        let back = parse_timeout(&text).unwrap();
        prop_assert_eq!(back, t.to_duration());
        prop_assert_eq!(text.parse::<GrpcTimeout>(), Ok(t));
        prop_assert!(back <= d, "{:?} -> {} = {:?}", d, text, back);
        let loss = d - back;
        match finest_fit(d) {
            Some(unit) => {
                prop_assert!(loss < unit, "{:?} -> {}: loss {:?} >= {:?}", d, text, loss, unit);
                if d < 100 * MS {
                    prop_assert_eq!(loss, Duration::ZERO);
                } else {
                    prop_assert!(loss.as_nanos() * 100_000 < d.as_nanos(), "{:?} -> {}", d, text);
                }
            }
            None => prop_assert_eq!(t, GrpcTimeout::MAX),
        }
        for u in [NS, US, MS, S, MIN, H] {
            let v = (d.as_nanos() / u.as_nanos()).min(u128::from(MAX_VALUE));
            prop_assert!(v * u.as_nanos() <= back.as_nanos(), "{:?}: {} of {:?} is closer", d, v, u);
        }
    }

    /// Parsing any string agrees with the grammar model, never panics, and what parses
    /// prints back to a value that parses to the same time.
    #[test]
    fn parse_matches_the_grammar(text in prop_oneof![any::<String>(), near_miss(), "[0-9]{0,10}[numSMHsh]?"]) {
        let got = parse_timeout(&text);
        match model(&text) {
            Some(d) => prop_assert_eq!(got, Ok(d), "{:?}", text),
            None => prop_assert!(got.is_err(), "{:?} parsed as {:?}", text, got),
        }
        if let Ok(t) = text.parse::<GrpcTimeout>() {
            prop_assert_eq!(parse_timeout(&t.to_string()), Ok(t.to_duration()));
        }
    }

    /// Arbitrary bytes, decoded lossily (replacement characters at odd places), never panic.
    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_timeout(&text);
        let _ = Timer::manual(Arc::new(ManualClock::new())).grpc_timeout_source(Parent::Root, &text);
    }
}

// ---------------------------------------------------------------------------------------
// Nodes, on a manual clock
// ---------------------------------------------------------------------------------------

#[test]
fn encodes_a_nodes_remaining_time() {
    let (clock, timer) = manual();
    let call = timer.timeout_source(Parent::Root, 1_500 * MS);
    assert_eq!(
        timer.grpc_timeout(&call).unwrap().unwrap().to_string(),
        "1500m"
    );
    clock.advance(NS);
    let t = timer.grpc_timeout(&call).unwrap().unwrap();
    assert_eq!(t.to_string(), "1499999u", "1,499,999,999 ns rounded down");
    clock.advance(1_400 * MS);
    assert_eq!(
        timer.grpc_timeout(&call).unwrap().unwrap().to_string(),
        "99999999n"
    );
    clock.advance(99_999_998 * NS);
    assert_eq!(
        timer.grpc_timeout(&call).unwrap().unwrap().to_string(),
        "1n"
    );
    // The node's own children carry its deadline too.
    let child = call.child();
    assert_eq!(
        timer.grpc_timeout(&child).unwrap().unwrap().to_string(),
        "1n"
    );
}

#[test]
fn a_node_without_deadline_sends_no_header() {
    let (_clock, timer) = manual();
    let plain = CancelSource::new();
    assert_eq!(timer.grpc_timeout(&plain), Ok(None));
    assert_eq!(timer.grpc_timeout(&plain.child()), Ok(None));
    // Cancelled for another reason, still no deadline: the caller's business.
    plain.cancel_with(Reason::Shutdown);
    assert_eq!(timer.grpc_timeout(&plain), Ok(None));
}

#[test]
fn an_expired_deadline_is_elapsed_not_zero() {
    let (clock, timer) = manual();
    let call = timer.timeout_source(Parent::Root, 10 * MS);
    let child = call.child();
    clock.advance(10 * MS);
    // Due but not yet fired by the driver: the clock says there is no time left.
    assert!(!call.is_cancelled());
    assert_eq!(timer.grpc_timeout(&call), Err(Elapsed));
    assert_eq!(timer.grpc_timeout(&child), Err(Elapsed));
    assert_eq!(timer.turn(), 1);
    assert_eq!(timer.grpc_timeout(&call), Err(Elapsed));
    // Born cancelled under the expired deadline: it reports no deadline (DESIGN, known
    // limitations) but must not be sent without a timeout.
    let late = call.child();
    assert_eq!(late.reason(), Some(Reason::DeadlineExceeded));
    assert_eq!(timer.grpc_timeout(&late), Err(Elapsed));
    // A deadline already in the past at creation.
    let past = timer.deadline_source(Parent::Root, timer.now() - MS);
    assert_eq!(timer.grpc_timeout(&past), Err(Elapsed));
}

#[test]
fn a_parsed_timeout_becomes_a_deadline_node() {
    let (clock, timer) = manual();
    clock.advance(5 * S);
    let connection = CancelSource::new();
    let call = timer.grpc_timeout_source(&connection, "250m").unwrap();
    assert_eq!(call.deadline(), Some(timer.now() + 250 * MS));
    clock.advance(250 * MS - NS);
    assert_eq!(timer.turn(), 0);
    assert!(!call.is_cancelled());
    clock.advance(NS);
    assert_eq!(timer.turn(), 1);
    assert_eq!(call.reason(), Some(Reason::DeadlineExceeded));
    assert!(!connection.is_cancelled());
}

#[test]
fn a_parsed_deadline_is_never_later_than_the_parents() {
    let (_clock, timer) = manual();
    let request = timer.timeout_source(Parent::Root, 100 * MS);
    let call = timer.grpc_timeout_source(&request, "1S").unwrap();
    assert_eq!(call.deadline(), request.deadline());
    let shorter = timer.grpc_timeout_source(&request, "10m").unwrap();
    assert_eq!(shorter.deadline(), Some(timer.now() + 10 * MS));
}

#[test]
fn a_zero_timeout_is_already_expired() {
    let (_clock, timer) = manual();
    for text in ["0n", "0S", "00000000H"] {
        let call = timer.grpc_timeout_source(Parent::Root, text).unwrap();
        assert_eq!(call.reason(), Some(Reason::DeadlineExceeded), "{text}");
    }
}

#[test]
fn a_malformed_timeout_makes_no_node() {
    let (_clock, timer) = manual();
    let connection = CancelSource::new();
    for (text, err) in [
        ("", GrpcTimeoutError::Empty),
        (
            "-1S",
            GrpcTimeoutError::NotADigit {
                index: 0,
                found: '-',
            },
        ),
        ("123456789m", GrpcTimeoutError::TooManyDigits(9)),
        ("1s", GrpcTimeoutError::UnknownUnit('s')),
    ] {
        assert_eq!(
            timer.grpc_timeout_source(&connection, text).err(),
            Some(err)
        );
    }
    assert!(!connection.has_children());
}

/// Client encodes its remaining time, server parses it on the same clock: the server's
/// deadline is never later than the client's and earlier by less than the rounding loss.
#[test]
fn end_to_end_never_later_than_the_sender() {
    let (clock, timer) = manual();
    for (start, timeout) in [
        (0, 1_500 * MS),
        (7, 123_456_789 * NS),
        (3, 100 * S + NS),
        (1, 2 * H + 59 * MIN + 59 * S + 999 * MS),
        (11, 400 * 24 * H),
    ] {
        clock.advance(Duration::from_nanos(start));
        let client = timer.timeout_source(Parent::Root, timeout);
        clock.advance(Duration::from_nanos(start * 13));
        let header = timer.grpc_timeout(&client).unwrap().unwrap().to_string();
        let server = timer
            .grpc_timeout_source(&CancelSource::new(), &header)
            .unwrap();
        let (c, s) = (client.deadline().unwrap(), server.deadline().unwrap());
        assert!(s <= c, "{header}: server {s:?} after client {c:?}");
        let unit = finest_fit(c - timer.now()).unwrap();
        assert!(c - s < unit, "{header}: lost {:?}", c - s);
    }
}

/// The global-timer shorthands, in real time.
#[test]
fn global_timer_shorthands() {
    let connection = CancelSource::new();
    let call = grpc::with_grpc_timeout(&connection, "2m").unwrap();
    let t = grpc::grpc_timeout(&call).unwrap().unwrap();
    assert!(t.to_duration() <= 2 * MS);
    assert_eq!(call.wait(), Reason::DeadlineExceeded);
    assert_eq!(grpc::grpc_timeout(&call), Err(Elapsed));
    assert_eq!(grpc::grpc_timeout(&connection), Ok(None));
    assert_eq!(
        grpc::with_grpc_timeout(&connection, "2").err(),
        Some(GrpcTimeoutError::MissingUnit)
    );
}
