//! What the license server does about clients that ask too much: leases per device capped, capability
//! requests rate-limited per address (429 with Retry-After), slow headers and bodies cut off, a
//! connection limit; unknown paths and wrong methods answered as problem+json.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tessera_testkit::{producer_key, BackOfficeKit, ServerKit};

/// A back office on a free port with product `cad` (feature `modeler`) and one floating line of
/// `count` seats: its URL, the line's key and the producer key (PEM).
async fn backoffice(dir: &Path, count: u32) -> (String, String, String) {
    let bo = BackOfficeKit::new()
        .in_dir(dir)
        .floating(count)
        .start()
        .await;
    let pem = bo.producer_pem();
    let (url, keys) = bo.detach();
    (url, keys[0].clone(), pem)
}

/// A server in `dir/srv` with these lines added to its server.toml, serving on a free port: its URL
/// and admin token (the server stops when the sender is dropped).
async fn server(
    dir: &Path,
    producer_pem: &str,
    extra: &str,
) -> (String, String, tokio::sync::oneshot::Sender<()>) {
    let s = ServerKit::new(dir, producer_pem).config(extra).init().await;
    let (url, stop) = s.start().await.split();
    (url, s.token, stop)
}

fn request(device: &str, id: &str) -> Value {
    json!({"operation": "request", "device_id": device, "request_id": id,
        "nonce": format!("nonce-{id}-0123456789"), "features": [{"name": "modeler"}]})
}

async fn post(url: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(body)
        .send()
        .await
        .unwrap()
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_cannot_hold_more_leases_than_the_cap() {
    let bo_dir = tempfile::tempdir().unwrap();
    let (bo_url, key, pem) = backoffice(bo_dir.path(), 10).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, token, _stop) = server(dir.path(), &pem, "max_leases_per_device = 2").await;
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/admin/activate"))
        .bearer_auth(&token)
        .json(&json!({"backoffice": bo_url, "activations": [{"key": key, "count": 10}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for id in ["r1", "r2"] {
        let r = post(&url, &request("string=greedy", id)).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v["response"].is_string(), "{v}");
    }
    // a third lease for the same device, whichever user it names, is refused
    for body in [
        request("string=greedy", "r3"),
        json!({"operation": "request", "device_id": "string=greedy", "user": "someone-else",
            "request_id": "r4", "nonce": "nonce-r4-0123456789", "features": [{"name": "modeler"}]}),
    ] {
        let r = post(&url, &body).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let claims: Value = tessera_testkit::answer_claims(&v);
        assert_eq!(claims["grants"], json!([]), "{claims}");
        assert_eq!(claims["denials"][0]["code"], "lease_limit", "{claims}");
        assert!(
            claims["denials"][0]["message"]
                .as_str()
                .unwrap()
                .contains("max_leases_per_device"),
            "{claims}"
        );
    }
    // other devices are not affected
    let r = post(&url, &request("string=modest", "r1")).await;
    assert_eq!(r.status(), 200);
    let status: Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/admin/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["leases"], 3, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_requests_are_rate_limited_per_address() {
    let bo_dir = tempfile::tempdir().unwrap();
    let pem = producer_key(bo_dir.path()).await;

    // loopback is exempt by default (a proxy on this machine, the throughput bench)
    let dir = tempfile::tempdir().unwrap();
    let (url, _, stop) = server(dir.path(), &pem, "capability_requests_per_minute = 3").await;
    for i in 0..10 {
        let r = post(&url, &request("string=a", &format!("r{i}"))).await;
        assert_ne!(r.status(), 429, "request {i}");
    }
    drop(stop);

    let dir = tempfile::tempdir().unwrap();
    let (url, _, _stop) = server(
        dir.path(),
        &pem,
        "capability_requests_per_minute = 3\nrate_limit_loopback = true",
    )
    .await;
    for i in 0..3 {
        let r = post(&url, &request("string=a", &format!("r{i}"))).await;
        assert_ne!(r.status(), 429, "request {i}");
    }
    // a fresh device id does not help: the address counts
    let r = post(&url, &request("string=another", "r9")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(content_type(&r), "application/problem+json");
    let wait: u64 = r.headers()[reqwest::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "Retry-After {wait}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "rate_limited");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("capability_requests_per_minute"),
        "{v}"
    );
    // other endpoints are not limited by it
    let r = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tessera_capability_rate_limited_total 1"),
        "{metrics}"
    );
}

/// Reads until the server closes the connection (or 30 s pass, which fails the test); what it sent.
fn read_to_close(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_bodies_are_cut_off() {
    let bo_dir = tempfile::tempdir().unwrap();
    let pem = producer_key(bo_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, _, _stop) = server(dir.path(), &pem, "request_timeout_seconds = 1").await;
    let addr = url.trim_start_matches("http://").to_string();
    tokio::task::spawn_blocking(move || {
        // headers that never end
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"POST /api/v1/capability HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let got = read_to_close(&mut s);
        assert!(!got.contains("200 OK"), "{got}");
        // a body that never ends
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"POST /api/v1/capability HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"operation\":")
            .unwrap();
        let got = read_to_close(&mut s);
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(got.contains("application/problem+json"), "{got}");
        assert!(got.contains("\"code\":\"request_timeout\""), "{got}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed() {
    let bo_dir = tempfile::tempdir().unwrap();
    let pem = producer_key(bo_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, _, _stop) = server(dir.path(), &pem, "max_connections = 2").await;
    let addr = url.trim_start_matches("http://").to_string();
    tokio::task::spawn_blocking(move || {
        let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        let ok = |s: &mut TcpStream| {
            s.write_all(get).unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200")
        };
        // two kept-alive connections, each served
        let mut a = TcpStream::connect(&addr).unwrap();
        let mut b = TcpStream::connect(&addr).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        assert!(ok(&mut a));
        assert!(ok(&mut b));
        // a third is closed without an answer
        let mut c = TcpStream::connect(&addr).unwrap();
        let _ = c.write_all(get);
        let got = read_to_close(&mut c);
        assert!(got.is_empty(), "{got}");
        // once one ends, a new one is served (the server may take a moment to see it end)
        drop(a);
        let served = (0..100).any(|_| {
            let mut d = TcpStream::connect(&addr).unwrap();
            d.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let _ = d.write_all(get);
            let mut buf = [0u8; 256];
            match d.read(&mut buf) {
                Ok(n) if n > 0 => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
                _ => {
                    std::thread::sleep(Duration::from_millis(20));
                    false
                }
            }
        });
        assert!(served);
        assert!(ok(&mut b));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_wrong_methods_are_problems() {
    let bo_dir = tempfile::tempdir().unwrap();
    let pem = producer_key(bo_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, _, _stop) = server(dir.path(), &pem, "").await;
    let r = reqwest::get(format!("{url}/api/v1/nothing-here"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(content_type(&r), "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "not_found");
    assert_eq!(v["status"], 404);
    let r = reqwest::get(format!("{url}/api/v1/capability"))
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(content_type(&r), "application/problem+json");
    let allow = r.headers()[reqwest::header::ALLOW]
        .to_str()
        .unwrap()
        .to_string();
    assert!(allow.contains("POST"), "{allow}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "method_not_allowed");
}
