//! Trusted storage: the store belongs to this server and to this machine, and is not older than
//! what the server last used (the anchor, kept beside and outside the store); one process per data
//! directory and per database; accepting leases changed outside the server; binding the storage to
//! a new machine after a rebind.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tessera_core::HostId;
use tessera_store::{AnyStore, MetaStore, ServerStateStore};

use crate::config::{database_url, load_config, Config};
use crate::engine::InstanceId;
use crate::error::{file_err, write, ServerError};
use crate::server::Server;

/// The private state directory that holds the outside copy of the anchor: `anchor_dir`, else
/// `$XDG_STATE_HOME/tessera`, else `$HOME/.local/state/tessera`. Never a shared directory such as
/// /tmp, where another local user could plant or delete the copy.
fn anchor_dir(c: &Config) -> Result<PathBuf, ServerError> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    c.anchor_dir
        .clone()
        .or_else(|| {
            std::env::var_os("XDG_STATE_HOME")
                .and_then(absolute)
                .map(|p| p.join("tessera"))
        })
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|p| p.join(".local/state/tessera"))
        })
        .ok_or_else(|| {
            ServerError::Config(
                "no private directory for the outside copy of the storage anchor: neither HOME nor XDG_STATE_HOME is set. Set `anchor_dir = \"/var/lib/tessera-anchor\"` (a directory only the server's user can write) in server.toml, or run the server with HOME set".into(),
            )
        })
}

/// Makes `dir` (and its parents) if missing, and makes sure that only this user can use it: a
/// directory (not a link) owned by this user, mode 0700 (tightened if it is ours and looser).
pub fn private_dir(dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(|e| file_err(parent, e))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(file_err(dir, e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| file_err(dir, e))?;
    let refuse = |why: &str| {
        Err(file_err(
            dir,
            format!("{why}: the storage anchor must live in a directory only the server's user can change. Remove it, or set `anchor_dir` in server.toml to another directory"),
        ))
    };
    if !meta.is_dir() {
        return refuse("not a directory (or a symbolic link)");
    }
    // the process's own user: the owner of /proc/self
    if let Ok(me) = fs::metadata("/proc/self").map(|m| m.uid()) {
        if meta.uid() != me {
            return refuse(&format!(
                "owned by user {} (this server runs as user {me})",
                meta.uid()
            ));
        }
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| file_err(dir, e))?;
    }
    Ok(())
}

fn anchor_files(data: &Path, c: &Config, host: &HostId) -> Result<Vec<PathBuf>, ServerError> {
    let outside = anchor_dir(c)?;
    private_dir(&outside)?;
    let tag = hex::encode(&Sha256::digest(format!("{}|{host}", data.display()).as_bytes())[..8]);
    Ok(vec![
        data.join("anchor"),
        outside.join(format!("anchor-{tag}")),
    ])
}

/// The host ids this machine proves (machine id, network cards, VM UUID): what the storage is
/// bound to. User names and containers never count (a container id changes whenever the
/// container is made again, on the same machine).
fn proven_ids() -> Vec<String> {
    tessera_host::this_machine()
        .identify()
        .machine_ids()
        .filter(|id| id.kind() != tessera_core::HostIdKind::Container)
        .map(ToString::to_string)
        .collect()
}

/// Takes the database's lock for this process: alone (no other process may serve the database),
/// or as a member of a cluster (only members may).
pub(crate) async fn claim_database(
    store: &AnyStore,
    config: &Config,
) -> Result<tessera_store::ExclusiveGuard, ServerError> {
    let guard = if config.cluster {
        store
            .shared("tessera-license-server")
            .await?
            .ok_or_else(|| ServerError::DatabaseInUse { cluster: true })?
    } else {
        store
            .exclusive("tessera-license-server")
            .await?
            .ok_or_else(|| ServerError::DatabaseInUse { cluster: false })?
    };
    Ok(guard)
}

