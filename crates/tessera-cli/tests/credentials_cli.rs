//! Credentials from the command line: back-office API tokens created with an expiry, listed,
//! revoked, and revoked by a password reset; the license server's admin token rotated while the
//! server runs. Everything through the `tessera` binary.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod support;
use support::Site;

fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(cwd)
        .env_remove("TESSERA_BACKOFFICE_DATA")
        .env_remove("TESSERA_BACKOFFICE_DATABASE")
        .env_remove("TESSERA_SERVER_DATA")
        .env_remove("TESSERA_SERVER_TOKEN")
        .output()
        .unwrap()
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let o = run(args, cwd);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{args:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn tokens(cwd: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_str(&ok(
        &["backoffice", "token", "list", "--data", "bo", "--json"],
        cwd,
    ))
    .unwrap();
    v.as_array().unwrap().clone()
}

#[test]
fn backoffice_tokens_are_listed_revoked_and_die_with_a_password_reset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let init: Value =
        serde_json::from_str(&ok(&["backoffice", "init", "--data", "bo", "--json"], d)).unwrap();
    let first = init["admin_token"].as_str().unwrap().to_string();
    let ci = ok(
        &[
            "backoffice",
            "token",
            "create",
            "--data",
            "bo",
            "--name",
            "ci",
            "--expires-days",
            "30",
        ],
        d,
    )
    .trim()
    .to_string();
    assert!(ci.starts_with("tsr_"));
    // an expiry out of bounds is refused
    let o = run(
        &[
            "backoffice",
            "token",
            "create",
            "--data",
            "bo",
            "--expires-days",
            "0",
        ],
        d,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("expires_days"));

    let list = tokens(d);
    assert_eq!(list.len(), 2, "{list:?}");
    let text = serde_json::to_string(&list).unwrap();
    assert!(
        !text.contains(&ci) && !text.contains(&first),
        "tokens are never shown again"
    );
    let ci_row = list.iter().find(|t| t["name"] == "ci").unwrap();
    assert_eq!(ci_row["state"], "active");
    let created = ci_row["created_at"].as_i64().unwrap();
    assert_eq!(ci_row["expires_at"].as_i64(), Some(created + 30 * 86_400));
    // the text listing names each token by its id
    let plain = ok(&["backoffice", "token", "list", "--data", "bo"], d);
    let ci_id = ci_row["id"].as_str().unwrap();
    assert!(
        plain.contains(ci_id) && plain.contains("expires"),
        "{plain}"
    );

    // revoked by id
    let out = ok(&["backoffice", "token", "revoke", "--data", "bo", ci_id], d);
    assert!(out.contains("revoked"), "{out}");
    let list = tokens(d);
    assert_eq!(
        list.iter().find(|t| t["id"] == ci_id).unwrap()["state"],
        "revoked"
    );
    // an unknown id is an error
    assert!(!run(
        &[
            "backoffice",
            "token",
            "revoke",
            "--data",
            "bo",
            "ffffffffffffffff"
        ],
        d
    )
    .status
    .success());

    // a password reset revokes the rest of the user's tokens
    let out = ok(
        &[
            "backoffice",
            "user",
            "reset-password",
            "--data",
            "bo",
            "--name",
            "admin",
        ],
        d,
    );
    assert!(out.contains("revoked 1 API token"), "{out}");
    assert!(tokens(d).iter().all(|t| t["state"] == "revoked"));
}

fn status(url: &str, token: &str) -> reqwest::StatusCode {
    reqwest::blocking::Client::new()
        .get(format!("{url}/api/v1/admin/status"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
}

#[test]
fn the_server_admin_token_rotates_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&["backoffice", "init", "--data", "bo"], d);
    let site = Site::start(d);
    let token_in = |out: &str| {
        out.split_whitespace()
            .find(|w| w.starts_with("tss_"))
            .unwrap()
            .to_string()
    };
    let old = site.token.clone();
    let url = site.url.clone();
    assert_eq!(status(&url, &old), reqwest::StatusCode::OK);

    let out = ok(&["server", "token", "rotate", "--data", "srv"], d);
    let new = token_in(&out);
    assert_ne!(new, old);
    assert_eq!(status(&url, &old), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(status(&url, &new), reqwest::StatusCode::OK);
    // the CLI's admin commands take the new token
    let shown = ok(
        &[
            "server", "status", "--server", &url, "--token", &new, "--json",
        ],
        d,
    );
    assert!(shown.contains("ethernet=0050569a3b01"), "{shown}");
    let o = run(&["server", "status", "--server", &url, "--token", &old], d);
    assert!(!o.status.success());
}
