use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;

const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
];

const NS: SignedDuration = SignedDuration::from_nanos(1);

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// The instant of a local civil time (`2026-06-15T10:00`) in `zone`.
fn local(zone: &str, civil: &str) -> Timestamp {
    let dt: DateTime = civil.parse().expect("civil datetime");
    dt.to_zoned(TimeZone::get(zone).expect("zone"))
        .expect("zoned")
        .timestamp()
}

fn calendar(period: Period, zone: &str) -> WindowSpec {
    WindowSpec::new(period, WindowType::Calendar, zone).expect("spec")
}

fn rolling(period: Period) -> WindowSpec {
    WindowSpec::new(period, WindowType::Rolling, "UTC").expect("spec")
}

fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

/// `boundary` starts a window and the instant 1 ns before it ends the
/// previous one.
fn assert_boundary(spec: &WindowSpec, boundary: Timestamp) {
    let new = spec.current(boundary);
    let old = spec.current(boundary - NS);
    assert_eq!(new.start, boundary, "{spec:?} at {boundary}");
    assert_eq!(old.end, boundary, "{spec:?} 1ns before {boundary}");
    assert_ne!(spec.key(boundary), spec.key(boundary - NS));
}

#[test]
fn calendar_hour_in_each_zone() {
    for zone in ZONES {
        let spec = calendar(Period::Hourly, zone);
        let w = spec.current(local(zone, "2026-06-15T10:17:42"));
        assert_eq!(w.start, local(zone, "2026-06-15T10:00"), "{zone}");
        assert_eq!(w.end, local(zone, "2026-06-15T11:00"), "{zone}");
        assert_eq!(w.length(), hours(1), "{zone}");
        assert_boundary(&spec, local(zone, "2026-06-15T11:00"));
    }
}

#[test]
fn calendar_hour_in_kolkata_turns_at_half_past_utc() {
    let w = calendar(Period::Hourly, "Asia/Kolkata").current(ts("2026-06-15T05:10:00Z"));
    assert_eq!(w.start, ts("2026-06-15T04:30:00Z"));
    assert_eq!(w.end, ts("2026-06-15T05:30:00Z"));
}

#[test]
fn calendar_day_midnight_in_each_zone() {
    for zone in ZONES {
        let spec = calendar(Period::Daily, zone);
        let w = spec.current(local(zone, "2026-06-15T23:59:59"));
        assert_eq!(w.start, local(zone, "2026-06-15T00:00"), "{zone}");
        assert_eq!(w.end, local(zone, "2026-06-16T00:00"), "{zone}");
        assert_eq!(w.length(), hours(24), "{zone}");
        assert_boundary(&spec, local(zone, "2026-06-16T00:00"));
    }
}

#[test]
fn calendar_week_turns_sunday_to_monday_in_each_zone() {
    for zone in ZONES {
        let spec = calendar(Period::Weekly, zone);
        // 2026-06-14 is a Sunday, 2026-06-15 a Monday.
        let sunday = spec.current(local(zone, "2026-06-14T23:00"));
        assert_eq!(sunday.start, local(zone, "2026-06-08T00:00"), "{zone}");
        assert_eq!(sunday.end, local(zone, "2026-06-15T00:00"), "{zone}");
        let monday = spec.current(local(zone, "2026-06-15T00:00"));
        assert_eq!(monday.start, local(zone, "2026-06-15T00:00"), "{zone}");
        assert_eq!(monday.end, local(zone, "2026-06-22T00:00"), "{zone}");
        assert_boundary(&spec, local(zone, "2026-06-15T00:00"));
    }
}

#[test]
fn calendar_week_containing_dst_change_is_short_or_long() {
    let berlin = calendar(Period::Weekly, "Europe/Berlin");
    assert_eq!(
        berlin.current(ts("2026-03-29T12:00:00Z")).length(),
        hours(7 * 24 - 1)
    );
    assert_eq!(
        berlin.current(ts("2026-10-25T12:00:00Z")).length(),
        hours(7 * 24 + 1)
    );
}

#[test]
fn calendar_month_boundaries_in_each_zone() {
    let cases = [
        ("2026-01-31T18:00", "2026-01-01T00:00", "2026-02-01T00:00"),
        ("2026-02-28T18:00", "2026-02-01T00:00", "2026-03-01T00:00"),
        ("2028-02-28T18:00", "2028-02-01T00:00", "2028-03-01T00:00"),
        ("2028-02-29T18:00", "2028-02-01T00:00", "2028-03-01T00:00"),
        (
            "2026-12-31T23:59:59",
            "2026-12-01T00:00",
            "2027-01-01T00:00",
        ),
    ];
    for zone in ZONES {
        let spec = calendar(Period::Monthly, zone);
        for (now, start, end) in cases {
            let w = spec.current(local(zone, now));
            assert_eq!(w.start, local(zone, start), "{zone} {now}");
            assert_eq!(w.end, local(zone, end), "{zone} {now}");
            assert_boundary(&spec, local(zone, end));
        }
    }
}

