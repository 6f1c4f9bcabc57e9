//! Reservations from the command line against a running license server: added, listed with their
//! status, exported, deleted, imported back; a bad file refused with the place that is wrong.

use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::{backoffice_with_floating_line, spawn, tessera, Serve};

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(cwd)
        .env_remove("TESSERA_SERVER_URL")
        .env_remove("TESSERA_SERVER_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn reservations_are_administered_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bo, bo_url, key) = backoffice_with_floating_line(d, 5);
    let _bo = Serve(bo);
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
    let cfg = std::fs::read_to_string(d.join("srv/server.toml")).unwrap();
    std::fs::write(
        d.join("srv/server.toml"),
        format!("{cfg}anchor_dir = \"{}\"\n", d.join("anchors").display()),
    )
    .unwrap();
    let (srv, url) = spawn(
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
    let with = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(ToString::to_string).collect();
        v.extend([
            "--server".into(),
            url.clone(),
            "--token".into(),
            token.clone(),
        ]);
        v
    };
    let ok = |args: &[&str]| -> String {
        let a = with(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = run(&a, d);
        assert!(
            o.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&[
        "server",
        "activate",
        "--backoffice",
        &bo_url,
        "--key",
        &format!("{key}:5"),
    ]);

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
    let a = with(&[
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
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = run(&a, d);
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
    let a = with(&["server", "reservations", "import", "bad.json"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = run(&a, d);
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
    let a = with(&["server", "properties", "set", "lease_seconds=ten"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = run(&a, d);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("lease_seconds is a whole number"));
    let a = with(&["server", "properties", "set", "hostid=string=x"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = run(&a, d);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("property_read_only"));

    // without --token and without a saved login, the command says how to authenticate
    let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["server", "reservations", "list", "--server", &url])
        .current_dir(d)
        .env_remove("TESSERA_SERVER_TOKEN")
        .env("TESSERA_CONFIG_DIR", d.join("no-config"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tessera server login"), "{err}");
}
