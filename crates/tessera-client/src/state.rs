//! Local licensing state: trial start, the latest time seen, accepted unlock codes, the last
//! validated license. Tamper-evident and kept in two places.
//!
//! The state is JSON with an HMAC-SHA256 over it, keyed by the product, this machine's PC
//! identifier and the application's `state_secret`: a state edited by hand, or copied from another
//! machine, does not verify. It is written to the state directory and to a backup directory
//! outside the install directory; if one copy is deleted it is restored from the other, and if they
//! disagree the earliest trial start and the latest time seen win, so deleting one copy never
//! restarts a trial or hides a clock rollback.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tessera_core::time::OffsetDateTime;

use crate::ClientError;

/// What is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When the trial started on this machine (unix seconds).
    #[serde(default)]
    pub trial_started: Option<i64>,
    /// The latest time the application saw (unix seconds), for clock-rollback detection.
    #[serde(default)]
    pub last_seen: Option<i64>,
    /// Accepted unlock codes: (activation key, code).
    #[serde(default)]
    pub unlocks: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    state: State,
    mac: String,
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Reads and writes the sealed state in its two places.
#[derive(Debug, Clone)]
pub struct StateStore {
    primary: PathBuf,
    backup: PathBuf,
    key: Vec<u8>,
}

impl StateStore {
    /// A store for `product` on the machine with PC identifier `pc_id`.
    pub fn new(
        primary_dir: &Path,
        backup_dir: &Path,
        product: &str,
        pc_id: &str,
        secret: &[u8],
    ) -> Self {
        let mut key = Vec::new();
        key.extend_from_slice(b"tessera-client-state-v1\0");
        key.extend_from_slice(product.as_bytes());
        key.push(0);
        key.extend_from_slice(pc_id.as_bytes());
        key.push(0);
        key.extend_from_slice(secret);
        let name = format!("{}.state", hex(&Sha256::digest(product.as_bytes())[..8]));
        StateStore {
            primary: primary_dir.join(&name),
            backup: backup_dir.join(name),
            key: Sha256::digest(&key).to_vec(),
        }
    }

    fn mac(&self, state: &State) -> Result<String, ClientError> {
        let body = serde_json::to_vec(state).map_err(|e| ClientError::Io {
            path: self.primary.clone(),
            detail: e.to_string(),
        })?;
        Ok(hex(&hmac(&self.key, &body)))
    }

    fn read_one(&self, path: &Path) -> Result<Option<State>, ClientError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ClientError::Io {
                    path: path.into(),
                    detail: e.to_string(),
                })
            }
        };
        let sealed: Sealed = serde_json::from_str(&text)
            .map_err(|_| ClientError::StateTampered { path: path.into() })?;
        if self.mac(&sealed.state)? != sealed.mac {
            return Err(ClientError::StateTampered { path: path.into() });
        }
        Ok(Some(sealed.state))
    }

    /// The state: both copies merged (earliest trial start, latest time seen, every unlock code).
    /// A copy that fails its check is an error, never silently replaced.
    pub fn load(&self) -> Result<State, ClientError> {
        let a = self.read_one(&self.primary)?;
        let b = self.read_one(&self.backup)?;
        Ok(match (a, b) {
            (None, None) => State::default(),
            (Some(s), None) | (None, Some(s)) => {
                // one copy was deleted: restore it from the other
                self.save(&s)?;
                s
            }
            (Some(a), Some(b)) => {
                let mut m = a.clone();
                m.trial_started = match (a.trial_started, b.trial_started) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
                m.last_seen = a.last_seen.max(b.last_seen);
                for u in b.unlocks {
                    if !m.unlocks.contains(&u) {
                        m.unlocks.push(u);
                    }
                }
                m
            }
        })
    }

    /// Writes both copies (each atomically).
    pub fn save(&self, state: &State) -> Result<(), ClientError> {
        let sealed = Sealed {
            state: state.clone(),
            mac: self.mac(state)?,
        };
        let text = serde_json::to_string_pretty(&sealed).map_err(|e| ClientError::Io {
            path: self.primary.clone(),
            detail: e.to_string(),
        })?;
        for path in [&self.primary, &self.backup] {
            write_atomic(path, text.as_bytes())?;
        }
        Ok(())
    }

    /// The two files.
    pub fn paths(&self) -> [&Path; 2] {
        [&self.primary, &self.backup]
    }
}

/// Writes a file atomically, creating its directory.
pub(crate) fn write_atomic(path: &Path, content: &[u8]) -> Result<(), ClientError> {
    tessera_host::write_atomic(path, content, 0o600).map_err(|e| ClientError::Io {
        path: path.into(),
        detail: e.to_string(),
    })
}

/// Unix seconds of a time.
pub(crate) fn secs(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, pc: &str) -> StateStore {
        StateStore::new(&dir.join("a"), &dir.join("b"), "cad", pc, b"app-secret")
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn round_trip_restore_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "PC1");
        let st = State {
            trial_started: Some(100),
            last_seen: Some(200),
            unlocks: vec![],
        };
        s.save(&st).unwrap();
        assert_eq!(s.load().unwrap(), st);
        // one copy deleted: the other still holds the trial start, and restores it
        fs::remove_file(s.paths()[0]).unwrap();
        assert_eq!(s.load().unwrap().trial_started, Some(100));
        assert!(s.paths()[0].exists());
        // edited by hand: refused
        let text = fs::read_to_string(s.paths()[1])
            .unwrap()
            .replace("100", "900");
        fs::write(s.paths()[1], text).unwrap();
        assert!(matches!(s.load(), Err(ClientError::StateTampered { .. })));
        // copied to another machine: refused
        let dir2 = tempfile::tempdir().unwrap();
        let s1 = store(dir2.path(), "PC1");
        s1.save(&st).unwrap();
        assert!(matches!(
            store(dir2.path(), "PC2").load(),
            Err(ClientError::StateTampered { .. })
        ));
    }

    #[test]
    fn copies_merge_protectively() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), "PC1");
        s.save(&State {
            trial_started: Some(100),
            last_seen: Some(500),
            unlocks: vec![],
        })
        .unwrap();
        let older = fs::read(s.paths()[1]).unwrap();
        s.save(&State {
            trial_started: Some(300),
            last_seen: Some(400),
            unlocks: vec![],
        })
        .unwrap();
        fs::write(s.paths()[1], older).unwrap();
        let m = s.load().unwrap();
        assert_eq!((m.trial_started, m.last_seen), (Some(100), Some(500)));
    }
}
