//! `tessera quickstart`: a producer's back office and a customer's license server on one machine,
//! with a demo product activated into the server, ready for a client to check a seat out.
//!
//! ```text
//! DATA/backoffice/   the back office (producer keys, SQLite), served on 127.0.0.1:7171
//! DATA/server/       the license server (its key, trusted storage), served on 127.0.0.1:7070
//! DATA/demo.lic      a node-locked demo license for this machine
//! DATA/quickstart.json   what the first run made (ids, the admin token of the server)
//! ```
//!
//! A second run reuses everything. Ctrl-C or SIGTERM stops both servers cleanly.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use tessera_backoffice::model::{LicenseModel, LinePolicy, ProductFeature, ProductSpec};
use tessera_backoffice::service::NewLine;
use tessera_core::{Keyring, License};
use tessera_host::SystemClock;

use crate::fsutil::write_atomic;

#[derive(Debug, Serialize, Deserialize)]
struct Made {
    customer: String,
    floating_key: String,
    admin_password: String,
    server_token: String,
    /// The license server's first password of `admin` (made by earlier versions without one).
    #[serde(default)]
    server_admin_password: String,
}

/// How `tessera quickstart` runs: where the two services listen, and whether they keep serving.
#[derive(Debug, Clone)]
pub struct Options {
    /// Back office listen address.
    pub backoffice_listen: String,
    /// License server listen address.
    pub server_listen: String,
    /// Set up, verify, and exit instead of serving.
    pub no_serve: bool,
}

pub fn run(data: &Path, opts: Options) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(data, opts))
}

fn policy(model: LicenseModel, count: u32) -> LinePolicy {
    LinePolicy {
        features: vec![],
        count,
        model,
        starts_at: None,
        expires_at: None,
        term_days: None,
        overdraft: 1,
        policy: Default::default(),
        demo: true,
    }
}