/// Checks that the storage belongs to this server (`host`) and to a machine it is bound to (binding
/// it to this one at the first start); a rebind skips the machine check.
pub(crate) async fn check_binding(
    store: &AnyStore,
    data: &Path,
    host: &HostId,
    rebind: bool,
) -> Result<(), ServerError> {
    let site = InstanceId::on_site();
    let state = store.server_state(&site).await?;
    // trusted storage: bound to this host id …
    match state.hostid {
        Some(stored) if stored != host.to_string() => {
            return Err(ServerError::CopiedStorage {
                stored,
                current: host.to_string(),
            })
        }
        Some(_) => {}
        None => store.set_server_hostid(&site, &host.to_string()).await?,
    }
    // … to a machine that proves one of the host ids recorded (the `hostid` in server.toml is
    // only a name: a copy of the data directory carries it along) …
    let proven = proven_ids();
    match state.machine_ids {
        _ if rebind => {}
        None if proven.is_empty() => {
            return Err(ServerError::Config(
                "this machine shows no host id to bind the license server's storage to (no machine id, no network card, no VM UUID): give it a stable machine id (/etc/machine-id)".into(),
            ))
        }
        None => store.set_machine_ids(&site, &proven).await?,
        Some(ids) => {
            if !ids.iter().any(|id| proven.contains(id)) {
                return Err(ServerError::OtherMachine {
                    bound: ids.join(", "),
                    current: proven.join(", "),
                    data: data.display().to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Checks that the storage is not older than what this server last used, then moves the anchor
/// on: returns the new anchor and the mark files (kept open) the engine keeps up to date.
pub(crate) async fn move_anchor(
    store: &AnyStore,
    data: &Path,
    config: &Config,
    host: &HostId,
) -> Result<(i64, Vec<(PathBuf, fs::File)>), ServerError> {
    // … and not older than what this server last used: the anchor (moved at each start) and the
    // sequence number of the last commit, against the marks kept beside and outside the store
    let files = anchor_files(data, config, host)?;
    let stored = store.anchor().await?;
    let stored_seq = tessera_store::LeaseStore::engine_state(store, &InstanceId::on_site())
        .await?
        .map_or(0, |s| s.commit_seq);
    for f in &files {
        if let Some((seen, seen_seq)) = fs::read_to_string(f)
            .ok()
            .and_then(|t| crate::engine::HighWater::parse(&t))
        {
            if (stored, stored_seq) < (seen, seen_seq) {
                return Err(ServerError::RestoredOlderCopy {
                    stored: format!("{stored}.{stored_seq}"),
                    seen: format!("{seen}.{seen_seq}"),
                    marker: f.display().to_string(),
                });
            }
        }
    }
    let next = store.bump_anchor().await?;
    let mut marks = Vec::new();
    for f in &files {
        write(
            f,
            crate::engine::HighWater::format(next, stored_seq).as_bytes(),
            0o600,
        )?;
        let file = fs::OpenOptions::new()
            .write(true)
            .open(f)
            .map_err(|e| file_err(f, e))?;
        marks.push((f.clone(), file));
    }
    Ok((next, marks))
}

/// Takes the data directory's lock file: one server process per data directory.
pub(crate) fn lock_data_dir(data: &Path) -> Result<fs::File, ServerError> {
    let lock_path = data.join("server.lock");
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| file_err(&lock_path, e))?;
    if lock_file.try_lock().is_err() {
        return Err(ServerError::Running {
            data: data.display().to_string(),
        });
    }
    Ok(lock_file)
}

/// Accepts the leases now in the store as they are (after they were changed by hand, or restored
/// from a backup): the next start serves them instead of refusing. Returns how many there are.
pub async fn accept_storage(data: &Path) -> Result<usize, ServerError> {
    if !data.join("keys/server.key").exists() {
        return Err(ServerError::NotInitialised(data.display().to_string()));
    }
    let data = data.canonicalize().map_err(|e| file_err(data, e))?;
    let _lock = lock_data_dir(&data)?;
    let config = load_config(&data)?;
    let store = tessera_store::open(&database_url(&data, &config)).await?;
    let site = InstanceId::on_site();
    let n = tessera_store::LeaseStore::load_leases(&store, &site)
        .await?
        .len();
    // no digest to check at the next start; the commit sequence (the restore detector) and the
    // lease counter stay
    let mut state = tessera_store::LeaseStore::engine_state(&store, &site)
        .await?
        .unwrap_or_default();
    state.lease_digest.clear();
    tessera_store::LeaseStore::put_engine_state(&store, &site, &state).await?;
    Ok(n)
}

impl Server {
    /// Binds the storage to this machine (after `tessera server rebind` re-validated it with the
    /// back office): in a cluster this machine is added to those bound, otherwise it replaces them.
    /// Returns the host ids now bound.
    pub async fn bind_to_this_machine(&self) -> Result<Vec<String>, ServerError> {
        let mut ids = proven_ids();
        if ids.is_empty() {
            return Err(ServerError::Config(
                "this machine shows no host id to bind the storage to (no machine id, no network card, no VM UUID)".into(),
            ));
        }
        let site = InstanceId::on_site();
        if self.config.cluster {
            if let Some(old) = self.store.server_state(&site).await?.machine_ids {
                for id in old {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        self.store.set_machine_ids(&site, &ids).await?;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        toml::from_str(extra).unwrap()
    }

    #[test]
    fn the_anchor_directory_is_private_or_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        // made 0700 whatever the umask
        let a = dir.path().join("a/b/anchors");
        private_dir(&a).unwrap();
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // an existing directory of ours that others could write to is tightened
        let loose = dir.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&loose).unwrap();
        assert_eq!(
            fs::metadata(&loose).unwrap().permissions().mode() & 0o777,
            0o700
        );
        // a link (planted by someone else, say) or a file is refused
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&loose, &link).unwrap();
        let err = private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(private_dir(&file).is_err());
        // no HOME, no XDG_STATE_HOME, no anchor_dir: no fallback to a shared directory
        let c = config("anchor_dir = \"/srv/anchor\"");
        assert_eq!(anchor_dir(&c).unwrap(), PathBuf::from("/srv/anchor"));
    }
}
