//! The services as a service manager runs them: SIGTERM stops them cleanly, their files are
//! private whatever the umask, plain HTTP on the network is called out at start; and clients that
//! trust a private CA with `--ca-cert`.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use support::tessera;

/// Starts `tessera ARGS` in `cwd` with `umask 022`, stdout and stderr piped.
fn start(args: &[&str], cwd: &Path) -> Child {
    let mut cmd = String::from("umask 022; exec \"$0\" \"$@\"");
    cmd.push(' ');
    Command::new("sh")
        .arg("-c")
        .arg(cmd.trim())
        .arg(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(cwd)
        // the log level of the configuration (info), whatever the caller's
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads lines from `out` until one contains `until`; the lines read (panics at end of output).
fn read_until(out: &mut BufReader<ChildStdout>, until: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "ended before {until:?}: {lines:?}"
        );
        let done = line.contains(until);
        lines.push(line.trim_end().to_string());
        if done {
            return lines;
        }
    }
}

fn url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap()
        .to_string()
}

/// Sends SIGTERM and waits: the exit status, the rest of standard output and standard error.
fn terminate(
    mut child: Child,
    mut out: BufReader<ChildStdout>,
) -> (std::process::ExitStatus, String, String) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap(), rest, err)
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn sigterm_stops_the_quickstart_cleanly_and_the_leases_survive() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(
        &[
            "quickstart",
            "--data",
            "qs",
            "--backoffice-listen",
            "127.0.0.1:0",
            "--server-listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let lines = read_until(&mut out, "Ctrl-C stops both");
    let server = url_in(
        lines
            .iter()
            .find(|l| l.starts_with("License server:"))
            .unwrap(),
    );
    let v: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{server}/api/v1/capability"))
        .json(&serde_json::json!({"operation": "request", "device_id": "user=alice", "request_id": "r1", "nonce": "0123456789abcdef", "features": [{"name": "modeler"}]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(v["certificate"].is_string(), "{v}");
    let (status, rest, err) = terminate(child, out);
    assert!(status.success(), "{status:?} {rest} {err}");
    assert!(rest.contains("stopped"), "{rest}");
    // the license server starts again on the same data and holds the lease
    let made: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("qs/quickstart.json")).unwrap(),
    )
    .unwrap();
    let token = made["server_token"].as_str().unwrap().to_string();
    let mut child = start(
        &[
            "server",
            "serve",
            "--data",
            "qs/server",
            "--listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let url = url_in(&read_until(&mut out, "listening on")[0]);
    let status: serde_json::Value = serde_json::from_str(&tessera(
        &[
            "server", "status", "--server", &url, "--token", &token, "--json",
        ],
        dir.path(),
    ))
    .unwrap();
    assert_eq!(status["leases"], 1, "{status}");
    let (status, rest, err) = terminate(child, out);
    assert!(status.success(), "{status:?} {err}");
    assert!(rest.contains("license server stopped"), "{rest}");
}

#[test]
#[cfg(unix)]
fn sigterm_stops_the_back_office_and_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("umask 022; exec \"$0\" {args}"))
            .arg(env!("CARGO_BIN_EXE_tessera"))
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run("backoffice init --data bo");
    run(
        "server init --data srv --producer-key bo/keys/producer.pub --hostid ethernet=0050569a3b01",
    );
    for (p, want) in [
        ("bo", 0o700),
        ("bo/keys", 0o700),
        ("bo/keys/producer.key", 0o600),
        ("bo/keys/unlock.key", 0o600),
        ("bo/tessera.db", 0o600),
        ("bo/backoffice.toml", 0o600),
        ("srv", 0o700),
        ("srv/keys", 0o700),
        ("srv/keys/server.key", 0o600),
        ("srv/tessera.db", 0o600),
    ] {
        assert_eq!(mode(&d.join(p)), want, "{p}: {:o}", mode(&d.join(p)));
    }
    // loosened by hand (or made by an older version): private again at the next start, and the
    // write-ahead log and shared memory of the running store too
    use std::os::unix::fs::PermissionsExt;
    for p in ["bo", "bo/tessera.db", "bo/keys/producer.key"] {
        std::fs::set_permissions(d.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut bo = start(
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
    let mut bo_out = BufReader::new(bo.stdout.take().unwrap());
    let bo_url = url_in(&read_until(&mut bo_out, "listening on")[0]);
    let mut srv = start(
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
    let mut srv_out = BufReader::new(srv.stdout.take().unwrap());
    let srv_url = url_in(&read_until(&mut srv_out, "listening on")[0]);
    // a write each, so both have their -wal and -shm
    let r = reqwest::blocking::Client::new()
        .post(format!("{bo_url}/api/v1/trials"))
        .json(&serde_json::json!({"product": "nothing", "pc_id": "x"}))
        .send()
        .unwrap();
    assert!(!r.status().is_server_error());
    let r = reqwest::blocking::Client::new()
        .post(format!("{srv_url}/api/v1/capability"))
        .json(&serde_json::json!({"operation": "request", "device_id": "user=alice", "request_id": "r1", "nonce": "0123456789abcdef", "features": [{"name": "modeler"}]}))
        .send()
        .unwrap();
    assert!(!r.status().is_server_error());
    for p in [
        "bo",
        "bo/tessera.db",
        "bo/tessera.db-wal",
        "bo/tessera.db-shm",
        "bo/keys/producer.key",
        "srv/tessera.db-wal",
        "srv/tessera.db-shm",
    ] {
        let want = if d.join(p).is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&d.join(p)), want, "{p}: {:o}", mode(&d.join(p)));
    }
    let (status, rest, err) = terminate(bo, bo_out);
    assert!(status.success(), "{status:?} {err}");
    assert!(rest.contains("back office stopped"), "{rest}");
    let (status, rest, err) = terminate(srv, srv_out);
    assert!(status.success(), "{status:?} {err}");
    assert!(rest.contains("license server stopped"), "{rest}");
    // a clean stop leaves the store as it was: both start again
    let mut bo = start(
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
    let mut bo_out = BufReader::new(bo.stdout.take().unwrap());
    read_until(&mut bo_out, "listening on");
    let (status, _, err) = terminate(bo, bo_out);
    assert!(status.success(), "{status:?} {err}");
}

/// `backoffice init` in `d/bo`, and `server init` in `d/srv` trusting its producer key.
fn init_both(d: &Path) {
    tessera(&["backoffice", "init", "--data", "bo"], d);
    tessera(
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
}

/// Starts `tessera ARGS` in `d`, waits until it listens, stops it with SIGTERM; checks it exited
/// cleanly and returns its standard error.
fn serve_once(args: &[&str], d: &Path) -> String {
    let mut child = start(args, d);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "listening on");
    let (status, _, err) = terminate(child, out);
    assert!(status.success(), "{args:?}: {err}");
    err
}

#[test]
fn plain_http_on_the_network_is_called_out_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_both(d);
    for (args, warned) in [
        (
            vec!["server", "serve", "--data", "srv", "--listen", "0.0.0.0:0"],
            true,
        ),
        (
            vec![
                "server",
                "serve",
                "--data",
                "srv",
                "--listen",
                "127.0.0.1:0",
            ],
            false,
        ),
        (
            vec![
                "backoffice",
                "serve",
                "--data",
                "bo",
                "--listen",
                "0.0.0.0:0",
            ],
            true,
        ),
        (
            vec![
                "backoffice",
                "serve",
                "--data",
                "bo",
                "--listen",
                "127.0.0.1:0",
            ],
            false,
        ),
    ] {
        let err = serve_once(&args, d);
        assert_eq!(
            err.contains("warning:") && err.contains("plain HTTP"),
            warned,
            "{args:?}: {err}"
        );
    }
}

/// The number `worker_threads=N` in a service's start-up log.
fn workers_logged(err: &str) -> usize {
    let at = err
        .find("worker_threads=")
        .unwrap_or_else(|| panic!("no worker_threads in the log: {err}"));
    err[at + "worker_threads=".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn worker_threads_set_how_many_threads_serve_and_a_bad_value_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_both(d);
    let serve = |args: &[&str]| workers_logged(&serve_once(args, d));
    let server = [
        "server",
        "serve",
        "--data",
        "srv",
        "--listen",
        "127.0.0.1:0",
    ];
    let backoffice = [
        "backoffice",
        "serve",
        "--data",
        "bo",
        "--listen",
        "127.0.0.1:0",
    ];
    // by default, one per CPU core
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(serve(&server), cores);
    assert_eq!(serve(&backoffice), cores);
    // as the configuration says
    let append = |file: &str, line: &str| {
        let p = d.join(file);
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str(line);
        std::fs::write(&p, text).unwrap();
    };
    append("srv/server.toml", "\nworker_threads = 3\n");
    append("bo/backoffice.toml", "\nworker_threads = 5\n");
    assert_eq!(serve(&server), 3);
    assert_eq!(serve(&backoffice), 5);
    // out of range: the start stops with the file and the key named, nothing served
    for (file, args) in [
        ("srv/server.toml", &server),
        ("bo/backoffice.toml", &backoffice),
    ] {
        let p = d.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        let bad = text.replace("worker_threads = 3", "worker_threads = 0");
        let bad = bad.replace("worker_threads = 5", "worker_threads = 0");
        std::fs::write(&p, bad).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(args.iter())
            .current_dir(d)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{args:?} started with worker_threads = 0"
        );
        assert!(
            err.contains("worker_threads")
                && err.contains("between 1 and 1024")
                && err.contains(file.split('/').next_back().unwrap()),
            "{args:?}: {err}"
        );
        assert!(!String::from_utf8_lossy(&o.stdout).contains("listening on"));
    }
}

/// A CA and a certificate it signed for 127.0.0.1, written to `dir`: (ca.pem, cert.pem, key.pem).
fn private_ca(dir: &Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Tessera test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ("ca.pem".into(), "cert.pem".into(), "key.pem".into())
}

#[test]
fn clients_trust_a_private_ca_with_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bo, bo_url, key) = support::backoffice_with_floating_line(d, 3);
    let _bo = support::Serve(bo);
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
    let (ca, cert, tls_key) = private_ca(d);
    let (srv, url) = support::spawn(
        &[
            "server",
            "serve",
            "--data",
            "srv",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &tls_key,
        ],
        d,
    );
    let _srv = support::Serve(srv);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let run = |args: &[&str], ca: Option<&str>| {
        let mut args = args.to_vec();
        if let Some(ca) = ca {
            args.extend(["--ca-cert", ca]);
        }
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(&args)
            .current_dir(d)
            .output()
            .unwrap()
    };
    let activate = [
        "server",
        "activate",
        "--server",
        &url,
        "--token",
        &token,
        "--backoffice",
        &bo_url,
        "--key",
        &format!("{key}:3"),
    ];
    let checkout = [
        "client",
        "checkout",
        "--server",
        &url,
        "--product",
        "cad",
        "--producer-key",
        "bo/keys/producer.pub",
        "--feature",
        "modeler",
        "--hold",
        "0",
        "--state",
        "st",
    ];
    // without the CA, neither the administrator nor a client gets through
    for args in [&activate[..], &checkout[..]] {
        let o = run(args, None);
        let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
        assert!(!o.status.success(), "{args:?}");
        assert!(err.contains("certificate"), "{args:?}: {err}");
    }
    // with it, both do
    for args in [&activate[..], &checkout[..]] {
        let o = run(args, Some(&ca));
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = run(&checkout, Some(&ca));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("checked out modeler") && out.contains("returned lease"),
        "{out}"
    );
}
