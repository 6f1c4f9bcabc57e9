//! The README's back-office walk-through, as a user types it: init, define a product, a customer
//! and an entitlement, serve, then activate from "another terminal" online, offline with files and
//! by unlock code; revoke and re-host. Everything through the `tessera` binary (and the /activate
//! page over HTTP, as a browser would post it).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod support;
use support::{spawn, Serve};

fn tessera(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(cwd)
        .env_remove("TESSERA_BACKOFFICE_DATA")
        .env_remove("TESSERA_BACKOFFICE_DATABASE")
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn json(o: Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap()
}

#[test]
fn producer_and_customer_walk_through() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let init = json(tessera(
        &[
            "backoffice",
            "init",
            "--data",
            "bo",
            "--issuer",
            "Example Software Ltd.",
            "--json",
        ],
        d,
    ));
    assert_eq!(init["admin_password"].as_str().unwrap().len(), 20);
    ok(tessera(
        &[
            "backoffice",
            "product",
            "add",
            "--data",
            "bo",
            "--id",
            "cad",
            "--name",
            "ACME CAD",
            "--feature",
            "modeler:2.0",
            "--feature",
            "render",
            "--feature",
            "export",
            "--basic",
            "modeler",
        ],
        d,
    ));
    let customer = json(tessera(
        &[
            "backoffice",
            "customer",
            "add",
            "--data",
            "bo",
            "--name",
            "ACME",
            "--json",
        ],
        d,
    ));
    let cid = customer["id"].as_str().unwrap();
    let ent = json(tessera(
        &[
            "backoffice",
            "entitlement",
            "create",
            "--data",
            "bo",
            "--customer",
            cid,
            "--line",
            "product=cad,model=floating,count=10",
            "--line",
            "product=cad,model=node_locked,count=1,features=modeler+render",
            "--line",
            "product=cad,model=node_locked,count=1,features=export",
            "--line",
            "product=cad,model=node_locked,count=1",
            "--json",
        ],
        d,
    ));
    let keys: Vec<String> = ent["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect();
    // a bad line is refused with the reason
    let o = tessera(
        &[
            "backoffice",
            "entitlement",
            "create",
            "--data",
            "bo",
            "--customer",
            cid,
            "--line",
            "product=cad,model=floating",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("count=… is required"));

    // serve on a free port and read the address it prints
    let (child, url) = spawn(
        &[
            "backoffice",
            "serve",
            "--data",
            "bo",
            "--listen",
            "127.0.0.1:0",
        ],
        d,
    );
    let _serve = Serve(child);

    // a device online
    let out = ok(tessera(
        &[
            "client",
            "activate",
            "--url",
            &url,
            "--key",
            &keys[1],
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--out",
            "cad.lic",
        ],
        d,
    ));
    assert!(out.contains("written to cad.lic"), "{out}");
    ok(tessera(
        &[
            "license",
            "verify",
            "cad.lic",
            "--public-key",
            "bo/keys/producer.pub",
        ],
        d,
    ));
    let status = ok(tessera(
        &[
            "client",
            "status",
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--license",
            "cad.lic",
            "--state",
            "st",
            "modeler",
            "render",
        ],
        d,
    ));
    assert!(status.contains("modeler 1.0: yes (License)"), "{status}");
    let o = tessera(
        &[
            "client",
            "status",
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--license",
            "cad.lic",
            "--state",
            "st",
            "export",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("does not include export"));
    // the floating key is not for a device: the refusal says why
    let o = tessera(
        &[
            "client",
            "activate",
            "--url",
            &url,
            "--key",
            &keys[0],
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--out",
            "x.lic",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong_product"));

    // a device offline, with files
    ok(tessera(
        &[
            "client",
            "offline-request",
            "--key",
            &keys[2],
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--out",
            "request.txt",
        ],
        d,
    ));
    ok(tessera(
        &[
            "backoffice",
            "offline",
            "respond",
            "--data",
            "bo",
            "request.txt",
            "--out",
            "response.txt",
        ],
        d,
    ));
    let first = std::fs::read_to_string(d.join("response.txt")).unwrap();
    ok(tessera(
        &[
            "backoffice",
            "offline",
            "respond",
            "--data",
            "bo",
            "request.txt",
            "--out",
            "response2.txt",
        ],
        d,
    ));
    assert_eq!(
        std::fs::read_to_string(d.join("response2.txt")).unwrap(),
        first,
        "same request, same answer"
    );
    ok(tessera(
        &[
            "client",
            "offline-apply",
            "response.txt",
            "--producer-key",
            "bo/keys/producer.pub",
            "--out",
            "export.lic",
        ],
        d,
    ));
    ok(tessera(
        &[
            "license",
            "verify",
            "export.lic",
            "--public-key",
            "bo/keys/producer.pub",
        ],
        d,
    ));

    // a device by unlock code, typed from the page
    let pc = json(tessera(&["hostid", "--product", "cad", "--json"], d));
    let pc = pc["pc_identifier"]
        .as_str()
        .expect("this machine has a PC identifier")
        .to_string();
    let page = reqwest::blocking::Client::new()
        .post(format!("{url}/activate"))
        .form(&[("key", keys[3].as_str()), ("pc_id", pc.as_str())])
        .send()
        .unwrap()
        .text()
        .unwrap();
    let code = page
        .split("id=\"unlock-code\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_string();
    let typed = code.to_lowercase().replace('-', " ");
    let out = ok(tessera(
        &[
            "client",
            "unlock",
            "--code",
            &typed,
            "--key",
            &keys[3],
            "--product",
            "cad",
            "--unlock-key",
            "bo/keys/unlock.pub",
            "--features",
            "modeler,render,export",
        ],
        d,
    ));
    assert!(out.contains("unlocks modeler, render, export"), "{out}");

    // a license server activated with the floating key, from the command line
    let init = ok(tessera(
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
    ));
    let token = init
        .split_whitespace()
        .find(|w| w.starts_with("tss_"))
        .unwrap()
        .to_string();
    let (srv, srv_url) = spawn(
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
    let _srv = Serve(srv);
    let key_count = format!("{}:4", keys[0]);
    let out = ok(tessera(
        &[
            "server",
            "activate",
            "--server",
            &srv_url,
            "--token",
            &token,
            "--backoffice",
            &url,
            "--key",
            &key_count,
        ],
        d,
    ));
    assert!(out.contains("serves 3 feature record(s)"), "{out}");
    let out = ok(tessera(
        &["server", "status", "--server", &srv_url, "--token", &token],
        d,
    ));
    assert!(out.contains("modeler 2.0  0 used of 4"), "{out}");
    // the back office the activation went to, where a sync goes
    assert!(out.contains(&format!("  back office: {url}")), "{out}");
    // and a second key offline, with files
    let e2 = json(tessera(
        &[
            "backoffice",
            "entitlement",
            "create",
            "--data",
            "bo",
            "--customer",
            cid,
            "--line",
            "product=cad,model=floating,count=2",
            "--json",
        ],
        d,
    ));
    let offline_key = format!("{}:2", e2["lines"][0]["key"].as_str().unwrap());
    ok(tessera(
        &[
            "server",
            "offline",
            "request",
            "--server",
            &srv_url,
            "--token",
            &token,
            "--key",
            &offline_key,
            "--out",
            "srv-request.txt",
        ],
        d,
    ));
    ok(tessera(
        &[
            "backoffice",
            "offline",
            "respond",
            "--data",
            "bo",
            "srv-request.txt",
            "--out",
            "srv-response.txt",
        ],
        d,
    ));
    let out = ok(tessera(
        &[
            "server",
            "offline",
            "apply",
            "--server",
            &srv_url,
            "--token",
            &token,
            "srv-response.txt",
        ],
        d,
    ));
    assert!(out.contains("serves 6 feature record(s)"), "{out}");
    // the same (older) response applied again after a newer bundle: refused as a replay
    // (issue times are whole seconds: let one pass so the new bundle is newer)
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(tessera(
        &[
            "server",
            "activate",
            "--server",
            &srv_url,
            "--token",
            &token,
            "--backoffice",
            &url,
            "--key",
            &key_count,
        ],
        d,
    ));
    let o = tessera(
        &[
            "server",
            "offline",
            "apply",
            "--server",
            &srv_url,
            "--token",
            &token,
            "srv-response.txt",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("replayed answer"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = ok(tessera(
        &["server", "sync", "--server", &srv_url, "--token", &token],
        d,
    ));
    assert!(out.contains("synced"), "{out}");
    // the same renewal with files (a server that never goes online), and its confirmation
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let at = ["--server", srv_url.as_str(), "--token", token.as_str()];
    let with_at = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(at.iter())
            .map(ToString::to_string)
            .collect()
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(tessera(&a, d))
    };
    let out = run(with_at(&[
        "server",
        "offline",
        "update",
        "--out",
        "srv-update.txt",
    ]));
    assert!(out.contains("srv-update.txt"), "{out}");
    run(vec![
        "backoffice".into(),
        "offline".into(),
        "respond".into(),
        "--data".into(),
        "bo".into(),
        "srv-update.txt".into(),
        "--out".into(),
        "srv-renewal.txt".into(),
    ]);
    let out = run(with_at(&["server", "offline", "apply", "srv-renewal.txt"]));
    assert!(out.contains("applied"), "{out}");
    run(with_at(&[
        "server",
        "offline",
        "confirm",
        "--out",
        "srv-confirm.txt",
    ]));
    let out = run(vec![
        "backoffice".into(),
        "offline".into(),
        "respond".into(),
        "--data".into(),
        "bo".into(),
        "srv-confirm.txt".into(),
        "--out".into(),
        "unused.txt".into(),
    ]);
    assert!(
        out.starts_with("confirmed: license server ethernet=0050569a3b01 serves license"),
        "{out}"
    );
    assert!(!d.join("unused.txt").exists());
    let usage = ok(tessera(&["backoffice", "usage", "list", "--data", "bo"], d));
    assert!(usage.contains("server:ethernet=0050569a3b01"), "{usage}");
    let out = ok(tessera(
        &[
            "client",
            "borrow",
            "--server",
            &srv_url,
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--feature",
            "render",
            "--days",
            "30",
            "--state",
            "bw",
        ],
        d,
    ));
    assert!(out.contains("borrowed render"), "{out}");
    let status = ok(tessera(
        &[
            "client",
            "status",
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--state",
            "bw",
            "render",
        ],
        d,
    ));
    assert!(
        status.contains("render 1.0: yes (Borrowed, 30 days left)"),
        "{status}"
    );
    // the producer's offline policy (30 days) is the longest borrow
    let o = tessera(
        &[
            "client",
            "borrow",
            "--server",
            &srv_url,
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--feature",
            "modeler",
            "--days",
            "31",
            "--state",
            "bw",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("1 to 30"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = ok(tessera(
        &[
            "client",
            "return",
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--feature",
            "render",
            "--state",
            "bw",
        ],
        d,
    ));
    assert!(out.contains("returned the borrowed render"), "{out}");
    let out = ok(tessera(
        &[
            "client",
            "verify",
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--license",
            "cad.lic",
            "--state",
            "vf",
        ],
        d,
    ));
    assert!(out.contains("valid: cad.lic"), "{out}");
    let out = ok(tessera(
        &[
            "client",
            "checkout",
            "--server",
            &srv_url,
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--feature",
            "modeler",
            "--hold",
            "0",
            "--state",
            "co",
        ],
        d,
    ));
    assert!(
        out.contains("checked out modeler 1.0: lease") && out.contains("returned lease"),
        "{out}"
    );
    let o = tessera(
        &["server", "status", "--server", &srv_url, "--token", "wrong"],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unauthorized"));
    // keys, revoke, re-host
    let list = ok(tessera(&["backoffice", "key", "list", "--data", "bo"], d));
    assert!(
        list.contains("(1 used)") && list.contains("activated by device:pc_id="),
        "{list}"
    );
    ok(tessera(
        &["backoffice", "key", "revoke", "--data", "bo", &keys[1]],
        d,
    ));
    let o = tessera(
        &[
            "client",
            "activate",
            "--url",
            &url,
            "--key",
            &keys[1],
            "--product",
            "cad",
            "--producer-key",
            "bo/keys/producer.pub",
            "--out",
            "y.lic",
        ],
        d,
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("revoked"));
    let out = ok(tessera(
        &["backoffice", "rehost", "--data", "bo", &keys[2]],
        d,
    ));
    assert!(out.contains("released 1 activation"), "{out}");
    let out = ok(tessera(
        &[
            "backoffice",
            "grace",
            "extend",
            "--data",
            "bo",
            cid,
            "--days",
            "10",
        ],
        d,
    ));
    assert!(out.contains("extended by 10 days"), "{out}");
    let outbox = ok(tessera(
        &["backoffice", "outbox", "list", "--data", "bo"],
        d,
    ));
    assert!(outbox.contains("the outbox is empty"), "{outbox}");
    // without [mail], the demo form says what is missing
    let o = tessera(
        &[
            "backoffice",
            "demo",
            "--data",
            "bo",
            "--name",
            "Ada",
            "--email",
            "ada@example.test",
            "--product",
            "cad",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("mail is not configured"));
}
