//! `tessera server pools …` against a running license server: a model uploaded and shown, its text
//! printed back, a bad model refused with its line and column, reservations refused while it is
//! in force, deleted. Everything through the `tessera` binary.

mod support;

use std::process::Output;

use support::run;

#[test]
fn a_pool_model_is_uploaded_shown_printed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bo, bo_url, key) = support::backoffice_with_floating_line(d, 3);
    let _bo = support::Serve(bo);
    let site = support::Site::start(d);
    site.activate(&bo_url, &key, 3);
    let (url, token) = (site.url.clone(), site.token.clone());
    let conn = ["--server", url.as_str(), "--token", token.as_str()];
    let pools = |args: &[&str]| {
        let mut all = vec!["server", "pools"];
        all.extend_from_slice(args);
        all.extend_from_slice(&conn);
        run(&all, d)
    };
    let stdout = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let o = pools(&["show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("no pool model"), "{}", stdout(&o));

    // 2 of the 3 modeler seats for the lab's machines
    let model = "model \"lab\" {\n  partitions { partition \"lab\" { \"modeler\" 1.0 2 } }\n  rules { hostid \"string=lab-*\" => \"lab\" }\n}\n";
    std::fs::write(d.join("lab.model"), model).unwrap();
    let o = pools(&["upload", "lab.model"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("model \"lab\" in force"), "{out}");
    assert!(
        out.contains("(default)") && out.contains("modeler"),
        "{out}"
    );
    let o = pools(&["show", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["pools"][0]["pool"], "lab");
    assert_eq!(v["pools"][0]["allocated"], 2);
    assert_eq!(v["pools"][1]["default"], true);
    assert_eq!(v["pools"][1]["allocated"], 1);
    let o = pools(&["model"]);
    assert_eq!(stdout(&o), model);

    // a bad model: refused with its place, the model in force unchanged
    std::fs::write(d.join("bad.model"), model.replace("1.0 2", "1.0 two")).unwrap();
    let o = pools(&["upload", "bad.model"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("bad.model was not uploaded"), "{err}");
    assert!(err.contains("line 2, column 48"), "{err}");
    assert_eq!(stdout(&pools(&["model"])), model);

    // reservations are refused while the model is in force
    let o = run(
        &[
            "server",
            "reservations",
            "add",
            "--server",
            &url,
            "--token",
            &token,
            "--group",
            "Lab",
            "--holder",
            "string=lab-1",
            "--feature",
            "modeler:1.0:1",
        ],
        d,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("tessera server pools delete"),
        "{}",
        stderr(&o)
    );

    let o = pools(&["delete"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("no pool model"), "{}", stdout(&o));
    let o = pools(&["model"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no pool model is stored"),
        "{}",
        stderr(&o)
    );
}
