//! The seat engine: the `tessera-engine` library, re-exported, and what the daemon adds to it: the
//! restore detector's marks outside the store, moved after every commit ([`HighWater`], the
//! engine's [`AfterCommit`]).

pub use tessera_engine::*;

/// The restore detector's high-water mark, kept outside the store: after every commit the
/// engine tells it the commit's sequence number and it writes `EPOCH.SEQUENCE` (the anchor of this
/// start and that number, which the store holds with the lease digest) over each file, in place,
/// without a sync. A copy of the store taken at any moment, restored later, holds a lower sequence
/// than these files, and the next start refuses it. See [`HighWater::parse`].
#[derive(Debug)]
pub struct HighWater {
    /// The anchor of this start.
    pub epoch: i64,
    /// The files, open for writing.
    pub files: Vec<(std::path::PathBuf, std::fs::File)>,
}

impl HighWater {
    /// The text of a mark (fixed width, so each write covers the one before).
    pub fn format(epoch: i64, seq: u64) -> String {
        format!("{epoch:020}.{seq:020}\n")
    }

    /// Reads a mark: `EPOCH.SEQUENCE`, or `EPOCH` alone (as earlier versions wrote it).
    pub fn parse(text: &str) -> Option<(i64, u64)> {
        let text = text.trim();
        match text.split_once('.') {
            Some((e, s)) => Some((e.parse().ok()?, s.parse().ok()?)),
            None => Some((text.parse().ok()?, 0)),
        }
    }
}

impl AfterCommit for HighWater {
    fn committed(&self, seq: u64) {
        use std::os::unix::fs::FileExt as _;
        let text = HighWater::format(self.epoch, seq);
        for (path, f) in &self.files {
            if let Err(e) = f.write_all_at(text.as_bytes(), 0) {
                tracing::warn!(error = %e, file = %path.display(), "could not move the storage anchor forward");
            }
        }
    }
}
