//! Scale-out as an administrator runs it: two `tessera server serve` processes over one PostgreSQL
//! database (`cluster = true`, a copied data directory) serve one pool of 5 seats to 40 concurrent
//! clients split between them, and never grant a sixth. Runs when `TESSERA_TEST_POSTGRES_URL` is
//! set (CI sets it).

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

mod support;
use support::{spawn, tessera, Serve};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn two_server_processes_over_one_postgres_share_one_pool() {
    let Some(base) = tessera_store::testing::postgres_test_url_or_skip(
        "two_server_processes_over_one_postgres_share_one_pool",
    )
    .unwrap() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt
        .block_on(tessera_store::testing::TempPostgres::create(&base))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bo, bo_url, key) = support::backoffice_with_floating_line(d, 5);
    let _bo = Serve(bo);
    let init = tessera(
        &[
            "server",
            "init",
            "--data",
            "a",
            "--producer-key",
            "bo/keys/producer.pub",
            "--database",
            db.url(),
            "--hostid",
            "ethernet=0050569a3b11",
        ],
        d,
    );
    let token = init
        .split_whitespace()
        .find(|w| w.starts_with("tss_"))
        .unwrap()
        .to_string();
    let cfg = std::fs::read_to_string(d.join("a/server.toml")).unwrap();
    std::fs::write(
        d.join("a/server.toml"),
        format!(
            "{cfg}cluster = true\nanchor_dir = \"{}\"\n",
            d.join("anchors-a").display()
        ),
    )
    .unwrap();
    let (a, url_a) = spawn(
        &["server", "serve", "--data", "a", "--listen", "127.0.0.1:0"],
        d,
    );
    let _a = Serve(a);
    tessera(
        &[
            "server",
            "activate",
            "--server",
            &url_a,
            "--token",
            &token,
            "--backoffice",
            &bo_url,
            "--key",
            &format!("{key}:5"),
        ],
        d,
    );
    // the second member: a copy of the data directory (same server key and hostid)
    copy_dir(&d.join("a"), &d.join("b"));
    let _ = std::fs::remove_file(d.join("b/server.lock"));
    let cfg = std::fs::read_to_string(d.join("b/server.toml"))
        .unwrap()
        .replace("anchors-a", "anchors-b");
    std::fs::write(d.join("b/server.toml"), cfg).unwrap();
    let (b, url_b) = spawn(
        &["server", "serve", "--data", "b", "--listen", "127.0.0.1:0"],
        d,
    );
    let _b = Serve(b);

    // one seat through each process first (so both are seen to grant: which one wins a race is
    // up to the scheduler), then 38 clients at once, half on each process, for the other 3
    let granted: Arc<Mutex<Vec<(String, String, Value)>>> = Arc::default();
    for (i, url) in [(40, &url_a), (41, &url_b)] {
        let (device, v) = checkout(url, i);
        let grant = support::claims(&v)["grants"][0].clone();
        assert!(grant["lease"].is_u64(), "{url} granted nothing: {v}");
        granted.lock().unwrap().push((url.clone(), device, grant));
    }
    let threads: Vec<_> = (0..38)
        .map(|i| {
            let url = if i % 2 == 0 {
                url_a.clone()
            } else {
                url_b.clone()
            };
            let granted = granted.clone();
            std::thread::spawn(move || {
                let (device, v) = checkout(&url, i);
                let claims = support::claims(&v);
                if claims["grants"][0]["lease"].is_u64() {
                    granted
                        .lock()
                        .unwrap()
                        .push((url, device, claims["grants"][0].clone()));
                } else {
                    assert_eq!(claims["denials"][0]["code"], "all_in_use", "{claims}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let granted = granted.lock().unwrap().clone();
    assert_eq!(
        granted.len(),
        5,
        "exactly the count, over both processes: {granted:?}"
    );
    assert!(
        granted.iter().any(|g| g.0 == url_a) && granted.iter().any(|g| g.0 == url_b),
        "both processes granted seats: {granted:?}"
    );
    // a seat returned through one process is free on the other
    let (url, device, grant) = &granted[0];
    let other = if *url == url_a { &url_b } else { &url_a };
    let http = reqwest::blocking::Client::new();
    let v: Value = http
        .post(format!("{other}/api/v1/capability"))
        .json(&support::return_body(
            device,
            "ret",
            "nonce-ret-0123456789",
            grant,
        ))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(support::claims(&v)["denials"], json!([]));
    let v: Value = http
        .post(format!("{url}/api/v1/capability"))
        .json(&json!({"operation": "request", "device_id": "string=late", "request_id": "r", "nonce": "nonce-late-0123456789", "features": [{"name": "modeler"}]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(support::claims(&v)["grants"][0]["lease"].is_u64());
    // both see the pool full again (a preview goes through a round, which catches up first)
    for u in [&url_a, &url_b] {
        let v: Value = http
            .post(format!("{u}/api/v1/capability"))
            .json(&json!({"operation": "preview", "device_id": "string=probe", "request_id": "p", "nonce": "nonce-probe-0123456789", "features": [{"name": "modeler"}]}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            support::claims(&v)["denials"][0]["code"],
            "all_in_use",
            "{u}"
        );
    }
    let s: Value = http
        .get(format!("{url_b}/api/v1/admin/status"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(s["features"][0]["used"], 5, "{s}");
    drop((_a, _b));
    rt.block_on(db.cleanup()).unwrap();
}

/// Device `string=ws-I` asks the server at `url` for a seat; the device and the answer.
fn checkout(url: &str, i: u32) -> (String, Value) {
    let device = format!("string=ws-{i}");
    let v: Value = reqwest::blocking::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(&json!({"operation": "request", "device_id": device, "request_id": "r", "nonce": format!("nonce-{i:04}-0123456789"), "features": [{"name": "modeler"}]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    (device, v)
}
