//! `tessera server denials` against a running license server: the refusal of a full feature shown
//! as a table (who, what, when, why) and as JSON, filtered, overdraft asked for apart, and a
//! filter the server refuses reported on one line.

use serde_json::{json, Value};

mod support;
use support::{backoffice_with_floating_line, ok, run, Serve, Site};

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn request(url: &str, device: &str, user: &str, id: &str) -> Value {
    let answer: Value = reqwest::blocking::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(
            &json!({"operation": "request", "device_id": device, "user": user,
            "alias": format!("{user}-pc"), "request_id": id,
            "nonce": format!("nonce-{id}-0123456789"), "features": [{"name": "modeler"}]}),
        )
        .send()
        .unwrap()
        .json()
        .unwrap();
    support::claims(&answer)
}

#[test]
fn the_denial_report_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bo, bo_url, key) = backoffice_with_floating_line(d, 1);
    let _bo = Serve(bo);
    let site = Site::start(d);
    site.activate(&bo_url, &key, 1);
    let (url, token) = (site.url.clone(), site.token.clone());
    // nothing refused yet
    let admin = ["--server", url.as_str(), "--token", token.as_str()];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["server", "denials"]
            .iter()
            .chain(admin.iter())
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let out = ok(&args(&with(&[])), d);
    assert_eq!(out, "no denials recorded (events are kept 30 days)\n");

    let c = request(&url, "ethernet=0050569a0001", "alice", "a1");
    assert_eq!(c["grants"].as_array().unwrap().len(), 1, "{c}");
    let c = request(&url, "ethernet=0050569a0002", "bob", "b1");
    assert_eq!(c["denials"][0]["code"], "all_in_use", "{c}");

    // a table: a heading, a line for bob's refusal, a count
    let out = ok(&args(&with(&[])), d);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for h in ["WHEN", "DEVICE", "USER", "FEATURE", "CODE", "MESSAGE"] {
        assert!(lines[0].contains(h), "{out}");
    }
    for cell in [
        "ethernet=0050569a0002",
        "bob",
        "bob-pc",
        "modeler",
        "all_in_use",
    ] {
        assert!(lines[1].contains(cell), "{cell}: {out}");
    }
    assert_eq!(lines[0].find("USER"), lines[1].find("bob "), "{out}");
    assert!(lines[2].starts_with("1 denials"), "{out}");

    // the same as JSON, and filtered
    let v: Value = serde_json::from_str(&ok(&args(&with(&["--json"])), d)).unwrap();
    assert_eq!(v["kind"], "denial");
    assert_eq!(v["events"][0]["user"], "bob");
    assert_eq!(v["events"][0]["device_id_type"], "ethernet");
    assert_eq!(v["events"][0]["code"], "all_in_use");
    let v: Value =
        serde_json::from_str(&ok(&args(&with(&["--since", "1h", "--json"])), d)).unwrap();
    assert_eq!(v["events"].as_array().unwrap().len(), 1, "{v}");
    let v: Value =
        serde_json::from_str(&ok(&args(&with(&["--since", "2999-01-01", "--json"])), d)).unwrap();
    assert_eq!(v["events"], json!([]), "{v}");
    let out = ok(&args(&with(&["--feature", "render"])), d);
    assert!(out.starts_with("no denials recorded"), "{out}");
    // the single seat had no overdraft
    let out = ok(&args(&with(&["--overdraft"])), d);
    assert_eq!(
        out,
        "no overdraft grants recorded (events are kept 30 days)\n"
    );

    // as CSV: a heading row and bob's refusal, every cell quoted
    let out = ok(&args(&with(&["--csv"])), d);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("\"at\",\"kind\",\"device_id\""),
        "{out}"
    );
    assert!(
        lines[1].contains("\"bob\"") && lines[1].contains("\"all_in_use\""),
        "{out}"
    );

    // the usage history: the server samples each minute (the first a few seconds after it
    // started serving)
    let history = |extra: &[&str]| -> String {
        let mut a = vec!["server", "usage-history", "modeler"];
        a.extend(admin.iter().copied());
        a.extend(extra);
        ok(&a, d)
    };
    let mut v = Value::Null;
    for _ in 0..100 {
        v = serde_json::from_str(&history(&["--json"])).unwrap();
        if v["series"][0]["points"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(v["resolution"], "minute", "{v}");
    assert_eq!(v["series"][0]["points"][0]["count"], 1, "{v}");
    let version = v["series"][0]["version"].as_str().unwrap().to_string();
    let out = history(&["--since", "7d"]);
    assert!(
        out.starts_with("modeler from ") && out.contains("per hour"),
        "{out}"
    );
    assert!(out.contains("PERIOD") && out.contains(&version), "{out}");
    let o = run(
        &[
            "server",
            "usage-history",
            "modeler",
            "--server",
            &url,
            "--token",
            &token,
            "--since",
            "400d",
            "--resolution",
            "minute",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("coarser"));

    // a filter the server refuses: one line, exit 2
    let o = run(&args(&with(&["--limit", "0"])), d);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("limit"), "{err}");
    let o = run(&args(&with(&["--since", "last week"])), d);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("since"), "{err}");
    // and without the admin token, nothing
    let o = run(
        &[
            "server",
            "denials",
            "--server",
            &url,
            "--token",
            "tss_wrong",
        ],
        d,
    );
    assert!(!o.status.success());
}