#[test]
fn calendar_leap_february_is_29_days() {
    let spec = calendar(Period::Monthly, "UTC");
    assert_eq!(
        spec.current(ts("2028-02-15T00:00:00Z")).length(),
        hours(29 * 24)
    );
    assert_eq!(
        spec.current(ts("2026-02-15T00:00:00Z")).length(),
        hours(28 * 24)
    );
}

#[test]
fn dst_days_are_23_and_25_hours() {
    let cases = [
        ("Europe/Berlin", "2026-03-29T12:00", hours(23)),
        ("Europe/Berlin", "2026-10-25T12:00", hours(25)),
        ("America/New_York", "2026-03-08T12:00", hours(23)),
        ("America/New_York", "2026-11-01T12:00", hours(25)),
        (
            "Australia/Lord_Howe",
            "2026-10-04T12:00",
            SignedDuration::from_mins(23 * 60 + 30),
        ),
        (
            "Australia/Lord_Howe",
            "2026-04-05T12:00",
            SignedDuration::from_mins(24 * 60 + 30),
        ),
    ];
    for (zone, now, length) in cases {
        let spec = calendar(Period::Daily, zone);
        let w = spec.current(local(zone, now));
        let day = &now[..10];
        assert_eq!(
            w.start,
            local(zone, &format!("{day}T00:00")),
            "{zone} {day}"
        );
        assert_eq!(w.length(), length, "{zone} {day}");
        assert_boundary(&spec, w.end);
    }
}

#[test]
fn fall_back_repeated_hour_is_two_windows_in_berlin() {
    let spec = calendar(Period::Hourly, "Europe/Berlin");
    // Both instants are 02:30 local: first at +02:00, then at +01:00.
    let first = spec.current(ts("2026-10-25T00:30:00Z"));
    let second = spec.current(ts("2026-10-25T01:30:00Z"));
    assert_eq!(first.start, ts("2026-10-25T00:00:00Z"));
    assert_eq!(first.end, ts("2026-10-25T01:00:00Z"));
    assert_eq!(second.start, ts("2026-10-25T01:00:00Z"));
    assert_eq!(second.end, ts("2026-10-25T02:00:00Z"));
    assert_ne!(
        spec.key(ts("2026-10-25T00:30:00Z")),
        spec.key(ts("2026-10-25T01:30:00Z"))
    );
    assert_boundary(&spec, ts("2026-10-25T01:00:00Z"));
}

#[test]
fn fall_back_repeated_hour_is_two_windows_in_new_york() {
    let spec = calendar(Period::Hourly, "America/New_York");
    // 01:30 local, first at -04:00, then at -05:00.
    let first = spec.current(ts("2026-11-01T05:30:00Z"));
    let second = spec.current(ts("2026-11-01T06:30:00Z"));
    assert_eq!(first.start, ts("2026-11-01T05:00:00Z"));
    assert_eq!(second.start, ts("2026-11-01T06:00:00Z"));
    assert_eq!(first.end, second.start);
    assert_eq!(second.length(), hours(1));
}

#[test]
fn spring_forward_hours_are_contiguous_in_berlin() {
    let spec = calendar(Period::Hourly, "Europe/Berlin");
    // 01:00-02:00 +01:00 is followed directly by 03:00-04:00 +02:00.
    let before = spec.current(ts("2026-03-29T00:59:59Z"));
    assert_eq!(before.start, ts("2026-03-29T00:00:00Z"));
    assert_eq!(before.end, ts("2026-03-29T01:00:00Z"));
    let after = spec.current(ts("2026-03-29T01:00:00Z"));
    assert_eq!(after.start, local("Europe/Berlin", "2026-03-29T03:00"));
    assert_boundary(&spec, ts("2026-03-29T01:00:00Z"));
}

#[test]
fn lord_howe_half_hour_shift_makes_short_and_long_hours() {
    let spec = calendar(Period::Hourly, "Australia/Lord_Howe");
    // Spring forward 2026-10-04 02:00 +10:30 -> 02:30 +11:00 (15:30Z).
    let short = spec.current(ts("2026-10-03T15:40:00Z"));
    assert_eq!(short.start, ts("2026-10-03T15:30:00Z"));
    assert_eq!(short.end, ts("2026-10-03T16:00:00Z"));
    assert_boundary(&spec, ts("2026-10-03T15:30:00Z"));
    // Fall back 2026-04-05 02:00 +11:00 -> 01:30 +10:30 (15:00Z): the
    // 01:00 hour lasts 90 minutes and the transition is not a boundary.
    let long = spec.current(ts("2026-04-04T15:10:00Z"));
    assert_eq!(long.start, ts("2026-04-04T14:00:00Z"));
    assert_eq!(long.end, ts("2026-04-04T15:30:00Z"));
    assert_eq!(spec.current(ts("2026-04-04T14:59:59Z")), long);
}

