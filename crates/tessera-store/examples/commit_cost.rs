use std::time::Instant;
use tessera_store::{LeaseChange, LeaseRow, LeaseStore};
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let store = tessera_store::open(&format!("sqlite://{dir}/t.db")).await.unwrap();
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    for (label, n) in [("put1", 1usize), ("put20", 20), ("empty-ish", 0)] {
        let start = Instant::now();
        for i in 0..1000i64 {
            let mut ch: Vec<LeaseChange> = (0..n as i64).map(|j| LeaseChange::Put(LeaseRow{id: i*100+j, device: "d".into(), request_id: "r".into(), record_key: "k".into(), count:1, overdraft:0, expires_at: t, borrowed:false})).collect();
            if n == 0 { ch.push(LeaseChange::Delete{id: -1}); }
            store.apply_lease_changes(ch).await.unwrap();
        }
        println!("{label}: {:.1} us per commit", start.elapsed().as_micros() as f64 / 1000.0);
    }
    if let tessera_store::AnyStore::Sqlite(s) = &store {
        let start = Instant::now();
        for _ in 0..1000 {
            let tx = s.pool().begin().await.unwrap();
            tx.commit().await.unwrap();
        }
        println!("begin+commit: {:.1} us", start.elapsed().as_micros() as f64 / 1000.0);
        let start = Instant::now();
        for _ in 0..1000 {
            let c = s.pool().acquire().await.unwrap();
            drop(c);
        }
        println!("acquire: {:.1} us", start.elapsed().as_micros() as f64 / 1000.0);
        let mut c = s.pool().acquire().await.unwrap();
        let start = Instant::now();
        for _ in 0..1000 {
            sqlx::query("SELECT 1").execute(&mut *c).await.unwrap();
        }
        println!("statement: {:.1} us", start.elapsed().as_micros() as f64 / 1000.0);
    }
}
