//! The license server's users from the command line: the first password changed with `passwd`,
//! `login` saving a token that later commands use, `users add|list|role|delete`, `tokens` and
//! `audit`. Everything through the `tessera` binary against `tessera server serve`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod support;
use support::Site;

fn run(args: &[&str], cwd: &Path, stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(cwd)
        .env_remove("TESSERA_SERVER_DATA")
        .env_remove("TESSERA_SERVER_TOKEN")
        .env_remove("TESSERA_SERVER_URL")
        .env("TESSERA_CONFIG_DIR", cwd.join("config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], cwd: &Path, stdin: &str) -> String {
    let o = run(args, cwd, stdin);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{args:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The word after `label` on the line that has it.
fn after(out: &str, label: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no {label} in {out}"));
    line.split(label)
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn login_saves_a_token_that_users_list_uses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&["backoffice", "init", "--data", "bo"], d, "");
    let site = Site::start(d);
    let first = after(&site.init, "admin password: ");
    let startup = after(&site.init, "admin token: ");
    let url = site.url.clone();

    // no token given and none saved: a clear error naming what to do
    let o = run(&["server", "users", "list", "--server", &url], d, "");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tessera server login"), "{err}");

    // the printed password must be changed before a login gives a token
    let o = run(
        &["server", "login", "--server", &url, "--password-stdin"],
        d,
        &format!("{first}\n"),
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("must change the password"),
        "{o:?}"
    );
    ok(
        &["server", "passwd", "--server", &url, "--password-stdin"],
        d,
        &format!("{first}\ncorrect horse battery\n"),
    );
    let o = run(
        &["server", "login", "--server", &url, "--password-stdin"],
        d,
        "wrong password\n",
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("wrong user name or password"),
        "{o:?}"
    );
    let out = ok(
        &["server", "login", "--server", &url, "--password-stdin"],
        d,
        "correct horse battery\n",
    );
    assert!(out.contains("logged in"), "{out}");
    let saved = d.join("config/server-tokens.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert!(saved[url.as_str()].as_str().unwrap().starts_with("tss_"));

    // later commands use the saved token
    let out = ok(
        &["server", "users", "add", "viewer", "--server", &url],
        d,
        "",
    );
    assert!(out.contains("first password"), "{out}");
    let table = ok(&["server", "users", "list", "--server", &url], d, "");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("USER") && lines[0].contains("ROLE"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("admin") && l.contains("admin") && l.contains("set")),
        "{table}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("viewer")
            && l.contains("read_only")
            && l.contains("must be changed")),
        "{table}"
    );
    let json: Value = serde_json::from_str(&ok(
        &["server", "users", "list", "--server", &url, "--json"],
        d,
        "",
    ))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    ok(
        &[
            "server", "users", "role", "viewer", "admin", "--server", &url,
        ],
        d,
        "",
    );
    ok(
        &["server", "users", "delete", "viewer", "--server", &url],
        d,
        "",
    );
    // an explicit token wins (the start-up one still works)
    let json: Value = serde_json::from_str(&ok(
        &[
            "server", "tokens", "list", "--server", &url, "--token", &startup, "--json",
        ],
        d,
        "",
    ))
    .unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "start-up"),
        "{json}"
    );
    let audit = ok(&["server", "audit", "--server", &url], d, "");
    for action in [
        "password_changed",
        "login_failed",
        "token_created",
        "user_created",
        "role_changed",
        "user_deleted",
    ] {
        assert!(audit.contains(action), "{action} missing: {audit}");
    }
    // logout forgets the token
    ok(&["server", "logout", "--server", &url], d, "");
    assert!(!run(&["server", "users", "list", "--server", &url], d, "")
        .status
        .success());
}
