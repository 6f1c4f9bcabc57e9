//! Shared by the CLI test binaries: running `tessera … serve` on a free port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Runs `tessera ARGS` in `cwd`; panics with its error output unless it succeeds; its output.
pub fn tessera(args: &[&str], cwd: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `tessera ARGS` in `cwd` with no server, token or data directory from the environment and
/// no saved login of the person running the tests (its configuration directory is `cwd/config`):
/// its output, whatever its exit.
pub fn run(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(cwd)
        .env_remove("TESSERA_SERVER_URL")
        .env_remove("TESSERA_SERVER_TOKEN")
        .env_remove("TESSERA_SERVER_DATA")
        .env("TESSERA_CONFIG_DIR", cwd.join("config"))
        .output()
        .unwrap()
}

/// As [`run`]; panics with its output unless it succeeds; its standard output.
pub fn ok(args: &[&str], cwd: &Path) -> String {
    let o = run(args, cwd);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{args:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A license server as an administrator sets one up from the command line: `server init` in
/// `cwd/srv` (its restore anchors in `cwd/anchors`, not the user's own directory) and `server
/// serve` on a free port; stopped when dropped.
pub struct Site {
    /// Where it serves.
    pub url: String,
    /// The admin token `server init` printed.
    pub token: String,
    /// What `server init` printed (the admin user's first password is there too).
    pub init: String,
    cwd: PathBuf,
    _serve: Serve,
}

impl Site {
    /// Sets up and starts the server.
    pub fn start(cwd: &Path) -> Site {
        let init = ok(
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
            cwd,
        );
        let token = init
            .split_whitespace()
            .find(|w| w.starts_with("tss_"))
            .unwrap()
            .to_string();
        let cfg = std::fs::read_to_string(cwd.join("srv/server.toml")).unwrap();
        std::fs::write(
            cwd.join("srv/server.toml"),
            format!("{cfg}anchor_dir = \"{}\"\n", cwd.join("anchors").display()),
        )
        .unwrap();
        let (child, url) = spawn(
            &[
                "server",
                "serve",
                "--data",
                "srv",
                "--listen",
                "127.0.0.1:0",
            ],
            cwd,
        );
        Site {
            url,
            token,
            init,
            cwd: cwd.to_path_buf(),
            _serve: Serve(child),
        }
    }

    /// `tessera server activate`: `seats` seats of the line `key` from the back office at
    /// `backoffice`.
    pub fn activate(&self, backoffice: &str, key: &str, seats: u32) {
        self.ok(&[
            "server",
            "activate",
            "--backoffice",
            backoffice,
            "--key",
            &format!("{key}:{seats}"),
        ]);
    }

    /// `ARGS --server URL --token TOKEN`.
    pub fn with(&self, args: &[&str]) -> Vec<String> {
        self.with_token(args, &self.token)
    }

    fn with_token(&self, args: &[&str], token: &str) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(ToString::to_string).collect();
        v.extend([
            "--server".into(),
            self.url.clone(),
            "--token".into(),
            token.into(),
        ]);
        v
    }

    /// Runs `tessera ARGS` against this server with its admin token; its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_as(args, &self.token)
    }

    /// Runs `tessera ARGS` against this server with `token`; its output.
    pub fn run_as(&self, args: &[&str], token: &str) -> Output {
        let a = self.with_token(args, token);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run(&a, &self.cwd)
    }

    /// As [`Site::run`]; panics with its output unless it succeeds; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_as(args, &self.token)
    }

    /// As [`Site::run_as`]; panics with its output unless it succeeds; its standard output.
    pub fn ok_as(&self, args: &[&str], token: &str) -> String {
        let o = self.run_as(args, token);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{args:?}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    }
}

