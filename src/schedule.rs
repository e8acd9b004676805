//! When a message runs: `schedule` (`at` a time, or after a `delay`) and `repeat` (`every` a
//! duration for `times` runs or `until` a time, or on a `cron` pattern with an optional
//! `until` and `times`). `times` counts every run, the first included.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(pub String);

fn err(msg: impl Into<String>) -> ScheduleError {
    ScheduleError(msg.into())
}

/// `{"at": "2026-12-01T09:00:00Z"}` or `{"delay": "10m"}` (a duration, or a number of seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Value>,
}

/// `{"every": "1h", "times": 3}` or `{"cron": "0 9 * * MON", "until": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// The longest duration a schedule or repeat rule may use (about 100 years): anything longer
/// is a mistake, and would overflow date arithmetic.
const MAX_SECONDS: i64 = 100 * 366 * 86_400;

/// Parses `90`, `"90"`, `"45s"`, `"10m"`, `"1h30m"`, `"2d"` into a duration of at most about
/// 100 years.
pub fn parse_duration(v: &Value) -> Result<Duration, ScheduleError> {
    let bad = || {
        err(format!(
            "'{v}' is not a duration (e.g. 30s, 10m, 1h30m, 2d, or seconds)"
        ))
    };
    let too_long = || err(format!("'{v}' is longer than 100 years"));
    if let Some(n) = v.as_f64() {
        if n < 0.0 || !n.is_finite() {
            return Err(bad());
        }
        if n > MAX_SECONDS as f64 {
            return Err(too_long());
        }
        return Ok(Duration::milliseconds((n * 1000.0) as i64));
    }
    let s = v.as_str().ok_or_else(bad)?.trim();
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(too_long)?;
    }
    if !digits.is_empty() {
        // A bare number of seconds.
        if total != 0 || s.is_empty() {
            return Err(bad());
        }
        total = digits.parse().map_err(|_| too_long())?;
    } else if s.is_empty() {
        return Err(bad());
    }
    if total > MAX_SECONDS {
        return Err(too_long());
    }
    Ok(Duration::seconds(total))
}

impl Schedule {
    /// The time the first run is due.
    pub fn first_due(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
        match (&self.at, &self.delay) {
            (Some(at), None) => Ok(*at),
            (None, Some(d)) => now
                .checked_add_signed(parse_duration(d)?)
                .ok_or_else(|| err("schedule.delay goes past the end of time")),
            _ => Err(err("schedule needs exactly one of \"at\" or \"delay\"")),
        }
    }
}

impl Repeat {
    /// Checks the rule and returns the time of its first run at or after `start`.
    pub fn validate(&self, start: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
        if self.times == Some(0) {
            return Err(err("repeat.times must be at least 1"));
        }
        match (&self.every, &self.cron) {
            (Some(every), None) => {
                if parse_duration(every)? < Duration::seconds(1) {
                    return Err(err("repeat.every must be at least 1s"));
                }
                if self.times.is_none() && self.until.is_none() {
                    return Err(err("repeat.every needs \"times\" or \"until\""));
                }
                Ok(start)
            }
            (None, Some(pattern)) => {
                let cron = croner::Cron::from_str(pattern)
                    .map_err(|e| err(format!("repeat.cron '{pattern}': {e}")))?;
                cron.find_next_occurrence(&start, true)
                    .map_err(|e| err(format!("repeat.cron '{pattern}': {e}")))
            }
            _ => Err(err("repeat needs exactly one of \"every\" or \"cron\"")),
        }
    }

    /// The time of the run after run number `run` (0-based) that was due at `run_at`, or None
    /// when the rule is exhausted.
    pub fn next_after(
        &self,
        run: i32,
        run_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if let Some(times) = self.times {
            if run as i64 + 1 >= times as i64 {
                return None;
            }
        }
        let next = match (&self.every, &self.cron) {
            // Keep the cadence; after an outage, skip the runs that were missed.
            (Some(every), None) => {
                let every = parse_duration(every).ok()?;
                let mut next = run_at.checked_add_signed(every)?;
                if next < now {
                    let step = every.num_milliseconds().max(1);
                    let missed = (now - next).num_milliseconds() / step;
                    next =
                        next.checked_add_signed(Duration::milliseconds(missed.checked_mul(step)?))?;
                }
                next
            }
            (None, Some(pattern)) => croner::Cron::from_str(pattern)
                .ok()?
                .find_next_occurrence(&run_at.max(now), false)
                .ok()?,
            _ => return None,
        };
        match self.until {
            Some(until) if next > until => None,
            _ => Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration(&json!("1h30m")).unwrap(),
            Duration::minutes(90)
        );
        assert_eq!(parse_duration(&json!(90)).unwrap(), Duration::seconds(90));
        assert_eq!(parse_duration(&json!("2d")).unwrap(), Duration::days(2));
        assert!(parse_duration(&json!("5x")).is_err());
        assert!(parse_duration(&json!("m")).is_err());
        assert!(parse_duration(&json!(-1)).is_err());
        assert!(parse_duration(&json!("99999999999999d")).is_err());
        assert!(parse_duration(&json!(1e300)).is_err());
        assert!(parse_duration(&json!("3000000000000000s")).is_err());
        assert!(parse_duration(&json!("99999999999999999999")).is_err());
    }

    #[test]
    fn every_runs_times_then_stops() {
        let r = Repeat {
            every: Some(json!("1h")),
            cron: None,
            times: Some(3),
            until: None,
        };
        let t0 = Utc::now();
        assert_eq!(r.validate(t0).unwrap(), t0);
        let t1 = r.next_after(0, t0, t0).unwrap();
        assert_eq!(t1, t0 + Duration::hours(1));
        assert!(r.next_after(1, t1, t1).is_some());
        assert!(r.next_after(2, t1, t1).is_none());
    }

    #[test]
    fn cron_and_until() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:30Z")
            .unwrap()
            .to_utc();
        let r = Repeat {
            every: None,
            cron: Some("*/5 * * * *".into()),
            times: None,
            until: Some(t0 + Duration::minutes(7)),
        };
        let first = r.validate(t0).unwrap();
        assert_eq!(first, t0 + Duration::seconds(270));
        assert!(r.next_after(0, first, first).is_none());
        assert!(Repeat {
            cron: Some("nope".into()),
            ..r.clone()
        }
        .validate(t0)
        .is_err());
    }
}
