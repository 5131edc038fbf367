//! Spend windows: which span of time a budget policy's spend is counted
//! over at a given instant. Pure arithmetic over `jiff` types; the clock is
//! always a parameter.
//!
//! Calendar windows follow the policy's time zone (local hour, day, ISO
//! week, month), with DST handled by jiff. Rolling windows cover a fixed
//! length of absolute time ending now, and are counted in fixed-width
//! buckets so counters stay small.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{RoundMode, SignedDuration, Timestamp, ToSpan, Unit, ZonedRound};
use serde::{Deserialize, Serialize};

/// Why a window definition was refused. Each message names the bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("unknown period {0:?}: use hourly, daily, weekly or monthly")]
    Period(String),
    #[error("unknown window type {0:?}: use calendar or rolling")]
    WindowType(String),
    #[error("unknown time zone {name:?}: use an IANA name like UTC or Europe/Berlin ({reason})")]
    TimeZone { name: String, reason: String },
}

/// How long a budget window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

impl Period {
    pub const ALL: [Period; 4] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }

    /// Length of a rolling window of this period: 1 h, 24 h, 7 × 24 h,
    /// 30 × 24 h of absolute time.
    pub fn rolling_length(self) -> SignedDuration {
        match self {
            Period::Hourly => SignedDuration::from_hours(1),
            Period::Daily => SignedDuration::from_hours(24),
            Period::Weekly => SignedDuration::from_hours(7 * 24),
            Period::Monthly => SignedDuration::from_hours(30 * 24),
        }
    }

    /// Width of the buckets a rolling window of this period is counted in:
    /// 1 min, 15 min, 1 h, 6 h (each divides the rolling length exactly).
    pub fn bucket_width(self) -> SignedDuration {
        match self {
            Period::Hourly => SignedDuration::from_mins(1),
            Period::Daily => SignedDuration::from_mins(15),
            Period::Weekly => SignedDuration::from_hours(1),
            Period::Monthly => SignedDuration::from_hours(6),
        }
    }

    /// A step no longer than most calendar periods, used to look for the
    /// next boundary (the search corrects both over- and undershoot).
    fn calendar_step(self) -> SignedDuration {
        match self {
            Period::Hourly => SignedDuration::from_hours(1),
            Period::Daily => SignedDuration::from_hours(24),
            Period::Weekly => SignedDuration::from_hours(7 * 24),
            Period::Monthly => SignedDuration::from_hours(28 * 24),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Period {
    type Err = WindowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Period::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| WindowError::Period(s.to_owned()))
    }
}

/// Whether a window follows the calendar or slides with the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowType {
    /// The calendar period containing now, in the policy's time zone.
    Calendar,
    /// The last period's length of absolute time, ending now.
    Rolling,
}

impl WindowType {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowType::Calendar => "calendar",
            WindowType::Rolling => "rolling",
        }
    }
}

impl fmt::Display for WindowType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WindowType {
    type Err = WindowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "calendar" => Ok(WindowType::Calendar),
            "rolling" => Ok(WindowType::Rolling),
            _ => Err(WindowError::WindowType(s.to_owned())),
        }
    }
}

/// A span of time `[start, end)`.
///
/// Calendar windows are half-open: the instant at `end` belongs to the next
/// window. A rolling window ends at the `now` it was computed for, and
/// spend recorded at `now` counts (see [`WindowSpec::buckets_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    /// True when `t` is in `[start, end)`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    pub fn length(&self) -> SignedDuration {
        self.end.duration_since(self.start)
    }
}

/// The stored form of a [`WindowSpec`] (JSON inside policy definitions).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindowSpec {
    /// hourly, daily, weekly or monthly.
    period: Period,
    /// calendar or rolling.
    window_type: WindowType,
    /// IANA time zone name calendar windows follow; UTC when absent.
    #[serde(default = "utc_name")]
    timezone: String,
}

fn utc_name() -> String {
    "UTC".to_owned()
}