#[test]
fn missing_midnight_starts_the_day_at_the_transition() {
    let spec = calendar(Period::Daily, "America/Santiago");
    // 2026-09-06 00:00 -04:00 does not exist: clocks jump to 01:00 -03:00.
    let w = spec.current(ts("2026-09-06T12:00:00Z"));
    assert_eq!(w.start, ts("2026-09-06T04:00:00Z"));
    assert_eq!(w.end, ts("2026-09-07T03:00:00Z"));
    assert_boundary(&spec, ts("2026-09-06T04:00:00Z"));
    // 2026-04-05 00:00 -03:00 becomes 2026-04-04 23:00 -04:00: 25 h day.
    let long = spec.current(ts("2026-04-04T12:00:00Z"));
    assert_eq!(long.start, ts("2026-04-04T03:00:00Z"));
    assert_eq!(long.end, ts("2026-04-05T04:00:00Z"));
}

#[test]
fn calendar_key_is_window_start_seconds() {
    let spec = calendar(Period::Daily, "Europe/Berlin");
    let now = ts("2026-06-15T12:34:56.789Z");
    assert_eq!(spec.key(now), ts("2026-06-14T22:00:00Z").as_second());
    assert_eq!(spec.resets_at(now), ts("2026-06-15T22:00:00Z"));
}

#[test]
fn rolling_windows_cover_fixed_lengths() {
    let now = ts("2026-06-15T10:17:30.5Z");
    let cases = [
        (Period::Hourly, "2026-06-15T09:17:30.5Z"),
        (Period::Daily, "2026-06-14T10:17:30.5Z"),
        (Period::Weekly, "2026-06-08T10:17:30.5Z"),
        (Period::Monthly, "2026-05-16T10:17:30.5Z"),
    ];
    for (period, start) in cases {
        let w = rolling(period).current(now);
        assert_eq!(
            w,
            Window {
                start: ts(start),
                end: now
            },
            "{period}"
        );
        assert_eq!(w.length(), period.rolling_length(), "{period}");
    }
}

#[test]
fn rolling_windows_ignore_dst() {
    let spec = WindowSpec::new(Period::Daily, WindowType::Rolling, "Europe/Berlin").unwrap();
    let w = spec.current(ts("2026-03-29T12:00:00Z"));
    assert_eq!(w.length(), hours(24));
}

#[test]
fn bucket_widths_by_period() {
    let widths = [
        (Period::Hourly, SignedDuration::from_mins(1)),
        (Period::Daily, SignedDuration::from_mins(15)),
        (Period::Weekly, hours(1)),
        (Period::Monthly, hours(6)),
    ];
    for (period, width) in widths {
        assert_eq!(rolling(period).bucket_width(), width);
        assert_eq!(period.rolling_length().as_nanos() % width.as_nanos(), 0);
    }
}

#[test]
fn bucket_of_floors_in_absolute_time() {
    let spec = rolling(Period::Hourly);
    assert_eq!(spec.bucket_of(ts("1970-01-01T00:00:00Z")), 0);
    assert_eq!(spec.bucket_of(ts("1970-01-01T00:00:59.999999999Z")), 0);
    assert_eq!(spec.bucket_of(ts("1970-01-01T00:01:00Z")), 1);
    assert_eq!(spec.bucket_of(ts("1969-12-31T23:59:59.999999999Z")), -1);
    let t = ts("2026-06-15T10:17:30Z");
    assert_eq!(spec.bucket_of(t), t.as_second() / 60);
}

#[test]
fn bucket_ranges_span_the_window_plus_the_oldest_partial_bucket() {
    let hourly = rolling(Period::Hourly);
    let now = ts("2026-06-15T10:17:30Z");
    let range = hourly.buckets_in(now);
    assert_eq!(*range.start(), hourly.bucket_of(ts("2026-06-15T09:17:00Z")));
    assert_eq!(*range.end(), hourly.bucket_of(now));
    assert_eq!(range.count(), 61);

    let monthly = rolling(Period::Monthly);
    let range = monthly.buckets_in(ts("2026-06-15T10:00:00Z"));
    // 30 days of 6 h buckets, plus the one holding now.
    assert_eq!(range.count(), 121);
}

