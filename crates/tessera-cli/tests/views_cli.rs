//! The features and devices views from the command line against a running license server: a seat
//! taken by a client that names its device, then the summary, the details, the feature's page, the
//! devices and the device, as tables and as JSON; a sort field the view does not have refused.

mod support;
use support::{backoffice_with_floating_line, run, Serve, Site};

#[test]
fn the_views_are_read_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bo, bo_url, key) = backoffice_with_floating_line(d, 3);
    let _bo = Serve(bo);
    let site = Site::start(d);
    site.activate(&bo_url, &key, 3);
    let url = site.url.clone();
    let ok = |args: &[&str]| site.ok(args);

    // a client takes two seats, naming its device
    let r = reqwest::blocking::Client::new()
        .post(format!("{url}/api/v1/capability"))
        .json(
            &serde_json::json!({"operation": "request", "device_id": "string=lab-7", "user": "dora",
            "alias": "Lab seven", "device_type": "virtual", "request_id": "v1",
            "nonce": "nonce-v1-0123456789", "features": [{"name": "modeler", "count": 2}]}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    let out = ok(&["server", "features"]);
    let row = out.lines().find(|l| l.starts_with("modeler")).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    // FEATURE VERSION COUNT USED AVAILABLE OVERDRAFT …
    assert_eq!(&cols[2..6], &["3", "2", "1", "0"], "{out}");
    assert!(out.contains("1 of 1 feature(s)"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["server", "features", "--json"])).unwrap();
    assert_eq!(v["features"][0]["used"], 2);
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "server",
        "features",
        "--details",
        "--search",
        "mod",
        "--prefix",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["total"], 1);
    assert_eq!(v["records"][0]["product"], "cad");

    let out = ok(&["server", "feature", "modeler"]);
    assert!(
        out.lines().any(|l| l.starts_with("string=lab-7")
            && l.contains("virtual")
            && l.contains("Lab seven")
            && l.contains("dora")),
        "{out}"
    );
    let out = ok(&[
        "server",
        "devices",
        "--search",
        "lab seven",
        "--sort",
        "expires",
    ]);
    assert!(
        out.contains("string=lab-7") && out.contains("modeler"),
        "{out}"
    );
    assert!(out.contains("1 of 1 device(s)"), "{out}");
    let out = ok(&["server", "devices", "--search", "nobody"]);
    assert!(out.contains("0 of 0 device(s)"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["server", "device", "string=lab-7", "--json"])).unwrap();
    assert_eq!(v["holders"][0]["alias"], "Lab seven");
    assert_eq!(v["features"][0]["count"], 2);

    // a sort field the view does not have: refused, naming the fields it has
    let o = site.run(&["server", "devices", "--sort", "colour"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("invalid_query") && err.contains("device_type"),
        "{err}"
    );
    // without a token or a saved login: told how to get one
    let o = run(&["server", "devices", "--server", &url], d);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tessera server login"), "{err}");
}
