//! The usage history on SQLite, and on PostgreSQL when `TESSERA_TEST_POSTGRES_URL` is set:
//! samples per minute (a minute written twice keeps the larger use, as two members of a cluster
//! sampling it do), read back in buckets, rolled up into hours and days keeping the most used and
//! the count, kept per instance.

use tessera_store::testing::{postgres_test_url_or_skip, TempPostgres, TempSqlite};
use tessera_store::{InstanceId, Resolution, UsageHistoryStore, UsageSample};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

fn site() -> InstanceId {
    InstanceId::on_site()
}

fn sample(version: &str, at: OffsetDateTime, used: i64, count: Option<i64>) -> UsageSample {
    UsageSample {
        feature: "modeler".into(),
        version: version.into(),
        at,
        used,
        count,
    }
}

const T0: OffsetDateTime = datetime!(2026-06-01 8:00 UTC);

async fn story<S: UsageHistoryStore>(s: &S) {
    // an hour of minutes: use climbs 0, 1, 2, … 59 (and a second version, uncounted)
    let minutes: Vec<UsageSample> = (0..60)
        .map(|m| sample("2.0", T0 + Duration::minutes(m), m, Some(40)))
        .chain([sample("1.0", T0, 7, None)])
        .collect();
    s.record_usage_samples(&site(), Resolution::Minute, &minutes)
        .await
        .unwrap();
    // another member samples minute 10 with less in use, and minute 11 with more: the larger stays
    s.record_usage_samples(
        &site(),
        Resolution::Minute,
        &[
            sample("2.0", T0 + Duration::minutes(10), 3, Some(40)),
            sample("2.0", T0 + Duration::seconds(11 * 60 + 30), 99, Some(40)),
        ],
    )
    .await
    .unwrap();
    let got = s
        .usage_history(
            &site(),
            "modeler",
            T0,
            T0 + Duration::hours(1),
            Resolution::Minute,
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 61, "{got:?}");
    assert_eq!(got[0], sample("1.0", T0, 7, None));
    let v2: Vec<&UsageSample> = got.iter().filter(|p| p.version == "2.0").collect();
    assert_eq!(v2[10].used, 10);
    assert_eq!(v2[11].used, 99);
    assert_eq!(v2[11].at, T0 + Duration::minutes(11));
    // the same hour in hour buckets: the most used, the count
    let hourly = s
        .usage_history(
            &site(),
            "modeler",
            T0,
            T0 + Duration::hours(1),
            Resolution::Hour,
        )
        .await
        .unwrap();
    assert_eq!(
        hourly,
        vec![sample("1.0", T0, 7, None), sample("2.0", T0, 99, Some(40))]
    );
    // the range is [from, to)
    let part = s
        .usage_history(
            &site(),
            "modeler",
            T0 + Duration::minutes(58),
            T0 + Duration::minutes(59),
            Resolution::Minute,
        )
        .await
        .unwrap();
    assert_eq!(
        part,
        vec![sample("2.0", T0 + Duration::minutes(58), 58, Some(40))]
    );
    // another feature and another instance have nothing of it
    assert!(s
        .usage_history(
            &site(),
            "render",
            T0,
            T0 + Duration::hours(1),
            Resolution::Minute
        )
        .await
        .unwrap()
        .is_empty());
    let other = InstanceId::new("hosted-1").unwrap();
    assert!(s
        .usage_history(
            &other,
            "modeler",
            T0,
            T0 + Duration::hours(1),
            Resolution::Minute
        )
        .await
        .unwrap()
        .is_empty());

    // the roll-up folds only whole hours before the time given: 09:30 folds 08:00-09:00
    s.record_usage_samples(
        &site(),
        Resolution::Minute,
        &[sample("2.0", T0 + Duration::minutes(65), 5, Some(41))],
    )
    .await
    .unwrap();
    let folded = s
        .roll_up_usage(
            &site(),
            Resolution::Minute,
            Resolution::Hour,
            T0 + Duration::minutes(90),
        )
        .await
        .unwrap();
    assert_eq!(folded, 61);
    let after = s
        .usage_history(
            &site(),
            "modeler",
            T0,
            T0 + Duration::hours(2),
            Resolution::Minute,
        )
        .await
        .unwrap();
    assert_eq!(
        after,
        vec![
            sample("1.0", T0, 7, None),
            sample("2.0", T0, 99, Some(40)),
            sample("2.0", T0 + Duration::minutes(65), 5, Some(41)),
        ],
        "the hours as they are, the minute not yet folded as it is"
    );
    // rolling up again folds nothing and changes nothing; a late minute of a folded hour (a
    // member that was behind) keeps the hour's larger use
    assert_eq!(
        s.roll_up_usage(
            &site(),
            Resolution::Minute,
            Resolution::Hour,
            T0 + Duration::minutes(90)
        )
        .await
        .unwrap(),
        0
    );
    s.record_usage_samples(
        &site(),
        Resolution::Minute,
        &[sample("2.0", T0 + Duration::minutes(3), 1, Some(40))],
    )
    .await
    .unwrap();
    s.roll_up_usage(
        &site(),
        Resolution::Minute,
        Resolution::Hour,
        T0 + Duration::minutes(90),
    )
    .await
    .unwrap();
    let hours = s
        .usage_history(
            &site(),
            "modeler",
            T0,
            T0 + Duration::hours(1),
            Resolution::Hour,
        )
        .await
        .unwrap();
    assert_eq!(hours[1], sample("2.0", T0, 99, Some(40)));

    // hours into days
    let day = datetime!(2026-06-01 0:00 UTC);
    s.record_usage_samples(
        &site(),
        Resolution::Hour,
        &[sample("2.0", day + Duration::hours(20), 120, Some(42))],
    )
    .await
    .unwrap();
    let folded = s
        .roll_up_usage(
            &site(),
            Resolution::Hour,
            Resolution::Day,
            day + Duration::days(1),
        )
        .await
        .unwrap();
    assert_eq!(folded, 3);
    let days = s
        .usage_history(
            &site(),
            "modeler",
            day,
            day + Duration::days(1),
            Resolution::Day,
        )
        .await
        .unwrap();
    assert_eq!(
        days,
        vec![
            sample("1.0", day, 7, None),
            sample("2.0", day, 120, Some(42))
        ]
    );
    // a roll-up the wrong way round is refused
    assert!(s
        .roll_up_usage(&site(), Resolution::Day, Resolution::Hour, day)
        .await
        .is_err());
}

#[tokio::test]
async fn usage_history_on_sqlite() {
    let db = TempSqlite::new().await.unwrap();
    story(db.store()).await;
}

#[tokio::test]
async fn usage_history_on_postgres() {
    let Some(base) = postgres_test_url_or_skip("usage_history_on_postgres").unwrap() else {
        return;
    };
    let db = TempPostgres::create(&base).await.unwrap();
    story(db.store()).await;
    db.cleanup().await.unwrap();
}
