//! `tessera generate man|completions DIR`: the man pages and shell completion scripts, made from
//! the command-line definitions themselves, for packaging (`packaging/build-deb` runs both).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap_complete::Shell;

/// Writes `tessera.1` and one page for every subcommand, at every depth (`tessera-server.1`,
/// `tessera-server-serve.1`, …), hidden commands left out; prints what it wrote.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // the subcommands' own pages need their full names (`tessera server serve`) and versions
    let mut cmd = cmd;
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, "tessera", dir, &mut written)?;
    crate::say(
        true,
        &format!("{} man pages written to {}", written.len(), dir.display()),
    );
    Ok(())
}

fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut text)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// Writes the completion scripts for bash, zsh and fish under the names each shell looks for.
pub fn completions(cmd: clap::Command, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = cmd;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path =
            clap_complete::generate_to(shell, &mut cmd, "tessera", dir).with_context(|| {
                format!("cannot write the {shell} completions to {}", dir.display())
            })?;
        crate::say(true, &format!("{shell} completions: {}", path.display()));
    }
    Ok(())
}
