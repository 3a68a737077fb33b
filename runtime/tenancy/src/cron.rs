//! Cron Triggers: parsing a tenant's `crons = ["*/5 * * * *"]`, the next firing time in UTC, and
//! a sans-IO [`CronTable`] that says which (tenant, cron, scheduledTime) firings are due.
//!
//! Syntax is Workers': five fields (minute, hour, day of month, month, day of week), with `*`,
//! `,`, `-`, `/`, `L` (last day of month; `5L` last Thursday), `W` (nearest weekday, `LW`), `#`
//! (`2#1`: first Monday), and three-letter names (`JAN`, `mon`), case-insensitive. Day-of-week
//! numbers are Workers' (and Quartz's): 1 = Sunday .. 7 = Saturday, unlike Vixie cron's 0-6;
//! names mean the same in both, and Cloudflare's documentation recommends them. When both day
//! fields are restricted, a day matches if either does (Vixie cron's rule). All times are UTC,
//! so daylight saving time never applies. Seconds, years and `@daily`-style nicknames are not
//! Workers syntax and are refused.
//!
//! Parsing and matching are the `croner` crate's: it implements all of the above (including
//! `L`, `W`, `#` and a Quartz weekday mode) and computes next occurrences without iterating
//! minute by minute; the `cron` crate, the other common choice, requires a seconds field and
//! has no Vixie day-of-month/day-of-week rule.
//!
//! This module must not read a clock or sleep: the caller passes the current time in and asks
//! [`CronTable::poll_at`] when to call again.

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Longest cron expression accepted (Workers expressions are a few dozen bytes).
pub const EXPRESSION_BYTES_MAX: usize = 256;
/// Most schedules one tenant may have (Workers allow a handful; this is a bound, not a plan).
pub const SCHEDULES_PER_TENANT_MAX: usize = 100;
/// Most schedules one table holds, across tenants.
pub const SCHEDULES_MAX: usize = 100_000;

/// Why a cron expression or schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum CronError {
    /// invalid cron expression {expression:?}: {reason}
    Invalid { expression: String, reason: String },
    /// cron expression longer than 256 bytes
    TooLong,
    /// too many cron schedules (at most 100000)
    TooMany,
}

/// Why a tenant's list of schedules was refused: the entry at `index`, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleListError {
    pub index: usize,
    pub reason: ScheduleListProblem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, displaydoc::Display)]
pub enum ScheduleListProblem {
    /// more than 100 schedules
    TooMany,
    /// {0}
    Invalid(CronError),
}

impl std::fmt::Display for ScheduleListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry {}: {}", self.index + 1, self.reason)
    }
}

impl std::error::Error for ScheduleListError {}

/// A tenant's schedules as given (config, admin upload, `run --cron`): each expression checked,
/// repeats dropped (the first kept), at most [`SCHEDULES_PER_TENANT_MAX`].
pub fn tenant_schedules<S: AsRef<str>>(given: &[S]) -> Result<Vec<String>, ScheduleListError> {
    let mut unique: Vec<String> = Vec::with_capacity(given.len().min(SCHEDULES_PER_TENANT_MAX));
    for (index, expression) in given.iter().enumerate() {
        if index >= SCHEDULES_PER_TENANT_MAX {
            return Err(ScheduleListError { index, reason: ScheduleListProblem::TooMany });
        }
        let expression = expression.as_ref();
        CronSchedule::parse(expression)
            .map_err(|error| ScheduleListError { index, reason: ScheduleListProblem::Invalid(error) })?;
        if !unique.iter().any(|seen| seen == expression) {
            unique.push(expression.to_owned());
        }
    }
    Ok(unique)
}

/// One parsed cron expression.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    cron: Cron,
}

impl CronSchedule {
    pub fn parse(expression: &str) -> Result<Self, CronError> {
        if expression.len() > EXPRESSION_BYTES_MAX {
            return Err(CronError::TooLong);
        }
        let invalid =
            |reason: &str| CronError::Invalid { expression: expression.to_owned(), reason: reason.to_owned() };
        if expression.contains('@') {
            return Err(invalid("nicknames such as @daily are not supported; use five fields"));
        }
        if expression.split_whitespace().count() != 5 {
            return Err(invalid("expected five fields: minute hour day-of-month month day-of-week"));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .alternative_weekdays(true)
            .build();
        let cron = parser.parse(expression).map_err(|e| invalid(&e.to_string()))?;
        Ok(Self { expression: expression.to_owned(), cron })
    }

    /// The expression as configured (what `controller.cron` shows).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first firing strictly after `after_unix_ms`, in Unix milliseconds (always a whole
    /// minute), or `None` if the schedule never fires again (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after_unix_ms: u64) -> Option<u64> {
        let after = utc(after_unix_ms)?;
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The last firing at or before `at_unix_ms`.
    fn latest_at_or_before(&self, at_unix_ms: u64) -> Option<u64> {
        let at = utc(at_unix_ms)?;
        let previous = self.cron.find_previous_occurrence(&at, true).ok()?;
        u64::try_from(previous.timestamp_millis()).ok()
    }
}

fn utc(unix_ms: u64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(i64::try_from(unix_ms).ok()?).single()
}

/// One firing that is due: run the tenant's `scheduled()` handler with these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub tenant: String,
    /// `controller.cron`.
    pub cron: String,
    /// `controller.scheduledTime`, Unix milliseconds: the time the firing was scheduled for,
    /// not the time it was noticed.
    pub scheduled_time_ms: u64,
}

