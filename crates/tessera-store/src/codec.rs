//! Conversions between Rust values and their portable column forms.

use time::OffsetDateTime;

use crate::StoreError;

/// A time as whole unix seconds (sub-second parts are dropped).
pub(crate) fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// [`unix`] for an optional time.
pub(crate) fn opt_unix(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(unix)
}

/// Reads a stored unix time; `column` names it in the error.
pub(crate) fn time(secs: i64, column: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| {
        StoreError::corrupt(format!(
            "{column} holds {secs}, which is not a valid time: {e}"
        ))
    })
}

/// [`time`] for an optional column.
pub(crate) fn opt_time(
    secs: Option<i64>,
    column: &str,
) -> Result<Option<OffsetDateTime>, StoreError> {
    secs.map(|s| time(s, column)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_whole_seconds_and_rejects_out_of_range() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(time(unix(t), "c").unwrap(), t);
        assert_eq!(opt_time(opt_unix(None), "c").unwrap(), None);
        let err = time(i64::MAX, "licenses.issued_at").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("licenses.issued_at"));
    }
}
