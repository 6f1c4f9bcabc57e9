//! The client library as an application uses it, against a real back office on port 0: node-locked
//! files, unlock codes, a trial that survives reinstalling and falls back to basic features on day
//! 61, clock rollback, validation at launch with a grace period. Time moves with a ManualClock.

use std::path::PathBuf;
use std::sync::Arc;

use tessera_client::{Client, ClientConfig, ClientError, GrantSource, TrialStatus};
use tessera_core::time::Duration;
use tessera_core::{Clock, ManualClock};
use tessera_host::SystemClock;
use tessera_testkit::{machine, BackOfficeKit, TestBackOffice};

struct Office {
    url: String,
    bo: TestBackOffice,
    rt: tokio::runtime::Runtime,
}

/// A back office (issuer "Example Software") with product `cad`: features modeler, render and
/// export, modeler basic, a 60-day trial; added through its API as a producer would.
fn office() -> Office {
    let rt = tessera_testkit::runtime();
    let bo = rt.block_on(
        BackOfficeKit::new()
            .bare()
            .issuer("Example Software")
            .start(),
    );
    let o = Office {
        url: bo.url.clone(),
        bo,
        rt,
    };
    o.admin("/api/v1/products", serde_json::json!({"id": "cad", "name": "ACME CAD",
        "features": [{"name": "modeler"}, {"name": "render"}, {"name": "export"}], "basic_features": ["modeler"], "trial_days": 60}));
    o
}

impl Office {
    fn admin(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        self.rt.block_on(self.bo.admin(path, body))
    }

    fn producer_pem(&self) -> String {
        self.bo.producer_pem()
    }

    fn unlock_pem(&self) -> String {
        self.bo.unlock_pem()
    }

    fn node_locked_key(&self, features: &[&str]) -> String {
        let c = self.admin("/api/v1/customers", serde_json::json!({"name": "ACME"}));
        let e = self.admin(
            "/api/v1/entitlements",
            serde_json::json!({"customer_id": c["id"], "lines": [
            {"product": "cad", "model": "node_locked", "count": 1, "features": features}]}),
        );
        e["lines"][0]["key"].as_str().unwrap().to_string()
    }
}

struct App {
    state: tempfile::TempDir,
    backup: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl App {
    fn new() -> App {
        App {
            state: tempfile::tempdir().unwrap(),
            backup: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(SystemClock.now())),
        }
    }

    fn config(&self, o: &Office) -> ClientConfig {
        ClientConfig::new("cad", &o.producer_pem())
            .unwrap()
            .unlock_codes(&o.unlock_pem(), &["modeler", "render", "export"])
            .unwrap()
            .trial(60, &["modeler"])
            .state_dirs(
                self.state.path().join("state"),
                self.backup.path().join("backup"),
            )
            .state_secret(b"cad-app")
    }

    fn client(&self, o: &Office, online: bool, n: u8) -> Client {
        let mut cfg = self.config(o);
        if online {
            cfg = cfg.backoffice(&o.url);
        }
        Client::with(cfg, self.clock.clone(), machine(n)).unwrap()
    }
}

#[test]
fn trial_survives_reinstall_and_falls_back_to_basic_features_on_day_61() {
    let o = office();
    let app = App::new();
    let c = app.client(&o, true, 1);
    let g = c.check("render", "1.0").unwrap();
    assert_eq!((g.source, g.days_left), (GrantSource::Trial, Some(60)));
    app.clock.advance(Duration::days(30));
    assert!(matches!(
        c.trial_status().unwrap(),
        TrialStatus::Active { days_left: 30, .. }
    ));

    // reinstall: the install directory goes, the state directory too; the backup copy and the
    // back office remember the start
    std::fs::remove_dir_all(app.state.path().join("state")).unwrap();
    let again = app.client(&o, true, 1);
    assert!(matches!(
        again.trial_status().unwrap(),
        TrialStatus::Active { days_left: 30, .. }
    ));
    // every local copy deleted while online: the back office gives the original start back
    std::fs::remove_dir_all(app.state.path().join("state")).unwrap();
    std::fs::remove_dir_all(app.backup.path().join("backup")).unwrap();
    assert!(matches!(
        app.client(&o, true, 1).trial_status().unwrap(),
        TrialStatus::Active { days_left: 30, .. }
    ));

    // day 61: full features are gone, the basic ones stay
    app.clock.advance(Duration::days(31));
    let err = again.check("render", "1.0").unwrap_err();
    assert!(matches!(err, ClientError::TrialExpired { .. }), "{err:?}");
    assert!(
        err.to_string().contains("still available: modeler"),
        "{err}"
    );
    assert_eq!(
        again.check("modeler", "1.0").unwrap().source,
        GrantSource::Basic
    );

    // the clock set back a week is noticed
    app.clock.advance(-Duration::days(7));
    let err = again.check("modeler", "1.0").unwrap_err();
    assert!(
        matches!(err, ClientError::ClockRolledBack { .. }),
        "{err:?}"
    );
}