/// A validated window definition: period, type and time zone. Holds the
/// resolved time zone, so it cannot name one that does not exist; loading
/// from JSON validates the zone the same way as [`WindowSpec::new`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawWindowSpec", into = "RawWindowSpec")]
pub struct WindowSpec {
    period: Period,
    window_type: WindowType,
    timezone: String,
    tz: TimeZone,
}

impl PartialEq for WindowSpec {
    fn eq(&self, other: &Self) -> bool {
        self.period == other.period
            && self.window_type == other.window_type
            && self.timezone == other.timezone
    }
}

impl Eq for WindowSpec {}

impl TryFrom<RawWindowSpec> for WindowSpec {
    type Error = WindowError;

    fn try_from(raw: RawWindowSpec) -> Result<Self, Self::Error> {
        WindowSpec::new(raw.period, raw.window_type, &raw.timezone)
    }
}

impl From<WindowSpec> for RawWindowSpec {
    fn from(spec: WindowSpec) -> Self {
        RawWindowSpec {
            period: spec.period,
            window_type: spec.window_type,
            timezone: spec.timezone,
        }
    }
}

impl WindowSpec {
    /// Validates `timezone` against the bundled IANA database. The stored
    /// name is the database's spelling (`europe/berlin` → `Europe/Berlin`).
    pub fn new(
        period: Period,
        window_type: WindowType,
        timezone: &str,
    ) -> Result<WindowSpec, WindowError> {
        let tz = TimeZone::get(timezone).map_err(|e| WindowError::TimeZone {
            name: timezone.to_owned(),
            reason: e.to_string(),
        })?;
        let timezone = tz.iana_name().unwrap_or(timezone).to_owned();
        Ok(WindowSpec {
            period,
            window_type,
            timezone,
            tz,
        })
    }

    pub fn period(&self) -> Period {
        self.period
    }

    pub fn window_type(&self) -> WindowType {
        self.window_type
    }

    /// The IANA name of the policy's time zone.
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The window whose spend counts at `now`.
    ///
    /// Calendar: the local period containing `now`; `end` is the first
    /// instant of the next period, so windows tile time without gaps or
    /// overlap. Days are 23 or 25 hours across DST changes; an hour is the
    /// absolute instant truncated to the local hour, so the two repeated
    /// local hours of a fall-back are separate windows (and in zones with
    /// 30-minute shifts, like Australia/Lord_Howe, the hour around the
    /// shift is 30 or 90 minutes long). A period starting at a local time
    /// that does not exist starts at the first instant after the gap.
    ///
    /// Rolling: `[now - length, now]`.
    ///
    /// Within a day of the ends of jiff's range (years -9999 and 9999),
    /// where the next period cannot be represented, the window is
    /// `[now, Timestamp::MAX)`.
    pub fn current(&self, now: Timestamp) -> Window {
        match self.window_type {
            WindowType::Rolling => Window {
                start: now
                    .checked_sub(self.period.rolling_length())
                    .unwrap_or(Timestamp::MIN),
                end: now,
            },
            WindowType::Calendar => self.calendar(now).unwrap_or(Window {
                start: now,
                end: Timestamp::MAX,
            }),
        }
    }

    /// When spend stops counting against the window.
    ///
    /// Calendar: the end of the current window. Rolling: there is no reset
    /// boundary; this is the earliest time old spend starts leaving the
    /// window, when the oldest counted bucket drops out (after `now`, and
    /// at most one bucket width after it).
    pub fn resets_at(&self, now: Timestamp) -> Timestamp {
        match self.window_type {
            WindowType::Calendar => self.current(now).end,
            WindowType::Rolling => {
                let oldest = *self.buckets_in(now).start();
                self.bucket_start(oldest + 1)
                    .checked_add(self.period.rolling_length())
                    .unwrap_or(Timestamp::MAX)
            }
        }
    }

    /// Identifies the window at `now` for counters: its start in unix
    /// seconds (window starts are whole seconds). Distinct calendar
    /// windows have distinct keys; rolling windows are counted by bucket
    /// instead (see [`WindowSpec::buckets_in`]).
    pub fn key(&self, now: Timestamp) -> i64 {
        self.current(now).start.as_second()
    }