#[test]
fn rolling_resets_when_the_oldest_bucket_leaves() {
    let spec = rolling(Period::Hourly);
    let now = ts("2026-06-15T10:17:30Z");
    let reset = spec.resets_at(now);
    assert_eq!(reset, ts("2026-06-15T10:18:00Z"));
    assert!(reset > now && reset.duration_since(now) <= spec.bucket_width());
    assert_eq!(
        *spec.buckets_in(reset).start(),
        *spec.buckets_in(now).start() + 1
    );
    // On a bucket boundary the oldest bucket is whole; it leaves a full
    // bucket width later.
    let on_edge = ts("2026-06-15T10:17:00Z");
    assert_eq!(spec.resets_at(on_edge), ts("2026-06-15T10:18:00Z"));
}

#[test]
fn invalid_zone_is_named_in_the_error() {
    let err =
        WindowSpec::new(Period::Daily, WindowType::Calendar, "Mars/Olympus_Mons").unwrap_err();
    assert!(matches!(err, WindowError::TimeZone { ref name, .. } if name == "Mars/Olympus_Mons"));
    assert!(err.to_string().contains("\"Mars/Olympus_Mons\""), "{err}");
}

#[test]
fn zone_name_is_stored_in_database_spelling() {
    let spec = WindowSpec::new(Period::Daily, WindowType::Calendar, "europe/berlin").unwrap();
    assert_eq!(spec.timezone(), "Europe/Berlin");
}

#[test]
fn invalid_period_and_type_strings_list_valid_ones() {
    let err = "fortnightly".parse::<Period>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown period \"fortnightly\": use hourly, daily, weekly or monthly"
    );
    let err = "sliding".parse::<WindowType>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown window type \"sliding\": use calendar or rolling"
    );
    for period in Period::ALL {
        assert_eq!(period.as_str().parse::<Period>(), Ok(period));
    }
    assert_eq!("rolling".parse::<WindowType>(), Ok(WindowType::Rolling));
    assert!("Daily".parse::<Period>().is_err());
}

#[test]
fn spec_json_round_trips_without_the_compiled_zone() {
    let spec = calendar(Period::Weekly, "Asia/Kolkata");
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"period": "weekly", "window_type": "calendar", "timezone": "Asia/Kolkata"})
    );
    let back: WindowSpec = serde_json::from_value(json).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn spec_json_defaults_to_utc_and_validates_on_load() {
    let spec: WindowSpec =
        serde_json::from_str(r#"{"period": "daily", "window_type": "rolling"}"#).unwrap();
    assert_eq!(spec.timezone(), "UTC");

    let err = serde_json::from_str::<WindowSpec>(
        r#"{"period": "daily", "window_type": "calendar", "timezone": "Nowhere/Town"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("Nowhere/Town"), "{err}");

    let err =
        serde_json::from_str::<WindowSpec>(r#"{"period": "yearly", "window_type": "calendar"}"#)
            .unwrap_err();
    assert!(err.to_string().contains("yearly"), "{err}");

    assert!(serde_json::from_str::<WindowSpec>(
        r#"{"period": "daily", "window_type": "calendar", "tz": "UTC"}"#
    )
    .is_err());
}

fn zone_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        &[
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
            "America/Santiago",
            "Asia/Beirut",
        ][..],
    )
}

fn period_strategy() -> impl Strategy<Value = Period> {
    prop::sample::select(&Period::ALL[..])
}

proptest! {
    #[test]
    fn calendar_windows_tile_time(
        second in ts("2000-01-01T00:00:00Z").as_second()..ts("2100-01-01T00:00:00Z").as_second(),
        nano in 0..1_000_000_000i32,
        zone in zone_strategy(),
        period in period_strategy(),
    ) {
        let now = Timestamp::new(second, nano).unwrap();
        let spec = calendar(period, zone);
        let w = spec.current(now);
        prop_assert!(w.contains(now), "{w:?} misses {now}");
        prop_assert!(w.start < w.end);
        prop_assert_eq!(spec.current(w.end - NS), w);
        prop_assert_eq!(spec.current(w.start), w);
        prop_assert_eq!(spec.current(w.end).start, w.end);
        prop_assert_eq!(spec.key(now), w.start.as_second());
        prop_assert_eq!(spec.resets_at(now), w.end);
    }

    #[test]
    fn rolling_buckets_cover_the_window(
        second in ts("2000-01-01T00:00:00Z").as_second()..ts("2100-01-01T00:00:00Z").as_second(),
        nano in 0..1_000_000_000i32,
        period in period_strategy(),
    ) {
        let now = Timestamp::new(second, nano).unwrap();
        let spec = rolling(period);
        let w = spec.current(now);
        let range = spec.buckets_in(now);
        prop_assert_eq!(*range.start(), spec.bucket_of(w.start));
        prop_assert_eq!(*range.end(), spec.bucket_of(now));
        let per_window = period.rolling_length().as_nanos() / spec.bucket_width().as_nanos();
        prop_assert_eq!(range.count() as i128, per_window + 1);
        let reset = spec.resets_at(now);
        prop_assert!(reset > now && reset.duration_since(now) <= spec.bucket_width());
    }
}
