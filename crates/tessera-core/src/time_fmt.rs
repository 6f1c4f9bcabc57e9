//! How times are written for people and in documents.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time};

/// `2027-12-31 23:59:59 UTC`: the form used in messages.
pub fn display_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
    ))
    .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// `2027-12-31`: the day only.
pub fn display_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Whether a date was given with or without a time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateBound {
    /// A day alone means the first instant of that day (for start dates).
    StartOfDay,
    /// A day alone means the last second of that day, 23:59:59 UTC (for expiry dates: "expires
    /// 2027-12-31" is usable on the 31st).
    EndOfDay,
}

/// Parses `YYYY-MM-DD` (UTC, placed by `bound`) or an RFC 3339 timestamp.
pub fn parse_time(s: &str, bound: DateBound) -> Result<OffsetDateTime, String> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let date = Date::parse(s, format_description!("[year]-[month]-[day]")).map_err(|_| {
        format!("'{s}' is not a date: write YYYY-MM-DD or an RFC 3339 time such as 2027-12-31T18:00:00Z")
    })?;
    let start = date.with_time(Time::MIDNIGHT).assume_utc();
    Ok(match bound {
        DateBound::StartOfDay => start,
        DateBound::EndOfDay => start + time::Duration::days(1) - time::Duration::seconds(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn dates_and_times() {
        assert_eq!(
            parse_time("2027-12-31", DateBound::StartOfDay).unwrap(),
            datetime!(2027-12-31 0:00 UTC)
        );
        assert_eq!(
            parse_time("2027-12-31", DateBound::EndOfDay).unwrap(),
            datetime!(2027-12-31 23:59:59 UTC)
        );
        assert_eq!(
            parse_time("2027-12-31T18:00:00+02:00", DateBound::EndOfDay).unwrap(),
            datetime!(2027-12-31 16:00 UTC)
        );
        assert!(parse_time("31/12/2027", DateBound::EndOfDay)
            .unwrap_err()
            .contains("YYYY-MM-DD"));
        assert_eq!(
            display_time(datetime!(2027-12-31 16:00 UTC)),
            "2027-12-31 16:00:00 UTC"
        );
    }
}
