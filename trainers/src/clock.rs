//! The one clock of lmf, and dates without a date crate. Everything that prints the time (the
//! Llama 3 tool prompt's "Today Date", a chat template's `strftime_now`, log lines) asks
//! [`now_unix`], which the environment variable `LMF_NOW` can fix (a Unix time in seconds, or a
//! UTC `YYYY-MM-DD[THH:MM:SS]`): a run can render exactly the date a LLaMA-Factory run saw,
//! and tests never depend on the day they run. Times are printed as proleptic Gregorian UTC
//! dates with the `strftime` codes chat templates use; lmf never reads the local time zone
//! (LLaMA-Factory prints local time: set `LMF_NOW` where the two must agree).

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The variable that fixes [`now_unix`].
pub const NOW_ENV: &str = "LMF_NOW";

/// Seconds since the Unix epoch: `LMF_NOW` when it is set and valid, else the system clock.
pub fn now_unix() -> i64 {
    if let Some(secs) = std::env::var(NOW_ENV).ok().and_then(|v| parse_time(&v)) {
        return secs;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `now_unix()` printed with `fmt` (see [`format_unix`]).
pub fn now(fmt: &str) -> String {
    format_unix(now_unix(), fmt)
}

/// Checks `LMF_NOW` once, up front: `Err` names the variable and the value when it is set to
/// something [`parse_time`] does not read (instead of silently using the system clock).
pub fn check_env() -> Result<(), String> {
    match std::env::var(NOW_ENV) {
        Ok(v) if parse_time(&v).is_none() => Err(format!(
            "{NOW_ENV}={v:?} is not a Unix time in seconds or a UTC date `YYYY-MM-DD[THH:MM:SS]`"
        )),
        _ => Ok(()),
    }
}

/// A Unix time in seconds (`1721952000`) or a UTC date `YYYY-MM-DD`, optionally followed by
/// `THH:MM:SS` or ` HH:MM:SS`.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut ymd = date.splitn(3, '-');
    let year: i64 = ymd.next()?.parse().ok()?;
    let month: u32 = ymd.next()?.parse().ok()?;
    let day: u32 = ymd.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    if let Some(time) = time {
        let mut hms = time.splitn(3, ':');
        let h: i64 = hms.next()?.parse().ok()?;
        let m: i64 = hms.next()?.parse().ok()?;
        let s: i64 = hms.next().map_or(Some(0), |s| s.parse().ok())?;
        if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..60).contains(&s) {
            return None;
        }
        secs += h * 3600 + m * 60 + s;
    }
    Some(secs)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `(year, month, day)` (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `(year, month 1..=12, day 1..=31)` of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// `time.strftime(fmt)` of the UTC time `secs` after the Unix epoch, for the codes
/// `%a %A %b %B %d %H %I %j %m %M %p %S %y %Y %%` (others are printed as written).
pub fn format_unix(secs: i64, fmt: &str) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = CUM[month as usize - 1] + day + u32::from(month > 2 && is_leap(year));
    let month_name = MONTHS[month as usize - 1];

    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('b') => out.push_str(&month_name[..3]),
            Some('B') => out.push_str(month_name),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('I') => out.push_str(&format!("{:02}", (hour + 11) % 12 + 1)),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('Y') => out.push_str(&year.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_strftime() {
        // Expected strings: Python's time.strftime(fmt, time.gmtime(secs)).
        assert_eq!(format_unix(1_721_952_000, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            format_unix(951_782_400 + 3_723, "%A %B %d %j %H:%M:%S %I%p %y %%"),
            "Tuesday February 29 060 01:02:03 01AM 00 %"
        );
        assert_eq!(format_unix(0, "%a %Y-%m-%d"), "Thu 1970-01-01");
    }

    #[test]
    fn parses_what_lmf_now_takes() {
        assert_eq!(parse_time("1721952000"), Some(1_721_952_000));
        assert_eq!(parse_time("2024-07-26"), Some(1_721_952_000));
        assert_eq!(parse_time("2000-02-29T01:02:03"), Some(951_782_400 + 3_723));
        assert_eq!(parse_time("2000-02-29 01:02"), Some(951_782_400 + 3_720));
        assert_eq!(parse_time("1969-12-31"), Some(-86_400));
        for bad in [
            "",
            "2023-02-29",
            "2024-13-01",
            "2024-07-26T24:00:00",
            "26 Jul 2024",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        // Every day of four centuries goes there and back.
        for days in (-146_097..2 * 146_097).step_by(7) {
            let secs = days * 86_400;
            assert_eq!(parse_time(&format_unix(secs, "%Y-%m-%d")), Some(secs));
        }
    }
}