/// A back office in `cwd/bo` with product `cad` (feature `modeler`), a customer and one floating
/// line of `count` seats, serving on a free port: (the process, its URL, the line's key).
pub fn backoffice_with_floating_line(cwd: &Path, count: u32) -> (Child, String, String) {
    tessera(&["backoffice", "init", "--data", "bo", "--json"], cwd);
    tessera(
        &[
            "backoffice",
            "product",
            "add",
            "--data",
            "bo",
            "--id",
            "cad",
            "--feature",
            "modeler",
        ],
        cwd,
    );
    let c: serde_json::Value = serde_json::from_str(&tessera(
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
        cwd,
    ))
    .unwrap();
    let e: serde_json::Value = serde_json::from_str(&tessera(
        &[
            "backoffice",
            "entitlement",
            "create",
            "--data",
            "bo",
            "--customer",
            c["id"].as_str().unwrap(),
            "--line",
            &format!("product=cad,model=floating,count={count}"),
            "--json",
        ],
        cwd,
    ))
    .unwrap();
    let key = e["lines"][0]["key"].as_str().unwrap().to_string();
    let (child, url) = spawn(
        &[
            "backoffice",
            "serve",
            "--data",
            "bo",
            "--listen",
            "127.0.0.1:0",
        ],
        cwd,
    );
    (child, url, key)
}

/// Starts `tessera ARGS` (a server listening on `127.0.0.1:0`) in `cwd`; returns the child and the
/// URL it prints on the line that says it listens.
pub fn spawn(args: &[&str], cwd: &Path) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(args).current_dir(cwd);
    spawn_command(cmd, &args.join(" "))
}

/// Starts `cmd` (a `tessera` server listening on `127.0.0.1:0`, `what` for messages); returns the
/// child and the URL it prints on the line that says it listens.
pub fn spawn_command(mut cmd: Command, what: &str) -> (Child, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the URL is on the line that says it listens; log lines (the outbox worker's, with mail
    // configured) may come before it
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..20 {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 || line.contains("listening on") {
            break;
        }
    }
    // keep reading what it prints after that line: a closed pipe would make its next line fail
    // (a back office with mail prints more), and the CLI ends on a broken pipe
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let Some(url) = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(String::from)
    else {
        // it did not start: say why
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let status = child.wait();
        panic!("`tessera {what}` did not start ({status:?}): {line}{err}");
    };
    // keep reading its log so it never blocks on a full pipe
    if let Some(mut e) = child.stderr.take() {
        std::thread::spawn(move || std::io::copy(&mut e, &mut std::io::sink()));
    }
    (child, url)
}

/// Kills the server when the test ends, however it ends.
pub struct Serve(pub Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The claims of a capability answer, read without verifying (signatures are tested elsewhere):
/// the middle part of the token.
pub fn claims(answer: &serde_json::Value) -> serde_json::Value {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let token = answer["response"].as_str().unwrap_or_default();
    let part = token.split('.').nth(1).unwrap_or_default();
    let (mut out, mut buf, mut bits) = (Vec::new(), 0u32, 0);
    for c in part.bytes() {
        let Some(v) = A.iter().position(|&a| a == c) else {
            break;
        };
        buf = (buf << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)
}

/// A return of the lease `grant` (a grant from a capability answer's claims) by `device`, with
/// the session proof the server requires.
#[allow(dead_code)] // not every test binary returns leases
pub fn return_body(
    device: &str,
    request_id: &str,
    nonce: &str,
    grant: &serde_json::Value,
) -> serde_json::Value {
    let lease = grant["lease"].as_u64().unwrap_or_default();
    let key = tessera_core::capability::GrantedSeat {
        lease,
        feature: String::new(),
        version: String::new(),
        count: 0,
        overdraft: 0,
        expires: tessera_core::time::OffsetDateTime::UNIX_EPOCH,
        borrowed: false,
        session_key: grant["session_key"].as_str().map(String::from),
    }
    .session_key_bytes()
    .unwrap_or_default();
    let proof = tessera_core::capability::session_proof(
        &key,
        tessera_core::capability::Operation::Return,
        nonce,
        request_id,
        lease,
    );
    serde_json::json!({"operation": "return", "device_id": device, "request_id": request_id, "nonce": nonce, "leases": [lease], "session_proof": proof})
}