#[test]
fn offline_trial_state_is_tamper_evident() {
    let o = office();
    let app = App::new();
    let c = app.client(&o, false, 2);
    c.check("render", "1.0").unwrap();
    let dir: PathBuf = app.state.path().join("state");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replacen("\"trial_started\": 1", "\"trial_started\": 2", 1);
    assert_ne!(edited, text);
    std::fs::write(&file, edited).unwrap();
    let err = c.check("render", "1.0").unwrap_err();
    assert!(matches!(err, ClientError::StateTampered { .. }), "{err:?}");
}

#[test]
fn unlock_codes_typed_by_the_user() {
    let o = office();
    let app = App::new();
    let c = app.client(&o, false, 3);
    // the first run starts the trial
    assert!(matches!(
        c.trial_status().unwrap(),
        TrialStatus::Active { days_left: 60, .. }
    ));
    let key = o.node_locked_key(&["render"]);
    // the back office's /activate page answer, as the user would read it off the page
    let page: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/unlock", o.url))
        .json(&serde_json::json!({"key": key, "pc_id": c.pc_id().to_string()}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let code = page["code"].as_str().unwrap().to_string();
    // a typo: the group is named, nothing is stored
    let mut typo: Vec<char> = code.chars().collect();
    typo[20] = if typo[20] == 'A' { 'B' } else { 'A' };
    let err = c
        .apply_unlock_code(&key, &typo.iter().collect::<String>())
        .unwrap_err();
    assert!(err.to_string().contains("group 3"), "{err}");
    // typed in lower case with spaces: accepted and remembered
    let typed = code.to_lowercase().replace('-', " ");
    c.apply_unlock_code(&key, &typed).unwrap();
    app.clock.advance(Duration::days(90)); // long after the trial
    assert_eq!(
        c.check("render", "1.0").unwrap().source,
        GrantSource::UnlockCode
    );
    assert!(matches!(
        c.check("export", "1.0"),
        Err(ClientError::TrialExpired { .. })
    ));
    // on another machine the same code does not unlock
    let other = app.client(&o, false, 4);
    assert!(other.apply_unlock_code(&key, &code).is_err());
}

#[test]
fn validated_at_launch_with_a_grace_period() {
    let o = office();
    let app = App::new();
    let cfg = app
        .config(&o)
        .backoffice(&o.url)
        .license_path(app.state.path().join("state/license.lic"));
    let c = Client::with(cfg, app.clock.clone(), machine(5)).unwrap();
    let key = o.node_locked_key(&[]);
    c.activate(&key).unwrap();
    let g = c.check("export", "1.0").unwrap();
    assert_eq!((g.source, g.days_left), (GrantSource::License, Some(30)));
    // offline for 25 days: still working, "only 5 days left"
    app.clock.advance(Duration::days(25));
    assert_eq!(c.check("export", "1.0").unwrap().days_left, Some(5));
    // day 31 without a validation: stops, with a clear message
    app.clock.advance(Duration::days(6));
    let err = c.check("export", "1.0").unwrap_err();
    assert!(
        matches!(err, ClientError::GraceExpired { grace_days: 30, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("30-day grace period is over"),
        "{err}"
    );
    // the key on another machine is refused by the back office, with its reason
    let other = Client::with(
        app.config(&o).backoffice(&o.url),
        app.clock.clone(),
        machine(6),
    )
    .unwrap();
    let err = other.activate(&key).unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { code, .. } if code == "bound_to_another_machine"),
        "{err:?}"
    );
    // a typo in the key is caught before any network call
    let mut typo: Vec<char> = key.chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    assert!(matches!(
        other.activate(&typo.iter().collect::<String>()),
        Err(ClientError::InvalidKey { .. })
    ));
}

#[test]
fn a_tampered_license_file_is_refused() {
    let o = office();
    let app = App::new();
    let cfg = app
        .config(&o)
        .backoffice(&o.url)
        .license_path(app.state.path().join("state/license.lic"));
    let c = Client::with(cfg, app.clock.clone(), machine(7)).unwrap();
    c.activate(&o.node_locked_key(&[])).unwrap();
    let path = app.state.path().join("state/license.lic");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let l = &mut lines[4];
    let ch = if l.as_bytes()[7] == b'A' { "B" } else { "A" };
    l.replace_range(7..8, ch);
    std::fs::write(&path, lines.join("\n")).unwrap();
    let err = c.check("export", "1.0").unwrap_err();
    assert!(
        err.to_string().contains("signature does not match"),
        "{err}"
    );
    // and a license copied to another machine
    std::fs::write(&path, &text).unwrap();
    let app2 = App::new();
    let cfg2 = app2
        .config(&o)
        .backoffice(&o.url)
        .license_path(path.clone());
    let elsewhere = Client::with(cfg2, app2.clock.clone(), machine(8)).unwrap();
    let err = elsewhere.check("export", "1.0").unwrap_err();
    assert!(err.to_string().contains("bound to another host"), "{err}");
}

#[test]
fn errors_an_application_can_match_on_and_show() {
    let o = office();
    let app = App::new();
    // a bad producer key is not a file error
    let err = ClientConfig::new("cad", "not a key").unwrap_err();
    assert!(
        matches!(err, ClientError::InvalidProducerKey { .. }),
        "{err:?}"
    );
    let err = ClientConfig::new("cad", &o.producer_pem())
        .unwrap()
        .unlock_codes("not a key", &[])
        .unwrap_err();
    assert!(
        matches!(err, ClientError::InvalidUnlockKey { .. }),
        "{err:?}"
    );
    // no trial, no license anywhere: says where it looked
    let bare = || {
        ClientConfig::new("cad", &o.producer_pem())
            .unwrap()
            .state_dirs(
                app.state.path().join("bare"),
                app.backup.path().join("bare"),
            )
    };
    let c = Client::with(bare(), app.clock.clone(), machine(9)).unwrap();
    let err = c.check("modeler", "1.0").unwrap_err();
    let ClientError::LicenseNotFound { searched } = &err else {
        panic!("{err:?}");
    };
    assert!(searched.contains(&app.state.path().join("bare/license.lic")));
    assert!(err.to_string().contains("bare/license.lic"), "{err}");
    // an unparsable version is said so
    let err = c.check("modeler", "one").unwrap_err();
    assert!(
        matches!(&err, ClientError::InvalidVersion { version, .. } if version == "one"),
        "{err:?}"
    );
    // trial_status without a trial
    assert!(matches!(c.trial_status(), Err(ClientError::NoTrial)));
    // unlock codes in an application that takes none
    assert!(matches!(
        c.apply_unlock_code("K", "C"),
        Err(ClientError::UnlockCodesNotAccepted)
    ));
    // activation without a back office
    assert!(matches!(c.activate("K"), Err(ClientError::NoBackOffice)));
    // a configured license path that does not exist is an error, not skipped
    let missing = app.state.path().join("missing.lic");
    let c = Client::with(
        bare().trial(60, &[]).license_path(&missing),
        app.clock.clone(),
        machine(9),
    )
    .unwrap();
    let err = c.check("modeler", "1.0").unwrap_err();
    assert!(
        matches!(&err, ClientError::LicenseFileMissing { path } if *path == missing),
        "{err:?}"
    );
    // the trial's end is a date a person reads
    let c = Client::with(bare().trial(1, &[]), app.clock.clone(), machine(9)).unwrap();
    c.check("modeler", "1.0").unwrap();
    app.clock.advance(Duration::days(2));
    let err = c.check("modeler", "1.0").unwrap_err();
    let ClientError::TrialExpired { ended_on, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        err.to_string()
            .contains(&format!("{} {}", ended_on.month(), ended_on.year())),
        "{err}"
    );
}

#[test]
fn a_license_grant_carries_what_an_about_box_shows() {
    let o = office();
    let app = App::new();
    let cfg = app
        .config(&o)
        .backoffice(&o.url)
        .license_path(app.state.path().join("state/license.lic"));
    let c = Client::with(cfg, app.clock.clone(), machine(10)).unwrap();
    let lic = c.activate(&o.node_locked_key(&[])).unwrap();
    let g = c.check("render", "1.0").unwrap();
    assert_eq!(g.source, GrantSource::License);
    assert_eq!(g.licensee.as_deref(), Some(lic.claims().sub.as_str()));
    assert_eq!(g.license_id.as_deref(), Some(lic.claims().jti.as_str()));
    assert!(g.version.is_some());
    assert!(g.expires.is_some(), "the grace period's end");
    // the refusal codes are typed, with the text kept
    let other = Client::with(
        app.config(&o).backoffice(&o.url),
        app.clock.clone(),
        machine(11),
    )
    .unwrap();
    let key = o.node_locked_key(&[]);
    c.activate(&key).unwrap();
    let err = other.activate(&key).unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::Refused {
                code: tessera_client::RefusalCode::BoundToAnotherMachine,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        tessera_client::RefusalCode::from("something_new"),
        tessera_client::RefusalCode::Other("something_new".into())
    );
}
