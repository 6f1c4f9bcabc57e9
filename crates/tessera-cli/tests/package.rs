//! The Debian package, tried on this machine as an administrator would: `packaging/build-deb
//! --debug` builds it around the binary `cargo test` built, `dpkg -i` installs it, and the test
//! checks the files, the conffiles, the `tessera` user, the permissions and the units
//! (`systemd-analyze verify` where the command exists), initialises both services as user tessera,
//! starts each as its unit would (its `ExecStart=`, as user tessera, with the packaged configuration,
//! on a free loopback port), asks their health endpoints, stops them with SIGTERM, installs the
//! package again over itself (data, links and an edited conffile kept), and `dpkg --purge`s it:
//! no state, configuration, secret or user is left behind.
//!
//! It installs a package system-wide, so it runs only when `TESSERA_TEST_PACKAGE=1` (`.ci/run` sets
//! it) and otherwise says it was skipped. With the variable set it never skips: it needs root,
//! dpkg, cargo-deb (`cargo install cargo-deb --locked`) and dpkg-dev, and fails without them. A
//! package left installed by an earlier run is purged first.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{spawn_command, Serve};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs `cmd`; its output, whether it succeeded or not.
fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`; panics with its error output unless it succeeds; its standard output.
fn run(cmd: &mut Command) -> String {
    let o = output(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sh(program: &str, args: &[&str]) -> String {
    run(Command::new(program).args(args))
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    output(Command::new(program).args(args)).status.success()
}

/// `program args…` as user tessera, with the environment systemd gives a service of that user
/// (HOME, USER, LOGNAME, SHELL from its passwd entry, a plain PATH, nothing else).
fn as_tessera(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=tessera",
        "--regid=tessera",
        "--init-groups",
        "--reset-env",
        "--",
        program,
    ])
    .args(args)
    .current_dir("/");
    cmd
}

/// Whether the package is known to dpkg in any state (installed, or its conffiles left).
fn package_known() -> bool {
    let o = output(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", "tessera"]));
    o.status.success() && !String::from_utf8_lossy(&o.stdout).starts_with("un")
}

/// The `ExecStart=` command line of an installed unit, split into words.
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart= line");
    line.split_whitespace().map(String::from).collect()
}

/// Starts a service as its unit does, on a free loopback port; the process and its URL.
fn start_as_unit(unit_text: &str, what: &str) -> (Serve, String) {
    let exec = exec_start(unit_text);
    assert_eq!(
        exec[0], "/usr/bin/tessera",
        "{what}: ExecStart runs the packaged binary"
    );
    let mut args: Vec<&str> = exec[1..].iter().map(String::as_str).collect();
    args.extend(["--listen", "127.0.0.1:0"]);
    let cmd = as_tessera(&exec[0], &args);
    let (child, url) = spawn_command(cmd, what);
    (Serve(child), url)
}

/// Sends SIGTERM (what `systemctl stop` sends) and checks that the service stops by itself, with
/// status 0.
fn stop(mut serve: Serve, what: &str) {
    sh("kill", &["-TERM", &serve.0.id().to_string()]);
    for _ in 0..300 {
        if let Some(status) = serve.0.try_wait().unwrap() {
            assert!(status.success(), "{what} stopped with {status} on SIGTERM");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not stop within 30 s of SIGTERM");
}

fn get(url: &str) -> (u16, String) {
    let resp = reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

fn mode(path: &str) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

/// The uid or gid of a user or group: `getent DB NAME`, third field.
fn id_of(db: &str, name: &str) -> u32 {
    sh("getent", &[db, name])
        .split(':')
        .nth(2)
        .and_then(|f| f.trim().parse().ok())
        .unwrap_or_else(|| panic!("getent {db} {name}: no id"))
}

#[test]
fn debian_package_installs_serves_and_purges() {
    if std::env::var("TESSERA_TEST_PACKAGE").as_deref() != Ok("1") {
        eprintln!(
            "SKIPPED debian_package_installs_serves_and_purges: it installs the package system-wide (as root); set TESSERA_TEST_PACKAGE=1 to run it (.ci/run does)"
        );
        return;
    }
    assert_eq!(
        sh("id", &["-u"]).trim(),
        "0",
        "TESSERA_TEST_PACKAGE=1: the package test installs with dpkg and needs root"
    );
    for tool in ["dpkg", "dpkg-query", "setpriv", "getent", "cargo-deb"] {
        assert!(
            succeeds("sh", &["-c", &format!("command -v {tool}")]),
            "TESSERA_TEST_PACKAGE=1 but {tool} is missing (cargo-deb: cargo install cargo-deb --locked)"
        );
    }

    // a package left by an earlier run (installed, or only its conffiles) goes first
    if package_known() {
        sh("dpkg", &["--purge", "tessera"]);
    }

    // build it around the binary this test run built
    let built = run(Command::new(repo().join("packaging/build-deb"))
        .arg("--debug")
        .current_dir(repo()));
    let deb = built.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        deb.ends_with(".deb") && Path::new(&deb).is_file(),
        "packaging/build-deb printed no package: {built}"
    );
    let info = sh("dpkg-deb", &["--field", &deb, "Package", "Depends"]);
    assert!(info.contains("Package: tessera"), "{info}");
    assert!(
        info.contains("adduser"),
        "the package depends on adduser: {info}"
    );

    // install
    let installed = sh("dpkg", &["-i", &deb]);
    assert!(
        installed.contains("runuser -u tessera -- tessera server init"),
        "a first install says how to initialise the server: {installed}"
    );

    // the files
    let files = sh("dpkg", &["-L", "tessera"]);
    let has = |suffix: &str| files.lines().any(|l| l.ends_with(suffix));
    for f in [
        "/usr/bin/tessera",
        "/systemd/system/tessera-server.service",
        "/systemd/system/tessera-backoffice.service",
        "/etc/tessera/server.toml",
        "/etc/tessera/backoffice.toml",
        "/etc/logrotate.d/tessera",
        "/usr/share/man/man1/tessera.1.gz",
        "/usr/share/man/man1/tessera-server.1.gz",
        "/usr/share/man/man1/tessera-server-serve.1.gz",
        "/usr/share/man/man1/tessera-backoffice-serve.1.gz",
        "/usr/share/bash-completion/completions/tessera",
        "/usr/share/zsh/vendor-completions/_tessera",
        "/usr/share/fish/vendor_completions.d/tessera.fish",
        "/usr/share/doc/tessera/operations.md",
    ] {
        assert!(has(f), "the package holds no {f}:\n{files}");
    }
    let conffiles = sh("dpkg-query", &["-W", "-f=${Conffiles}", "tessera"]);
    for f in [
        "/etc/tessera/server.toml",
        "/etc/tessera/backoffice.toml",
        "/etc/logrotate.d/tessera",
    ] {
        assert!(conffiles.contains(f), "{f} is not a conffile: {conffiles}");
    }
    let version = sh("/usr/bin/tessera", &["--version"]);
    assert!(version.starts_with("tessera "), "{version}");

    // the user, the permissions, the links to the configuration
    let passwd = sh("getent", &["passwd", "tessera"]);
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields[5], "/var/lib/tessera", "home: {passwd}");
    assert!(fields[6].ends_with("nologin"), "no login shell: {passwd}");
    let (uid, gid) = (id_of("passwd", "tessera"), id_of("group", "tessera"));
    for conf in ["/etc/tessera/server.toml", "/etc/tessera/backoffice.toml"] {
        let m = fs::metadata(conf).unwrap();
        assert_eq!((m.uid(), m.gid(), mode(conf)), (0, gid, 0o640), "{conf}");
    }
    for dir in [
        "/var/lib/tessera/server",
        "/var/lib/tessera/backoffice",
        "/var/lib/tessera/anchor",
    ] {
        let m = fs::metadata(dir).unwrap();
        assert_eq!((m.uid(), mode(dir)), (uid, 0o700), "{dir}");
    }
    for svc in ["server", "backoffice"] {
        let link = format!("/var/lib/tessera/{svc}/{svc}.toml");
        assert_eq!(
            fs::read_link(&link).unwrap(),
            PathBuf::from(format!("/etc/tessera/{svc}.toml")),
            "{link}"
        );
    }

    // the units
    let unit_path = |name: &str| {
        files
            .lines()
            .find(|l| l.ends_with(&format!("/systemd/system/{name}")))
            .unwrap()
            .to_string()
    };
    let server_unit_path = unit_path("tessera-server.service");
    let backoffice_unit_path = unit_path("tessera-backoffice.service");
    let server_unit = fs::read_to_string(&server_unit_path).unwrap();
    let backoffice_unit = fs::read_to_string(&backoffice_unit_path).unwrap();
    for (unit, state) in [
        (&server_unit, "StateDirectory=tessera/server tessera/anchor"),
        (&backoffice_unit, "StateDirectory=tessera/backoffice"),
    ] {
        for line in [
            "User=tessera",
            "Group=tessera",
            state,
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "CapabilityBoundingSet=",
        ] {
            assert!(
                unit.lines().any(|l| l == line),
                "a unit lacks `{line}`:\n{unit}"
            );
        }
    }
    if succeeds("sh", &["-c", "command -v systemd-analyze"]) {
        let o = output(Command::new("systemd-analyze").args([
            "verify",
            &server_unit_path,
            &backoffice_unit_path,
        ]));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "systemd-analyze verify: {said}");
        eprintln!(
            "systemd-analyze verify: both units pass{}",
            if said.trim().is_empty() {
                String::new()
            } else {
                format!(" ({})", said.trim())
            }
        );
    } else {
        eprintln!("systemd-analyze is not on this machine: the units were not verified by systemd");
    }

    // initialise the license server as the administrator does, with a producer's public key
    let keys = tempfile::tempdir().unwrap();
    sh(
        "/usr/bin/tessera",
        &["keys", "generate", "--out", keys.path().to_str().unwrap()],
    );
    fs::copy(
        keys.path().join("producer.pub"),
        "/etc/tessera/producer.pub",
    )
    .unwrap();
    let init = run(&mut as_tessera(
        "/usr/bin/tessera",
        &[
            "server",
            "init",
            "--data",
            "/var/lib/tessera/server",
            "--producer-key",
            "/etc/tessera/producer.pub",
        ],
    ));
    let token = init
        .split_whitespace()
        .find(|w| w.starts_with("tss_"))
        .unwrap_or_else(|| panic!("init printed no admin token: {init}"))
        .to_string();
    assert_eq!(
        fs::read_link("/var/lib/tessera/server/server.toml").unwrap(),
        PathBuf::from("/etc/tessera/server.toml"),
        "init keeps the link to the packaged configuration"
    );
    let key = fs::metadata("/var/lib/tessera/server/keys/server.key").unwrap();
    assert_eq!(
        (key.uid(), mode("/var/lib/tessera/server/keys/server.key")),
        (uid, 0o600)
    );

    // start it as the unit does; it answers, and keeps its storage mark where the packaged
    // configuration says (anchor_dir), not under the user's home
    let (server, url) = start_as_unit(&server_unit, "the license server");
    assert_eq!(get(&format!("{url}/healthz")), (200, "ok".to_string()));
    assert_eq!(get(&format!("{url}/readyz")).0, 200);
    let status = sh(
        "/usr/bin/tessera",
        &["server", "status", "--server", &url, "--token", &token],
    );
    assert!(status.contains("not activated"), "{status}");
    let anchors: Vec<_> = fs::read_dir("/var/lib/tessera/anchor")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        anchors.iter().any(|a| a.starts_with("anchor-")),
        "no storage mark in /var/lib/tessera/anchor: {anchors:?}"
    );
    stop(server, "the license server");

    // the back office likewise
    let init = run(&mut as_tessera(
        "/usr/bin/tessera",
        &[
            "backoffice",
            "init",
            "--data",
            "/var/lib/tessera/backoffice",
            "--json",
        ],
    ));
    let shown: serde_json::Value = serde_json::from_str(&init).unwrap();
    assert!(
        shown["admin_token"].as_str().unwrap().starts_with("tsr_"),
        "{init}"
    );
    let (backoffice, url) = start_as_unit(&backoffice_unit, "the back office");
    let (code, body) = get(&format!("{url}/healthz"));
    assert_eq!(code, 200, "{body}");
    stop(backoffice, "the back office");

    // installed again over itself (an upgrade to the same version): data, links and the
    // administrator's edit of a conffile are kept
    let mut conf = fs::read_to_string("/etc/tessera/server.toml").unwrap();
    conf.push_str("# edited by the administrator\n");
    fs::write("/etc/tessera/server.toml", &conf).unwrap();
    sh("dpkg", &["-i", &deb]);
    assert_eq!(
        fs::read_to_string("/etc/tessera/server.toml").unwrap(),
        conf
    );
    assert_eq!(mode("/etc/tessera/server.toml"), 0o640);
    assert!(Path::new("/var/lib/tessera/server/keys/server.key").exists());
    assert!(Path::new("/var/lib/tessera/backoffice/keys/producer.key").exists());
    assert!(fs::read_link("/var/lib/tessera/server/server.toml").is_ok());

    // purge: nothing is left, no key, no store, no token, no configuration, no user
    sh("dpkg", &["--purge", "tessera"]);
    assert!(!package_known(), "dpkg still knows the package after purge");
    for gone in [
        "/usr/bin/tessera",
        "/var/lib/tessera",
        "/var/log/tessera",
        "/etc/tessera",
        "/etc/logrotate.d/tessera",
        &server_unit_path,
    ] {
        assert!(
            fs::symlink_metadata(gone).is_err(),
            "{gone} is still there after purge"
        );
    }
    assert!(
        !succeeds("getent", &["passwd", "tessera"]),
        "purge removes the tessera user"
    );
    assert!(
        !succeeds("getent", &["group", "tessera"]),
        "purge removes the tessera group"
    );
    assert!(
        !succeeds("dpkg-statoverride", &["--list", "/etc/tessera/server.toml"]),
        "purge removes the permission override of the configuration"
    );
}
