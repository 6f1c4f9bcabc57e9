//! `tessera`: the one binary of Tessera.
//!
//! Exit status: 0 success; 1 the license (or other document) checked is not valid; 2 any other error
//! (bad arguments, unreadable files, a spec that breaks a rule). Errors are one line on stderr.
#![forbid(unsafe_code)]

mod backoffice;
mod client;
mod commands;
mod fsutil;
mod generate;
mod keys;
mod named_users;
mod pools;
mod properties;
mod quickstart;
mod reservations;
mod server;
mod spec;
mod views;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// The services' allocator: under load the seat engine's writer thread and the request handlers
/// allocate and free on different threads, where glibc's allocator spends a fifth of the writer's
/// time (docs/performance.md, "grants only, with wrk").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tessera: open-source software licensing.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Producer signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Issue and verify license files.
    #[command(subcommand)]
    License(LicenseCommand),
    /// Print this machine's host identifiers, device type and PC identifier.
    Hostid {
        /// The product whose PC identifier to show (PC identifiers are salted per product).
        #[arg(long, default_value = "tessera")]
        product: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Start a demo back office (127.0.0.1:7171) and license server (127.0.0.1:7070) with a demo
    /// product activated, print the URLs and credentials, and serve until Ctrl-C. A second run
    /// reuses the data directory.
    Quickstart {
        /// The data directory (created if missing, reused if present).
        #[arg(long, default_value = "tessera-data", env = "TESSERA_DATA")]
        data: PathBuf,
        /// Where the back office listens.
        #[arg(long, default_value = "127.0.0.1:7171")]
        backoffice_listen: String,
        /// Where the license server listens.
        #[arg(long, default_value = "127.0.0.1:7070")]
        server_listen: String,
        /// Set everything up and verify it, then exit instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
    /// The producer's back office: serve it, and every producer action.
    #[command(subcommand)]
    Backoffice(backoffice::BackofficeCommand),
    /// The license server: init, serve, activate, status.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// What an application does: activate this machine online or with files, check an unlock
    /// code, start a trial.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages or the shell completions into a directory (for packaging).
    #[command(subcommand, hide = true)]
    Generate(GenerateCommand),
}

#[derive(Debug, Subcommand)]
enum GenerateCommand {
    /// A man page for `tessera` and one for every subcommand (tessera.1, tessera-server.1,
    /// tessera-server-serve.1, …).
    Man {
        /// The directory to write them to (created if missing).
        dir: PathBuf,
    },
    /// Completion scripts for bash (`tessera`), zsh (`_tessera`) and fish (`tessera.fish`).
    Completions {
        /// The directory to write them to (created if missing).
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate a producer key pair: DIR/producer.key (PKCS#8 PEM, mode 0600) and DIR/producer.pub (SPKI PEM).
    Generate {
        /// The directory to write the keys to (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Replace existing keys (licenses signed with the old key will no longer verify against the new one).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LicenseCommand {
    /// Sign a license described by a TOML spec (see docs/examples/license-spec.toml).
    Issue {
        /// The producer's private key (producer.key).
        #[arg(long)]
        key: PathBuf,
        /// The license spec (TOML).
        #[arg(long)]
        spec: PathBuf,
        /// Where to write the license file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a license file: signature, type, validity period and host binding.
    ///
    /// Exits 0 and prints the features when the license is valid; exits 1 with one line saying why
    /// when it is not.
    Verify {
        /// The license file.
        file: PathBuf,
        /// The producer's public key (producer.pub).
        #[arg(long)]
        public_key: PathBuf,
        /// Check against this host id instead of this machine's (KIND=VALUE; repeatable).
        #[arg(long = "hostid", value_name = "KIND=VALUE")]
        hostids: Vec<String>,
        /// Check as of this date or RFC 3339 time instead of now.
        #[arg(long)]
        at: Option<String>,
        /// Print the verified claims as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// An error with the exit status it should give.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The checked document is not valid (exit 1).
    Invalid(String),
    /// Anything else (exit 2).
    Error(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Error(e)
    }
}

/// Says (in the log and on standard error) that a service takes credentials over plain HTTP on an
/// address other machines can reach.
pub(crate) fn warn_plain_http(addr: std::net::SocketAddr, service: &str, credentials: &str) {
    if addr.ip().is_loopback() {
        return;
    }
    tracing::warn!(%addr, "{service} serves plain HTTP on a non-loopback address: {credentials} cross the network in clear text");
    say(
        false,
        &format!("warning: {service} serves plain HTTP on {addr}, reachable from other machines: {credentials} cross the network in clear text. Serve HTTPS (--tls-cert and --tls-key), or listen on 127.0.0.1 behind a TLS proxy."),
    );
}

/// Prints a line on standard output (`out`) or standard error, ignoring a closed stream (a service
/// stopping must not fail for want of a terminal).
pub(crate) fn say(out: bool, line: &str) {
    use std::io::Write;
    let _ = if out {
        writeln!(std::io::stdout(), "{line}")
    } else {
        writeln!(std::io::stderr(), "{line}")
    };
}

fn main() -> ExitCode {
    // `tessera … | head` closes stdout early: end quietly, as other command-line tools do
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keys(KeysCommand::Generate { out, force }) => {
            commands::keys_generate(&out, force).map_err(Failure::from)
        }
        Command::License(LicenseCommand::Issue { key, spec, out }) => {
            commands::license_issue(&key, &spec, &out).map_err(Failure::from)
        }
        Command::License(LicenseCommand::Verify {
            file,
            public_key,
            hostids,
            at,
            json,
        }) => commands::license_verify(&file, &public_key, &hostids, at.as_deref(), json),
        Command::Hostid { product, json } => {
            commands::hostid(&product, json).map_err(Failure::from)
        }
        Command::Backoffice(cmd) => backoffice::run(cmd).map_err(Failure::from),
        Command::Client(cmd) => client::run(cmd),
        Command::Server(cmd) => server::run(cmd).map_err(Failure::from),
        Command::Quickstart {
            data,
            backoffice_listen,
            server_listen,
            no_serve,
        } => quickstart::run(
            &data,
            quickstart::Options {
                backoffice_listen,
                server_listen,
                no_serve,
            },
        )
        .map_err(Failure::from),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "tessera",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Generate(GenerateCommand::Man { dir }) => {
            generate::man_pages(Cli::command(), &dir).map_err(Failure::from)
        }
        Command::Generate(GenerateCommand::Completions { dir }) => {
            generate::completions(Cli::command(), &dir).map_err(Failure::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(msg)) => {
            eprintln!("invalid: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Error(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
