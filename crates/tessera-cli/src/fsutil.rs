//! Careful file writing: atomic replace, private modes, clear errors.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Reads a text file, saying which file could not be read.
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// Writes `content` to `path` atomically (see [`tessera_host::write_atomic`]), with `mode` on Unix.
/// A missing directory is an error here: the user named the path.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: the directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    tessera_host::write_atomic(path, content, mode)
        .with_context(|| format!("cannot write {}", path.display()))
}
