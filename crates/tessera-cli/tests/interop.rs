//! A stock JOSE library in another language (Python's PyJWT with `cryptography`) verifies Tessera
//! license files — the test vectors and one issued by the binary — and refuses tampered ones.
//!
//! `.ci/run` installs PyJWT. Where it is missing, the test fails under `CI=true` and otherwise says it
//! was skipped and why (a fresh machine with only the Rust toolchain has no PyJWT).

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn pyjwt_available() -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(format!("python3 cannot be run: {e}")),
    }
}

#[test]
fn pyjwt_verifies_tessera_licenses() {
    if let Err(why) = pyjwt_available() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "CI must run the interop test, but PyJWT is unavailable: {why}"
        );
        eprintln!(
            "SKIPPED pyjwt_verifies_tessera_licenses: {why} (pip install pyjwt cryptography)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tessera");
    let run = |args: &[&str]| {
        let o = Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["keys", "generate", "--out", "keys"]);
    // permanent, so the check does not start failing on some future date
    std::fs::write(
        dir.path().join("spec.toml"),
        "licensee = \"ACME\"\nhostids = [\"user=alice\"]\n[[feature]]\nname = \"solver\"\nversion = \"2.0\"\ncount = 5\n",
    )
    .unwrap();
    run(&[
        "license",
        "issue",
        "--key",
        "keys/producer.key",
        "--spec",
        "spec.toml",
        "--out",
        "example.lic",
    ]);

    let out = Command::new("python3")
        .arg(repo().join("tests/interop/verify_with_pyjwt.py"))
        .arg(repo().join("tests/vectors"))
        .arg(dir.path().join("example.lic"))
        .arg(dir.path().join("keys/producer.pub"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
}
