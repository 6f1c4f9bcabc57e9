//! The `tessera` binary as a user runs it: keys, issue, verify, hostid, quickstart, completions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tessera(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(cwd)
        .env_remove("TESSERA_DATA")
        .output()
        .expect("run tessera")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        let o = f.run(&["keys", "generate", "--out", "keys"]);
        assert!(o.status.success(), "{:?}", text(&o));
        f
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run(&self, args: &[&str]) -> Output {
        tessera(args, self.dir.path())
    }

    fn issue(&self, spec: &str, out: &str) -> Output {
        std::fs::write(self.path("spec.toml"), spec).unwrap();
        self.run(&[
            "license",
            "issue",
            "--key",
            "keys/producer.key",
            "--spec",
            "spec.toml",
            "--out",
            out,
        ])
    }

    fn verify(&self, file: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "license",
            "verify",
            file,
            "--public-key",
            "keys/producer.pub",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

const SPEC: &str = r#"
licensee = "ACME"
hostids = ["ethernet=00:50:56:9a:3b:01"]
[[feature]]
name = "solver"
version = "2.0"
count = 5
expires = 2099-12-31
[[feature]]
name = "viewer"
count = "uncounted"
"#;

#[test]
fn keys_are_standard_pem_with_a_private_mode() {
    let f = Fixture::new();
    let key = std::fs::read_to_string(f.path("keys/producer.key")).unwrap();
    let public = std::fs::read_to_string(f.path("keys/producer.pub")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f.path("keys/producer.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // a second generate does not overwrite the keys
    let o = f.run(&["keys", "generate", "--out", "keys"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--force"));
    assert_eq!(
        std::fs::read_to_string(f.path("keys/producer.key")).unwrap(),
        key
    );
}

#[test]
fn issue_and_verify_round_trip() {
    let f = Fixture::new();
    let o = f.issue(SPEC, "acme.lic");
    assert!(o.status.success(), "{:?}", text(&o));
    let o = f.verify("acme.lic", &["--hostid", "ethernet=0050569a3b01"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.starts_with("valid: license"), "{out}");
    assert!(out.contains("solver 2.0  count 5"), "{out}");
    assert!(out.contains("viewer 1.0  uncounted"), "{out}");
    assert!(out.contains("2099-12-31"), "{out}");
    // JSON output carries the claims
    let o = f.verify("acme.lic", &["--hostid", "ethernet=0050569a3b01", "--json"]);
    let claims: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(claims["sub"], "ACME");
    assert_eq!(claims["features"][0]["count"], 5);
}

#[test]
fn one_changed_byte_is_refused_with_signature_does_not_match() {
    let f = Fixture::new();
    assert!(f.issue(SPEC, "acme.lic").status.success());
    let original = std::fs::read_to_string(f.path("acme.lic")).unwrap();
    let mut lines: Vec<String> = original.lines().map(String::from).collect();
    // a character well inside the claims
    let line = &mut lines[4];
    let c = line.as_bytes()[20];
    let replacement = if c == b'a' { "b" } else { "a" };
    line.replace_range(20..21, replacement);
    std::fs::write(f.path("tampered.lic"), lines.join("\n")).unwrap();
    let o = f.verify("tampered.lic", &["--hostid", "ethernet=0050569a3b01"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("signature does not match"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn bound_to_another_host_names_that_host() {
    let f = Fixture::new();
    assert!(f.issue(SPEC, "acme.lic").status.success());
    let o = f.verify("acme.lic", &["--hostid", "ethernet=0050569a3b02"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("bound to another host"), "{err}");
    assert!(
        err.contains("ethernet=0050569a3b01"),
        "names the licensed host: {err}"
    );
    assert!(
        err.contains("ethernet=0050569a3b02"),
        "names this host: {err}"
    );
    // without --hostid, this machine's ids are used; they are not the licensed MAC
    let o = f.verify("acme.lic", &[]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn expired_license_is_refused_with_its_date() {
    let f = Fixture::new();
    let spec = "licensee = \"ACME\"\nnot_before = 2020-01-01\n[[feature]]\nname = \"solver\"\ncount = 1\nexpires = 2021-03-31\n";
    let o = f.issue(spec, "old.lic");
    assert!(o.status.success(), "{:?}", text(&o));
    let o = f.verify("old.lic", &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("expired on 2021-03-31"), "{err}");
    // as of a date inside its term it was valid
    let o = f.verify("old.lic", &["--at", "2021-01-15"]);
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn wrong_public_key_and_wrong_files_are_clear() {
    let f = Fixture::new();
    assert!(f.issue(SPEC, "acme.lic").status.success());
    assert!(f
        .run(&["keys", "generate", "--out", "other"])
        .status
        .success());
    let o = f.run(&[
        "license",
        "verify",
        "acme.lic",
        "--public-key",
        "other/producer.pub",
        "--hostid",
        "ethernet=0050569a3b01",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("unknown key id"), "{:?}", text(&o));
    // a private key where a public key belongs
    let o = f.verify("acme.lic", &[]);
    assert_eq!(o.status.code(), Some(1));
    let o = f.run(&[
        "license",
        "verify",
        "acme.lic",
        "--public-key",
        "keys/producer.key",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("public key"), "{:?}", text(&o));
    // a file that is not a license
    std::fs::write(f.path("notes.txt"), "hello\n").unwrap();
    let o = f.verify("notes.txt", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("line 1"), "{:?}", text(&o));
    // a missing file
    let o = f.verify("missing.lic", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("missing.lic"));
}

#[test]
fn spec_errors_are_reported_and_nothing_is_written() {
    let f = Fixture::new();
    let o = f.issue(
        "licensee = \"ACME\"\n[[feature]]\nname = \"solver\"\ncount = 0\n",
        "zero.lic",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("count of 0"), "{:?}", text(&o));
    assert!(!f.path("zero.lic").exists());
    let o = f.issue(
        "licensee = \"ACME\"\n[[feature]]\nname = \"solver\"\ncuont = 3\n",
        "typo.lic",
    );
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o).1;
    assert!(err.contains("cuont") && err.contains("line 4"), "{err}");
}

#[test]
fn the_documented_example_spec_issues() {
    let f = Fixture::new();
    let example = std::fs::read_to_string(repo().join("docs/examples/license-spec.toml")).unwrap();
    let o = f.issue(&example, "example.lic");
    assert!(o.status.success(), "{:?}", text(&o));
    let o = f.verify(
        "example.lic",
        &[
            "--hostid",
            "machine_id=4c4c4544004a3510804ab4c04f4e3232",
            "--at",
            "2026-03-01",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn hostid_prints_ids_device_type_and_pc_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let o = tessera(&["hostid", "--json"], dir.path());
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["device_type"].is_string());
    assert!(v["hostids"].is_array());
    if let Some(pc) = v["pc_identifier"].as_str() {
        assert_eq!(pc.len(), 23, "{pc}");
        // salted per product
        let o2 = tessera(&["hostid", "--json", "--product", "other"], dir.path());
        let v2: serde_json::Value = serde_json::from_slice(&o2.stdout).unwrap();
        assert_ne!(v2["pc_identifier"], v["pc_identifier"]);
    }
    let o = tessera(&["hostid"], dir.path());
    assert!(text(&o).0.contains("device type:"));
}

#[test]
fn quickstart_creates_then_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "quickstart",
        "--data",
        "qs",
        "--no-serve",
        "--backoffice-listen",
        "127.0.0.1:0",
        "--server-listen",
        "127.0.0.1:0",
    ];
    let o = tessera(&args, dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("back office created"), "{out}");
    assert!(
        out.contains("license server activated with the floating key (5 seats)"),
        "{out}"
    );
    assert!(out.contains("demo license"), "{out}");
    assert!(dir.path().join("qs/backoffice/tessera.db").exists());
    assert!(dir.path().join("qs/server/tessera.db").exists());
    let key_before = std::fs::read(dir.path().join("qs/backoffice/keys/producer.key")).unwrap();
    // the demo license verifies with the back office's public key
    let o = tessera(
        &[
            "license",
            "verify",
            "qs/demo.lic",
            "--public-key",
            "qs/backoffice/keys/producer.pub",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = tessera(&args, dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("reusing the back office"), "{out}");
    assert_eq!(
        std::fs::read(dir.path().join("qs/backoffice/keys/producer.key")).unwrap(),
        key_before
    );
}

#[test]
fn quickstart_serves_until_interrupted() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "quickstart",
            "--data",
            "qs",
            "--backoffice-listen",
            "127.0.0.1:0",
            "--server-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut server = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("License server:") {
            server = line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .map(String::from);
        }
        if line.starts_with("Ctrl-C stops both") {
            break;
        }
    }
    let server = server.expect("the license server URL is printed");
    // check a seat out, as printed
    let v: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{server}/api/v1/capability"))
        .json(&serde_json::json!({"operation": "request", "device_id": "user=alice", "request_id": "r1", "nonce": "0123456789abcdef", "features": [{"name": "modeler"}]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(v["certificate"].is_string(), "{v}");
    // Ctrl-C stops both cleanly
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn help_version_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["license", "verify", "--help"],
        vec!["license", "issue", "--help"],
        vec!["keys", "generate", "--help"],
        vec!["hostid", "--help"],
        vec!["quickstart", "--help"],
    ] {
        let o = tessera(&args, dir.path());
        assert!(o.status.success(), "{args:?}");
        assert!(text(&o).0.contains("Usage:"), "{args:?}");
    }
    let o = tessera(&["--version"], dir.path());
    assert!(text(&o).0.starts_with("tessera "));
    let o = tessera(&["completions", "bash"], dir.path());
    assert!(o.status.success());
    assert!(text(&o).0.contains("license"));
}

#[test]
fn a_license_server_without_a_private_state_directory_does_not_start() {
    let f = Fixture::new();
    let o = f.run(&[
        "server",
        "init",
        "--data",
        "srv",
        "--producer-key",
        "keys/producer.pub",
        "--hostid",
        "string=lab-1",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    // no HOME, no XDG_STATE_HOME, no anchor_dir: it refuses, rather than keep the anchor in /tmp
    let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "server",
            "serve",
            "--data",
            "srv",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(f.dir.path())
        .env_remove("HOME")
        .env_remove("XDG_STATE_HOME")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("neither HOME nor XDG_STATE_HOME"), "{err}");
    assert!(err.contains("anchor_dir"), "{err}");
}
