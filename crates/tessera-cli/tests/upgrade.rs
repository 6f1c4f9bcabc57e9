//! An upgrade keeps the data: data directories written by an earlier release (the fixture
//! `tests/fixtures/schema-8/`, made by the tessera binary of commit 4f8611d, whose stores are at
//! schema migration 8; `tests/fixtures/make-schema-8.sh` made it) are copied to a temporary
//! directory and opened by the current code, which migrates them. The back office still has its
//! product, customer, activation key, license and tokens; the license server still has its host
//! id, its activated license bundle, both borrowed leases, and its admin token (moved from the
//! old setting to the auth tables, and still accepted).

mod support;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use tessera_store::{AuthStore as _, BackOfficeStore as _, LicenseStore as _};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-8")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The fixture copied into a fresh temporary directory (the fixture itself is never opened: the
/// migration would change it), with private permissions as the services want them.
fn copy_of_fixture() -> (tempfile::TempDir, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &fixture().join("backoffice"),
        &dir.path().join("backoffice"),
    );
    copy_dir(&fixture().join("server"), &dir.path().join("server"));
    let expected: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixture().join("expected.json")).unwrap())
            .unwrap();
    // the outside copy of the storage mark goes into this test's own directory
    let toml = dir.path().join("server/server.toml");
    let mut text = fs::read_to_string(&toml).unwrap();
    text.push_str(&format!(
        "anchor_dir = \"{}\"\n",
        dir.path().join("anchor").display()
    ));
    fs::write(&toml, text).unwrap();
    (dir, expected)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn str_of<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("expected.json has no {key}"))
}

#[test]
fn the_fixture_is_at_the_older_schema() {
    // what makes this an upgrade test: the fixture's stores lack the newest migrations (read in
    // a copy: SQLite makes files beside a database it opens)
    let (dir, _) = copy_of_fixture();
    for svc in ["backoffice", "server"] {
        let db = dir.path().join(svc).join("tessera.db");
        let o = std::process::Command::new("sqlite3")
            .arg("-readonly")
            .arg(&db)
            .arg("SELECT max(version) FROM _sqlx_migrations")
            .output();
        match o {
            Ok(o) if o.status.success() => {
                let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
                assert_eq!(v, "8", "{}: the fixture's schema", db.display());
            }
            // without the sqlite3 tool, the byte count of the file says it is not empty at least
            _ => assert!(fs::metadata(&db).unwrap().len() > 4096),
        }
    }
}

#[test]
fn back_office_data_of_the_previous_schema_is_all_there() {
    let (dir, expected) = copy_of_fixture();
    let data = dir.path().join("backoffice");
    let rt = runtime();
    rt.block_on(async {
        let url = tessera_store::sqlite_url_for_data_dir(&data);
        let store = tessera_store::open(&url).await.unwrap();
        let products = store.list_products().await.unwrap();
        assert!(
            products.iter().any(|p| p.id == "cad"),
            "product cad: {products:?}"
        );
        let customers = store.list_customers().await.unwrap();
        let customer = str_of(&expected, "customer");
        assert!(customers.iter().any(|c| c.id == customer), "{customers:?}");
        let licenses = store
            .list_licenses(tessera_store::Page::first(100))
            .await
            .unwrap();
        assert!(
            !licenses.is_empty(),
            "the license bundle issued to the server"
        );
        let admin = store.get_user("admin").await.unwrap();
        assert!(admin.is_some(), "the admin user");
        let token = str_of(&expected, "backoffice_admin_token");
        let hash = tessera_server::daemon::admin_token_hash(token);
        assert!(
            store.find_token(&hash).await.unwrap().is_some(),
            "the back office's API token"
        );
    });
    // the current binary serves it: its CLI lists what the old one made
    let listed = support::tessera(
        &[
            "backoffice",
            "product",
            "list",
            "--data",
            data.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    );
    assert!(listed.contains("\"cad\""), "{listed}");
    let keys = support::tessera(
        &[
            "backoffice",
            "key",
            "list",
            "--data",
            data.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    );
    let keys: serde_json::Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(
        keys.as_array().map(Vec::len),
        Some(1),
        "the one activation key: {keys}"
    );
}

#[test]
fn license_server_data_of_the_previous_schema_is_all_there() {
    let (dir, expected) = copy_of_fixture();
    let data = dir.path().join("server");
    let rt = runtime();
    rt.block_on(async {
        // the fixture was made on another machine: opened as `tessera server rebind` does, which
        // checks everything else (the host id, the storage marks, the bundle's signature, the
        // leases' digest)
        let server = tessera_server::open_for_rebind(&data, Arc::new(tessera_host::SystemClock))
            .await
            .unwrap_or_else(|e| panic!("the current server does not open the fixture: {e}"));
        assert_eq!(
            server.hostid.to_string(),
            str_of(&expected, "server_hostid")
        );
        // moved from the old `server.license` setting to the typed server state (schema 14)
        let state = tessera_store::ServerStateStore::server_state(
            &server.store,
            &tessera_store::InstanceId::on_site(),
        )
        .await
        .unwrap();
        assert!(
            state.license.is_some_and(|l| !l.is_empty()),
            "the license bundle"
        );
        assert_eq!(
            state.hostid.as_deref(),
            Some(str_of(&expected, "server_hostid")),
            "the host id the storage belongs to"
        );
        assert!(
            state.machine_ids.is_some_and(|ids| !ids.is_empty()),
            "the machines it is bound to"
        );
        let cert = server.certificate.read().await;
        assert!(
            cert.is_some(),
            "the server certificate from the back office"
        );
        drop(cert);
        let leases = expected["leases"].as_u64().unwrap() as usize;
        assert_eq!(leases, 2, "the fixture holds two borrowed seats");
        assert_eq!(server.engine.lease_count(), leases, "the leases");
        let usage = server.engine.usage().await;
        let mut names: Vec<String> = usage.iter().map(|(f, _, _)| f.name.clone()).collect();
        names.sort();
        names.dedup();
        let want: Vec<String> = expected["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, want, "the features served");
        // the admin token made by the old release works: moved to the auth tables
        let token = str_of(&expected, "server_admin_token");
        let hash = tessera_server::daemon::admin_token_hash(token);
        assert!(
            server.store.find_token(&hash).await.unwrap().is_some(),
            "the old admin token is in the auth tables"
        );
    });
}