#[derive(Debug)]
struct Entry {
    tenant: String,
    schedule: CronSchedule,
    /// The next time this schedule fires; `None` if it never will.
    next_ms: Option<u64>,
}

/// Every tenant's schedules and when each fires next. Sans-IO: [`CronTable::poll`] with the
/// current time returns the firings due; call it again at [`CronTable::poll_at`].
///
/// Each schedule fires at most once per occurrence, however often it is polled: its next time
/// only moves forward, past the time just polled, and a clock that steps backwards fires nothing
/// until it passes that time again. After a pause (the process stopped, the host slept, the
/// loop was late) a schedule whose occurrences were missed fires once, for the latest missed
/// occurrence (`scheduledTime` is that occurrence), and the older ones are skipped and counted in
/// [`CronTable::skipped`]: a job every minute that missed an hour runs once, not sixty times, and
/// it sees the real time it stood for. Nothing is persisted: a restarted process starts from
/// its start time, and occurrences during the downtime are not replayed (as Workers do not
/// retry missed Cron Triggers either).
///
/// The table belongs to one thread of the process (so each schedule fires once per process, not
/// once per core); the caller dispatches each firing to whichever core it chooses.
#[derive(Debug, Default)]
pub struct CronTable {
    entries: Vec<Entry>,
    skipped: u64,
}