    /// Width of the buckets rolling spend is counted in (by period: 1 min,
    /// 15 min, 1 h, 6 h).
    pub fn bucket_width(&self) -> SignedDuration {
        self.period.bucket_width()
    }

    /// The bucket `t` falls in: `floor(t / width)` in absolute time.
    pub fn bucket_of(&self, t: Timestamp) -> i64 {
        let width = self.bucket_width().as_nanos();
        // |t| < 2^68 ns and width ≥ 6e10 ns, so the quotient fits an i64.
        t.as_nanosecond().div_euclid(width) as i64
    }

    /// The buckets whose spend counts at `now`: from the bucket containing
    /// `now - length` to the bucket containing `now`. The oldest bucket is
    /// counted whole, so the sum may include spend up to one bucket width
    /// older than the window: it errs towards denying, never admitting.
    pub fn buckets_in(&self, now: Timestamp) -> RangeInclusive<i64> {
        let oldest = now
            .checked_sub(self.period.rolling_length())
            .unwrap_or(Timestamp::MIN);
        self.bucket_of(oldest)..=self.bucket_of(now)
    }

    /// First instant of bucket `index` (clamped to jiff's range).
    fn bucket_start(&self, index: i64) -> Timestamp {
        let nanos = i128::from(index) * self.bucket_width().as_nanos();
        Timestamp::from_nanosecond(nanos).unwrap_or(if nanos < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
    }

    fn calendar(&self, now: Timestamp) -> Result<Window, jiff::Error> {
        let start = self.calendar_start(now)?;
        let end = self.next_boundary(start)?;
        Ok(Window { start, end })
    }

    /// First instant of the calendar period containing `t`.
    fn calendar_start(&self, t: Timestamp) -> Result<Timestamp, jiff::Error> {
        let local = t.to_zoned(self.tz.clone());
        match self.period {
            Period::Hourly => {
                let round = ZonedRound::new()
                    .smallest(Unit::Hour)
                    .mode(RoundMode::Trunc);
                Ok(local.round(round)?.timestamp())
            }
            Period::Daily => self.first_instant(local.date()),
            Period::Weekly => {
                let back = local.weekday().to_monday_zero_offset();
                self.first_instant(local.date().checked_sub(i64::from(back).days())?)
            }
            Period::Monthly => self.first_instant(local.date().first_of_month()),
        }
    }

    /// The first instant of local midnight starting `date`: when midnight
    /// falls in a gap, the transition that skips it (jiff's compatible
    /// disambiguation gives the same when the gap starts at midnight).
    fn first_instant(&self, date: Date) -> Result<Timestamp, jiff::Error> {
        let ambiguous = self
            .tz
            .to_ambiguous_timestamp(DateTime::from_parts(date, Time::midnight()));
        let is_gap = matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. });
        let compatible = ambiguous.compatible()?;
        if !is_gap {
            return Ok(compatible);
        }
        let after = compatible.checked_add(SignedDuration::from_nanos(1))?;
        Ok(self
            .tz
            .preceding(after)
            .next()
            .map_or(compatible, |transition| transition.timestamp()))
    }

    /// The first instant after `start` that begins a different period:
    /// probes ahead by a nominal period, then walks back over any shorter
    /// periods, so the result always agrees with `calendar_start`.
    fn next_boundary(&self, start: Timestamp) -> Result<Timestamp, jiff::Error> {
        let step = self.period.calendar_step();
        let one_ns = SignedDuration::from_nanos(1);
        let mut probe = start.checked_add(step)?;
        // Real zones need at most a few steps; the cap keeps a malformed
        // zone from looping.
        for _ in 0..64 {
            let found = self.calendar_start(probe)?;
            if found <= start {
                probe = probe.checked_add(step)?;
                continue;
            }
            if self.calendar_start(found.checked_sub(one_ns)?)? <= start {
                return Ok(found);
            }
            probe = found.checked_sub(one_ns)?;
        }
        start.checked_add(step)
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
