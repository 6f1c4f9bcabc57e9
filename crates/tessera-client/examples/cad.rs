//! An example application licensed with Tessera: "ACME CAD" with features modeler, render, export.
//!
//! ```sh
//! cargo run -p tessera-client --example cad -- --producer-key bo/keys/producer.pub \
//!     --unlock-key bo/keys/unlock.pub [--backoffice http://127.0.0.1:7171] COMMAND
//! ```
//!
//! Commands: `pcid` (show this computer's PC identifier), `activate KEY` (online activation or
//! validation at launch), `unlock KEY CODE` (a typed unlock code), `seat SERVER FEATURE` (check a
//! floating seat out, keep it a moment with the heartbeat, return it on exit), `borrow SERVER
//! FEATURE DAYS` and `return FEATURE` (offline use), `run FEATURE...` (what a launch does: check
//! each feature and say what the user may do, with "N days left" warnings).
//! Exit status: 0 when every feature asked for may be used, 1 when one may not, 2 on a usage error.

use std::process::ExitCode;

use tessera_client::{Client, ClientConfig, GrantSource};

const FEATURES: [&str; 3] = ["modeler", "render", "export"];

fn usage() -> ExitCode {
    eprintln!("usage: cad --producer-key FILE [--unlock-key FILE] [--backoffice URL] [--state DIR] (pcid | activate KEY | unlock KEY CODE | seat SERVER FEATURE | borrow SERVER FEATURE DAYS | return FEATURE | run FEATURE...)");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut take = |flag: &str| -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        let v = args.get(i + 1).cloned();
        args.drain(i..(i + 2).min(args.len()));
        v
    };
    let (Some(producer), unlock, backoffice, state) = (
        take("--producer-key"),
        take("--unlock-key"),
        take("--backoffice"),
        take("--state"),
    ) else {
        return usage();
    };
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let config = (|| -> Result<ClientConfig, String> {
        let mut c = ClientConfig::new("cad", &read(&producer)?)
            .map_err(|e| e.to_string())?
            .trial(60, &["modeler"])
            .state_secret(b"acme-cad-example");
        if let Some(u) = &unlock {
            c = c
                .unlock_codes(&read(u)?, &FEATURES)
                .map_err(|e| e.to_string())?;
        }
        if let Some(url) = &backoffice {
            c = c.backoffice(url);
        }
        if let Some(dir) = &state {
            c = c.state_dirs(format!("{dir}/state"), format!("{dir}/backup"));
        }
        Ok(c)
    })();
    let client = match config.and_then(|c| Client::new(c).map_err(|e| e.to_string())) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cad: {e}");
            return ExitCode::from(2);
        }
    };
    match args.first().map(String::as_str) {
        Some("pcid") => {
            println!("{}", client.pc_id());
            ExitCode::SUCCESS
        }
        Some("activate") if args.len() == 2 => match client.activate(&args[1]) {
            Ok(lic) => {
                println!(
                    "activated: {} feature records for {}",
                    lic.features().len(),
                    lic.claims().sub
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cad: {e}");
                ExitCode::from(1)
            }
        },
        Some("unlock") if args.len() == 3 => match client.apply_unlock_code(&args[1], &args[2]) {
            Ok(g) => {
                println!("unlocked: {}", g.features.names(&FEATURES).join(", "));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cad: {e}");
                ExitCode::from(1)
            }
        },
        Some("seat") if args.len() == 3 => match client.checkout(&args[1], &args[2], "1.0") {
            Ok(seat) => {
                println!("seat: {} (lease {})", args[2], seat.lease());
                std::thread::sleep(std::time::Duration::from_millis(300));
                drop(seat); // returned on exit
                println!("seat returned");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cad: {e}");
                ExitCode::from(1)
            }
        },
        Some("borrow") if args.len() == 4 => {
            let days: u32 = args[3].parse().unwrap_or(0);
            match client.borrow(&args[1], &args[2], "1.0", days) {
                Ok(b) => {
                    println!("borrowed: {} (lease {})", b.feature, b.lease);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cad: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Some("return") if args.len() == 2 => match client.return_borrowed(&args[1]) {
            Ok(()) => {
                println!("returned: {}", args[1]);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cad: {e}");
                ExitCode::from(1)
            }
        },
        Some("run") if args.len() > 1 => {
            let mut all = true;
            for f in &args[1..] {
                match client.check(f, "1.0") {
                    Ok(g) => {
                        let how = match g.source {
                            GrantSource::License => "licensed",
                            GrantSource::UnlockCode => "unlocked",
                            GrantSource::Borrowed => "borrowed",
                            GrantSource::Trial => "trial",
                            GrantSource::Basic => "basic",
                            _ => "allowed",
                        };
                        match g.days_left {
                            Some(d) if d <= 7 => println!("{f}: {how}, only {d} days left"),
                            Some(d) => println!("{f}: {how}, {d} days left"),
                            None => println!("{f}: {how}"),
                        }
                    }
                    Err(e) => {
                        all = false;
                        println!("{f}: not available: {e}");
                    }
                }
            }
            if all {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        _ => usage(),
    }
}
