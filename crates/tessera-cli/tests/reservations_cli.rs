//! Reservations from the command line against a running license server: added, listed with their
//! status, exported, deleted, imported back; a bad file refused with the place that is wrong.

mod support;
use support::{backoffice_with_floating_line, run, Serve, Site};

#[test]
fn reservations_are_administered_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bo, bo_url, key) = backoffice_with_floating_line(d, 5);
    let _bo = Serve(bo);
    let site = Site::start(d);
    site.activate(&bo_url, &key, 5);
    let ok = |args: &[&str]| site.ok(args);

    assert!(ok(&["server", "reservations", "list"]).contains("no reservations"));
    let out = ok(&[
        "server",
        "reservations",
        "add",
        "--group",
        "CAD lab",
        "--holder",
        "ETHERNET=00-50-56-9A-3B-07",
        "--feature",
        "modeler:1.0:2",
    ]);
    assert!(out.contains("ethernet=0050569a3b07"), "{out}");
    assert!(out.contains("CAD lab") && out.contains("ok"), "{out}");
    // another reservation in the same group; a group not in force is refused
    let out = ok(&[
        "server",
        "reservations",
        "add-entries",
        "--group",
        "CAD lab",
        "--holder",
        "user=ann",
        "--feature",
        "modeler:1.0:1",
    ]);
    assert!(out.contains("user=ann"), "{out}");
    let o = site.run(&[
        "server",
        "reservations",
        "add-entries",
        "--group",
        "Nope",
        "--holder",
        "user=ann",
        "--feature",
        "modeler:1.0:1",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no_such_group"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // more than the server holds: listed as unsatisfied, with the reason
    let out = ok(&[
        "server",
        "reservations",
        "add",
        "--group",
        "Sales",
        "--holder",
        "user=bob",
        "--feature",
        "modeler:1.0:4",
    ]);
    assert!(out.contains("UNSATISFIED"), "{out}");
    assert!(out.contains("4 seats reserved"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["server", "reservations", "list", "--json"])).unwrap();
    assert_eq!(json["entries"].as_array().unwrap().len(), 3);
    assert_eq!(
        json["groups"][0]["reservations"].as_array().unwrap().len(),
        2
    );
    assert_eq!(json["entries"][2]["satisfied"], false);

    ok(&["server", "reservations", "export", "--out", "res.json"]);
    let exported = std::fs::read_to_string(d.join("res.json")).unwrap();
    assert!(exported.contains("\"CAD lab\""), "{exported}");
    ok(&["server", "reservations", "delete", "CAD lab"]);
    ok(&["server", "reservations", "delete", "Sales"]);
    assert!(ok(&["server", "reservations", "list"]).contains("no reservations"));

    // a file with one bad entry is refused whole, naming it; exit status 2
    let bad = exported.replace("\"1.0\"", "\"1.x\"");
    std::fs::write(d.join("bad.json"), bad).unwrap();
    let o = site.run(&["server", "reservations", "import", "bad.json"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("groups[0].reservations[0].entries[0].version")
            && err.contains("invalid_reservations"),
        "{err}"
    );
    assert!(ok(&["server", "reservations", "list"]).contains("no reservations"));

    // the good file comes back whole
    let out = ok(&["server", "reservations", "import", "res.json"]);
    assert!(out.contains("CAD lab") && out.contains("Sales"), "{out}");
    ok(&["server", "reservations", "clear"]);
    assert!(ok(&["server", "reservations", "list"]).contains("no reservations"));

    // the properties' twin: shown by group, changed all or none, saying what applies when
    let out = ok(&["server", "properties", "show"]);
    assert!(
        out.contains("License generation") && out.contains("lease_seconds"),
        "{out}"
    );
    let out = ok(&[
        "server",
        "properties",
        "set",
        "lease_seconds=600",
        "request_timeout_seconds=40",
    ]);
    assert!(out.contains("in force now: lease_seconds"), "{out}");
    assert!(
        out.contains("next start") && out.contains("request_timeout_seconds"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["server", "properties", "show", "--json"])).unwrap();
    let lease = json["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["properties"].as_array().unwrap())
        .find(|p| p["key"] == "lease_seconds")
        .unwrap();
    assert_eq!(lease["in_force"], 600);
    let o = site.run(&["server", "properties", "set", "lease_seconds=ten"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("lease_seconds is a whole number"));
    let o = site.run(&["server", "properties", "set", "hostid=string=x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("property_read_only"));

    // without --token and without a saved login, the command says how to authenticate
    let o = run(
        &["server", "reservations", "list", "--server", &site.url],
        d,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tessera server login"), "{err}");
}
