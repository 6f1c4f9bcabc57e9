//! `tessera generate man|completions DIR` (what `packaging/build-deb` puts in the package): a man
//! page for the top command and for every subcommand at every depth, and completion scripts for
//! bash, zsh and fish, all made from the command-line definitions.

use std::fs;
use std::process::Command;

fn tessera(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn man_pages_for_the_command_and_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let said = tessera(&["generate", "man", out.to_str().unwrap()]);
    assert!(said.contains("man pages written to"), "{said}");
    for (page, says) in [
        ("tessera.1", "keys, licenses"),
        ("tessera-server.1", "The license server"),
        ("tessera-server-serve.1", "Serve capability requests"),
        ("tessera-server-token-rotate.1", "Replace the admin token"),
        ("tessera-server-accept-storage.1", "Accept the leases"),
        ("tessera-backoffice.1", "back office"),
        ("tessera-backoffice-serve.1", "Serve the back office"),
        ("tessera-backoffice-init.1", "Create a back office"),
        ("tessera-client.1", "activate this machine"),
        ("tessera-license-verify.1", "Check a license file"),
        ("tessera-keys-generate.1", "Generate a producer key pair"),
        ("tessera-quickstart.1", "demo back office"),
        ("tessera-hostid.1", "host identifiers"),
    ] {
        let text = fs::read_to_string(out.join(page))
            .unwrap_or_else(|e| panic!("no man page {page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is no man page"
        );
        assert!(text.contains(says), "{page} does not say `{says}`");
    }
    // the top page lists the subcommands; the serve page documents its options
    let top = fs::read_to_string(out.join("tessera.1")).unwrap();
    assert!(
        top.contains("quickstart") && top.contains("backoffice"),
        "{top}"
    );
    let serve = fs::read_to_string(out.join("tessera-server-serve.1")).unwrap();
    assert!(
        serve.contains("listen") && serve.contains("TESSERA_SERVER_DATA"),
        "{serve}"
    );
    // the packaging command itself is hidden, and so is its page
    let names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("tessera-generate") && !n.contains("-help")),
        "{names:?}"
    );
    assert!(names.len() > 40, "a page for every subcommand: {names:?}");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("completions");
    tessera(&["generate", "completions", out.to_str().unwrap()]);
    for (file, shell_says) in [
        ("tessera.bash", "complete -F"),
        ("_tessera", "#compdef tessera"),
        ("tessera.fish", "complete -c tessera"),
    ] {
        let text = fs::read_to_string(out.join(file))
            .unwrap_or_else(|e| panic!("no completions {file}: {e}"));
        assert!(text.contains(shell_says), "{file} lacks `{shell_says}`");
        for word in ["quickstart", "backoffice", "accept-storage", "producer-key"] {
            assert!(text.contains(word), "{file} does not complete {word}");
        }
    }
}