async fn run_async(data: &Path, opts: Options) -> Result<()> {
    // private (0700): it holds both services' keys and stores, and the credentials of the demo
    tessera_host::private_dir(data).with_context(|| format!("cannot create {}", data.display()))?;
    let data = data
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data.display()))?;
    println!("Tessera quickstart in {}", data.display());
    let bo_dir = data.join("backoffice");
    let srv_dir = data.join("server");
    let made_path = data.join("quickstart.json");
    let clock = Arc::new(SystemClock);

    // 1. the back office and its catalogue
    let first = !made_path.exists();
    let made: Made = if first {
        let report = tessera_backoffice::daemon::init(
            &bo_dir,
            None,
            Some("Tessera Demo Producer"),
            &SystemClock,
        )
        .await
        .map_err(|e| match e {
            tessera_backoffice::daemon::DaemonError::AlreadyInitialised(_) => anyhow!(
                "{} holds a back office from an interrupted quickstart: remove {} and run again",
                bo_dir.display(),
                data.display()
            ),
            other => other.into(),
        })?;
        let (bo, _) = tessera_backoffice::daemon::open(&bo_dir, None, clock.clone()).await?;
        let spec = ProductSpec {
            features: ["modeler", "render", "export"]
                .iter()
                .map(|n| ProductFeature {
                    name: n.to_string(),
                    version: "2.0".parse().unwrap_or_default(),
                })
                .collect(),
            version: Some("2026.1".into()),
            trial_days: 60,
            basic_features: vec!["modeler".into()],
            demo_days: 30,
        };
        bo.create_product("demo-cad", "Demo CAD", spec).await?;
        let customer = bo.create_customer("Quickstart Customer", None).await?;
        let ent = bo
            .create_entitlement(
                &customer.id,
                vec![
                    NewLine {
                        product: "demo-cad".into(),
                        policy: policy(LicenseModel::Floating, 5),
                    },
                    NewLine {
                        product: "demo-cad".into(),
                        policy: policy(LicenseModel::NodeLocked, 1),
                    },
                ],
            )
            .await?;
        let keys: Vec<String> = ent.lines.iter().filter_map(|l| l.key.clone()).collect();
        let (Some(floating), Some(node_locked)) = (keys.first(), keys.get(1)) else {
            return Err(anyhow!("the demo entitlement has no keys"));
        };
        // a node-locked demo license for this machine, as an application would get it
        let pc = tessera_host::this_machine()
            .identify()
            .pc_id("demo-cad")
            .ok_or_else(|| anyhow!("this machine has no machine id, MAC address or VM UUID"))?;
        let lic = bo
            .activate_device(node_locked, &pc.to_string(), Some("demo-cad"))
            .await?;
        write_atomic(&data.join("demo.lic"), lic.license.as_bytes(), 0o644)?;
        // the license server
        let producer_pem = std::fs::read_to_string(bo_dir.join("keys/producer.pub"))?;
        let server_made = tessera_server::init(&srv_dir, &producer_pem, None, None).await?;
        let made = Made {
            customer: customer.id,
            floating_key: floating.clone(),
            admin_password: report.admin_password,
            server_token: server_made.token,
            server_admin_password: server_made.password,
        };
        write_atomic(
            &made_path,
            serde_json::to_string_pretty(&made)?.as_bytes(),
            0o600,
        )?;
        println!(
            "  [ok] back office created: {} (producer key id {})",
            bo_dir.display(),
            report.kid
        );
        println!("  [ok] demo product demo-cad (modeler, render, export), customer and entitlement created");
        println!("  [ok] license server created: {}", srv_dir.display());
        made
    } else {
        println!("  [ok] reusing the back office, license server and demo entitlement from the first run");
        serde_json::from_str(&std::fs::read_to_string(&made_path)?).with_context(|| {
            format!(
                "{} does not parse: remove {} and run again",
                made_path.display(),
                data.display()
            )
        })?
    };

    // the demo license verifies as an application would check it
    let producer = tessera_backoffice::daemon::public_key(&bo_dir)?;
    let text = std::fs::read_to_string(data.join("demo.lic"))?;
    let ids = tessera_host::this_machine()
        .identify()
        .ids_for_products(["demo-cad"]);
    let lic = License::verify(
        &text,
        &Keyring::with(producer),
        tessera_core::Clock::now(&SystemClock),
        &ids,
    )
    .context("the demo license does not verify")?;
    println!(
        "  [ok] demo license {} verified: {} features, bound to this machine",
        data.join("demo.lic").display(),
        lic.features().len()
    );

    // 2. serve both
    let (bo, bo_config) = tessera_backoffice::daemon::open(&bo_dir, None, clock.clone()).await?;
    let bo_state = tessera_backoffice::daemon::state(bo, &bo_config);
    let bo_listener = tokio::net::TcpListener::bind(&opts.backoffice_listen)
        .await
        .map_err(|e| {
            anyhow!(
                "cannot listen on {} for the back office: {e}",
                opts.backoffice_listen
            )
        })?;
    let bo_url = format!("http://{}", bo_listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut rx1 = stop_rx.clone();
    let bo_task = tokio::spawn(tessera_backoffice::daemon::serve_on(
        bo_listener,
        bo_state,
        async move {
            let _ = rx1.changed().await;
        },
    ));
    let server = tessera_server::open(&srv_dir, clock.clone()).await?;
    let srv_state = tessera_server::http::state(server);
    let srv_listener = tokio::net::TcpListener::bind(&opts.server_listen)
        .await
        .map_err(|e| {
            anyhow!(
                "cannot listen on {} for the license server: {e}",
                opts.server_listen
            )
        })?;
    let srv_url = format!("http://{}", srv_listener.local_addr()?);
    if first {
        let n = srv_state
            .server
            .activate(
                &bo_url,
                &[tessera_wire::KeyCount::new(made.floating_key.clone(), 5)],
            )
            .await?;
        println!(
            "  [ok] license server activated with the floating key (5 seats): {n} feature records"
        );
    }
    let mut rx2 = stop_rx.clone();
    let srv_task = tokio::spawn(tessera_server::serve_on(
        srv_listener,
        srv_state,
        async move {
            let _ = rx2.changed().await;
        },
    ));

    let signal = tessera_host::serve::shutdown_signal();
    println!();
    println!(
        "Back office:     {bo_url}   (admin / {})",
        if first {
            made.admin_password.as_str()
        } else {
            "the password printed at the first run"
        }
    );
    println!("  public pages:  {bo_url}/activate  {bo_url}/offline");
    println!(
        "License server:  {srv_url}   (admin token {})",
        made.server_token
    );
    println!("  manager:       {srv_url}/   (the License Server Manager: open it in a browser)");
    if first && !made.server_admin_password.is_empty() {
        println!(
            "  user admin, first password {} (the manager asks for a new one at the first login; or: tessera server passwd --server {srv_url})",
            made.server_admin_password
        );
    } else {
        println!("  user admin: the password printed at the first run, or the one you chose since");
    }
    println!();
    println!("Check a seat out of the license server from another terminal:");
    println!(
        "  curl -s {srv_url}/api/v1/capability -H 'content-type: application/json' \\\n    -d '{{\"operation\":\"request\",\"device_id\":\"user=alice\",\"request_id\":\"r1\",\"nonce\":\"0123456789abcdef\",\"features\":[{{\"name\":\"modeler\"}}]}}'"
    );
    println!(
        "  tessera server status --server {srv_url} --token {}",
        made.server_token
    );
    if opts.no_serve {
        let _ = stop_tx.send(true);
    } else {
        println!();
        println!("Ctrl-C stops both.");
        signal.await;
        let _ = stop_tx.send(true);
        crate::say(true, "stopping");
    }
    let _ = bo_task.await;
    let _ = srv_task.await;
    if !opts.no_serve {
        crate::say(true, "stopped");
    }
    Ok(())
}