impl CronTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `tenant`'s schedules to `expressions`, at `now_unix_ms` (a deploy). A schedule the
    /// tenant already had keeps its next firing time, so redeploying the same crons neither
    /// fires early nor skips one; a new schedule first fires after `now`. Nothing changes if
    /// any expression is invalid.
    pub fn set_tenant(&mut self, tenant: &str, expressions: &[&str], now_unix_ms: u64) -> Result<(), CronError> {
        let schedules = expressions.iter().map(|e| CronSchedule::parse(e)).collect::<Result<Vec<_>, _>>()?;
        let others = self.entries.iter().filter(|e| e.tenant != tenant).count();
        if others + schedules.len() > SCHEDULES_MAX {
            return Err(CronError::TooMany);
        }
        let mut kept: Vec<Entry> = Vec::with_capacity(schedules.len());
        for schedule in schedules {
            if kept.iter().any(|e| e.schedule.expression == schedule.expression) {
                continue;
            }
            let existing =
                self.entries.iter().position(|e| e.tenant == tenant && e.schedule.expression == schedule.expression);
            let next_ms = match existing {
                Some(index) => self.entries.get(index).and_then(|e| e.next_ms),
                None => schedule.next_after(now_unix_ms),
            };
            kept.push(Entry { tenant: tenant.to_owned(), schedule, next_ms });
        }
        self.entries.retain(|e| e.tenant != tenant);
        self.entries.extend(kept);
        Ok(())
    }

    /// The tenants that have schedules, each once.
    pub fn tenants(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.iter().map(|e| e.tenant.clone()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Removes every schedule of `tenant`.
    pub fn remove_tenant(&mut self, tenant: &str) {
        self.entries.retain(|e| e.tenant != tenant);
    }

    /// The firings due at `now_unix_ms`, each exactly once.
    pub fn poll(&mut self, now_unix_ms: u64) -> Vec<Firing> {
        let mut due = Vec::new();
        for entry in &mut self.entries {
            let Some(next_ms) = entry.next_ms.filter(|next| *next <= now_unix_ms) else { continue };
            let latest = entry.schedule.latest_at_or_before(now_unix_ms).unwrap_or(next_ms).max(next_ms);
            self.skipped += count_between(&entry.schedule, next_ms, latest);
            due.push(Firing {
                tenant: entry.tenant.clone(),
                cron: entry.schedule.expression.clone(),
                scheduled_time_ms: latest,
            });
            entry.next_ms = entry.schedule.next_after(now_unix_ms.max(latest));
        }
        due
    }

    /// When the next firing is due, if any schedule will fire again.
    pub fn poll_at(&self) -> Option<u64> {
        self.entries.iter().filter_map(|e| e.next_ms).min()
    }

    /// Occurrences skipped because they were missed (see the type's rule).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Schedules in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Occurrences in `[first, latest)`, counted up to a bound so a year-long pause of a
/// per-minute schedule costs a bounded walk.
fn count_between(schedule: &CronSchedule, first: u64, latest: u64) -> u64 {
    const COUNT_MAX: u64 = 10_000;
    let mut count = 0;
    let mut at = first;
    while at < latest && count < COUNT_MAX {
        count += 1;
        match schedule.next_after(at) {
            Some(next) => at = next,
            None => break,
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_schedules_are_checked_once_each_and_bounded() {
        let given = ["*/5 * * * *", "0 0 * * MON", "*/5 * * * *"];
        assert_eq!(tenant_schedules(&given).unwrap(), ["*/5 * * * *", "0 0 * * MON"]);
        let error = tenant_schedules(&["* * * * *", "* * *"]).unwrap_err();
        assert_eq!(error.index, 1);
        assert!(error.to_string().starts_with("entry 2: invalid cron expression"), "{error}");
        let many: Vec<String> = (0..=SCHEDULES_PER_TENANT_MAX).map(|m| format!("{} * * * *", m % 60)).collect();
        let error = tenant_schedules(&many).unwrap_err();
        assert_eq!((error.index, error.reason), (SCHEDULES_PER_TENANT_MAX, ScheduleListProblem::TooMany));
    }

    /// Unix milliseconds of a UTC date and time.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> u64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().map(|t| t.timestamp_millis() as u64).unwrap()
    }

    fn next(expression: &str, after: u64) -> u64 {
        CronSchedule::parse(expression).unwrap().next_after(after).unwrap()
    }

    #[test]
    fn next_firing_times_in_utc() {
        // 2026-03-29 is the day Europe moves its clocks; UTC does not care.
        let t = at(2026, 3, 29, 0, 58, 30);
        assert_eq!(next("*/5 * * * *", t), at(2026, 3, 29, 1, 0, 0));
        assert_eq!(next("*/5 * * * *", at(2026, 3, 29, 1, 0, 0)), at(2026, 3, 29, 1, 5, 0), "strictly after");
        assert_eq!(next("0 * * * *", t), at(2026, 3, 29, 1, 0, 0));
        assert_eq!(next("30 2 * * *", t), at(2026, 3, 29, 2, 30, 0));
        assert_eq!(next("0 0 1 1 *", t), at(2027, 1, 1, 0, 0, 0));
        assert_eq!(next("0 12 29 2 *", t), at(2028, 2, 29, 12, 0, 0), "next leap day");
        // Names, case-insensitive.
        assert_eq!(next("10 7 * * mon-fri", at(2026, 3, 28, 0, 0, 0)), at(2026, 3, 30, 7, 10, 0));
        assert_eq!(next("0 0 1 JAN,jul *", t), at(2026, 7, 1, 0, 0, 0));
    }

    #[test]
    fn workers_weekday_numbers_and_extensions() {
        // 2026-03-01 is a Sunday. Workers count 1 = Sunday .. 7 = Saturday.
        let start = at(2026, 3, 1, 0, 0, 0);
        assert_eq!(next("0 17 * * 1", start), at(2026, 3, 1, 17, 0, 0));
        assert_eq!(next("0 17 * * SUN", start), at(2026, 3, 1, 17, 0, 0));
        assert_eq!(next("0 17 * * 7", start), at(2026, 3, 7, 17, 0, 0), "7 is Saturday");
        assert_eq!(next("0 17 * * 2-6", start), at(2026, 3, 2, 17, 0, 0), "2-6 is Monday to Friday");
        // L: last day of the month; 6L: last Friday; LW: last weekday; 2#1: first Monday.
        assert_eq!(next("0 0 L * *", start), at(2026, 3, 31, 0, 0, 0));
        assert_eq!(next("0 0 L 2 *", start), at(2027, 2, 28, 0, 0, 0));
        assert_eq!(next("0 18 * * 6L", start), at(2026, 3, 27, 18, 0, 0));
        assert_eq!(next("0 18 * * FRIL", start), at(2026, 3, 27, 18, 0, 0));
        // The last weekday of May 2026 is Friday the 29th (the 31st is a Sunday).
        assert_eq!(next("59 23 LW * *", at(2026, 5, 1, 0, 0, 0)), at(2026, 5, 29, 23, 59, 0));
        // 15W: the 15th of August 2026 is a Saturday, so Friday the 14th.
        assert_eq!(next("0 9 15W * *", at(2026, 8, 1, 0, 0, 0)), at(2026, 8, 14, 9, 0, 0));
        assert_eq!(next("0 9 * * 2#1", start), at(2026, 3, 2, 9, 0, 0));
        assert_eq!(next("0 9 * * MON#2", start), at(2026, 3, 9, 9, 0, 0));
        // Both day fields restricted: either matches (the 13th, or any Friday).
        assert_eq!(next("0 0 13 * 6", start), at(2026, 3, 6, 0, 0, 0));
        assert_eq!(next("0 0 13 * 6", at(2026, 3, 7, 0, 0, 0)), at(2026, 3, 13, 0, 0, 0));
    }

    #[test]
    fn invalid_expressions_are_refused() {
        for bad in [
            "",
            "* * * *",
            "0 * * * * *",
            "@daily",
            "60 * * * *",
            "* 24 * * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 8",
            "* * * * 0",
            "*/0 * * * *",
            "x * * * *",
            "5-1 * * * *",
        ] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(CronSchedule::parse(&"1,".repeat(200)).unwrap_err(), CronError::TooLong);
        let never = CronSchedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(never.next_after(at(2026, 1, 1, 0, 0, 0)), None);
    }

    #[test]
    fn table_fires_each_occurrence_once() {
        let t0 = at(2026, 1, 1, 0, 0, 10);
        let mut table = CronTable::new();
        table.set_tenant("a", &["*/5 * * * *", "0 * * * *"], t0).unwrap();
        table.set_tenant("b", &["* * * * *"], t0).unwrap();
        assert_eq!(table.poll_at(), Some(at(2026, 1, 1, 0, 1, 0)));
        assert!(table.poll(t0).is_empty());
        // Polling many times within a minute fires b's schedule exactly once.
        let mut fired = Vec::new();
        for second in 0..60u64 {
            fired.extend(table.poll(at(2026, 1, 1, 0, 1, 0) + second * 1000));
        }
        assert_eq!(
            fired,
            vec![Firing { tenant: "b".into(), cron: "* * * * *".into(), scheduled_time_ms: at(2026, 1, 1, 0, 1, 0) }]
        );
        // Run in step to 01:00 and count: 60 for b, 12 for a's */5, 1 for a's hourly.
        let mut counts = std::collections::HashMap::new();
        let mut now = at(2026, 1, 1, 0, 1, 30);
        while now <= at(2026, 1, 1, 1, 0, 30) {
            for firing in table.poll(now) {
                assert!(firing.scheduled_time_ms <= now);
                assert_eq!(firing.scheduled_time_ms % 60_000, 0);
                *counts.entry((firing.tenant, firing.cron)).or_insert(0) += 1;
            }
            now += 15_000;
        }
        assert_eq!(counts[&("b".to_string(), "* * * * *".to_string())], 59);
        assert_eq!(counts[&("a".to_string(), "*/5 * * * *".to_string())], 12);
        assert_eq!(counts[&("a".to_string(), "0 * * * *".to_string())], 1);
        assert_eq!(table.skipped(), 0);
    }

    #[test]
    fn missed_occurrences_fire_once_for_the_latest() {
        let t0 = at(2026, 1, 1, 0, 0, 0);
        let mut table = CronTable::new();
        table.set_tenant("a", &["*/5 * * * *"], t0).unwrap();
        // The process was paused from 00:00 to 01:02:30: 12 occurrences were due (00:05..01:00).
        let fired = table.poll(at(2026, 1, 1, 1, 2, 30));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].scheduled_time_ms, at(2026, 1, 1, 1, 0, 0));
        assert_eq!(table.skipped(), 11);
        assert_eq!(table.poll_at(), Some(at(2026, 1, 1, 1, 5, 0)));
        assert!(table.poll(at(2026, 1, 1, 1, 4, 59)).is_empty());
        // A clock that steps back fires nothing again.
        assert!(table.poll(at(2026, 1, 1, 0, 30, 0)).is_empty());
        assert_eq!(table.poll(at(2026, 1, 1, 1, 5, 0)).len(), 1);
    }

    #[test]
    fn redeploy_keeps_next_times_and_replaces_schedules() {
        let t0 = at(2026, 1, 1, 0, 0, 0);
        let mut table = CronTable::new();
        table.set_tenant("a", &["0 * * * *"], t0).unwrap();
        // Redeployed at 00:59:59 with the same cron and a new one: the hourly still fires at 01:00.
        table.set_tenant("a", &["0 * * * *", "30 * * * *", "30 * * * *"], at(2026, 1, 1, 0, 59, 59)).unwrap();
        assert_eq!(table.len(), 2, "duplicates collapse");
        let fired = table.poll(at(2026, 1, 1, 1, 0, 0));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].cron, "0 * * * *");
        // An invalid expression changes nothing.
        assert!(table.set_tenant("a", &["bad"], t0).is_err());
        assert_eq!(table.len(), 2);
        table.set_tenant("a", &[], t0).unwrap();
        assert!(table.is_empty());
        assert_eq!(table.poll_at(), None);
    }
}
