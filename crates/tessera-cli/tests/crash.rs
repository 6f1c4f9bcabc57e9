//! Crash safety: the license server is killed with SIGKILL while clients check seats out and in;
//! after a restart the seats in use equal the leases granted and not returned — no lost seat, no
//! doubled seat. Requests in flight at the kill are retried with the same request id, as a client
//! does, and never take a second seat.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

mod support;
use support::{spawn, tessera};

#[derive(Debug, Clone)]
enum Pending {
    Request { device: String, request_id: String },
    Return { device: String, grant: Value },
}

fn capability(http: &reqwest::blocking::Client, url: &str, body: Value) -> Result<Value, String> {
    let resp = http
        .post(format!("{url}/api/v1/capability"))
        .json(&body)
        .send()
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let v: Value = resp.json().map_err(|e| e.to_string())?;
    // the claims, without verifying (the signature is tested elsewhere)
    let token = v["response"].as_str().ok_or("no response")?;
    let payload = token.split('.').nth(1).ok_or("bad token")?;
    let bytes = base64_decode(payload);
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = A.iter().position(|&a| a == c).unwrap() as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[test]
fn sigkill_under_load_loses_and_doubles_no_seat() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut bo_child, bo_url, key) = support::backoffice_with_floating_line(d, 1000);
    let init = tessera(
        &[
            "server",
            "init",
            "--data",
            "srv",
            "--producer-key",
            "bo/keys/producer.pub",
            "--hostid",
            "ethernet=0050569a3b01",
        ],
        d,
    );
    let token = init
        .split_whitespace()
        .find(|w| w.starts_with("tss_"))
        .unwrap()
        .to_string();
    // the log goes to a file, at the level the configuration sets
    let cfg = std::fs::read_to_string(d.join("srv/server.toml")).unwrap();
    std::fs::write(
        d.join("srv/server.toml"),
        cfg.replace(
            "log = \"info\"",
            "log = \"debug\"\nlog_file = \"server.log\"",
        ),
    )
    .unwrap();
    let (mut srv, url) = spawn(
        &[
            "server",
            "serve",
            "--data",
            "srv",
            "--listen",
            "127.0.0.1:0",
        ],
        d,
    );
    tessera(
        &[
            "server",
            "activate",
            "--server",
            &url,
            "--token",
            &token,
            "--backoffice",
            &bo_url,
            "--key",
            &format!("{key}:1000"),
        ],
        d,
    );

    // clients: check out, sometimes return, until the server dies
    let held: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let pending: Arc<Mutex<Vec<Pending>>> = Arc::default();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (held, pending, url) = (held.clone(), pending.clone(), url.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let device = format!("string=worker-{w}");
                for i in 0.. {
                    let request_id = format!("w{w}-{i}");
                    let body = json!({"operation": "request", "device_id": device, "request_id": request_id, "nonce": format!("nonce-{w}-{i}-0123456789"), "features": [{"name": "modeler"}]});
                    match capability(&http, &url, body) {
                        Ok(v) => {
                            let lease = v["grants"][0]["lease"].as_u64().expect("granted");
                            held.lock().unwrap().push((device.clone(), lease));
                            if i % 2 == 0 {
                                let grant = v["grants"][0].clone();
                                let body = support::return_body(&device, &format!("{request_id}-ret"), &format!("nonce-{w}-{i}-ret-0123456789"), &grant);
                                match capability(&http, &url, body) {
                                    Ok(_) => held.lock().unwrap().retain(|h| h.1 != lease),
                                    Err(_) => {
                                        pending.lock().unwrap().push(Pending::Return { device: device.clone(), grant });
                                        return;
                                    }
                                }
                            }
                        }
                        Err(_) => {
                            pending.lock().unwrap().push(Pending::Request { device: device.clone(), request_id });
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    srv.kill().unwrap(); // SIGKILL
    srv.wait().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let done = held.lock().unwrap().len();

    // restart; retry what was in flight, as a client would
    let (mut srv, url) = spawn(
        &[
            "server",
            "serve",
            "--data",
            "srv",
            "--listen",
            "127.0.0.1:0",
        ],
        d,
    );
    let http = reqwest::blocking::Client::new();
    for p in pending.lock().unwrap().clone() {
        match p {
            Pending::Request { device, request_id } => {
                let v = capability(&http, &url, json!({"operation": "request", "device_id": device, "request_id": request_id, "nonce": "nonce-retry-0123456789", "features": [{"name": "modeler"}]})).unwrap();
                let lease = v["grants"][0]["lease"].as_u64().unwrap();
                let mut h = held.lock().unwrap();
                if !h.iter().any(|x| x.1 == lease) {
                    h.push((device, lease));
                }
            }
            Pending::Return { device, grant } => {
                let lease = grant["lease"].as_u64().unwrap();
                capability(
                    &http,
                    &url,
                    support::return_body(
                        &device,
                        &format!("retry-ret-{lease}"),
                        "nonce-retry-0123456789",
                        &grant,
                    ),
                )
                .unwrap();
                held.lock().unwrap().retain(|h| h.1 != lease);
            }
        }
    }
    let status: Value = http
        .get(format!("{url}/api/v1/admin/status"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let used = status["features"][0]["used"].as_u64().unwrap();
    let expected = held.lock().unwrap().len() as u64;
    assert!(done > 10, "the load ran ({done} leases held at the kill)");
    assert_eq!(
        used, expected,
        "seats in use after the crash = leases granted and not returned"
    );
    assert_eq!(status["leases"].as_u64().unwrap(), expected);
    let log = std::fs::read_to_string(d.join("srv/server.log")).unwrap();
    assert_eq!(
        log.matches("license server starting").count(),
        2,
        "both starts logged to the file"
    );
    assert!(log.contains("DEBUG"), "at the configured level");
    srv.kill().unwrap();
    let _ = srv.wait();
    bo_child.kill().unwrap();
    let _ = bo_child.wait();
}
