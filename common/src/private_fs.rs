//! Files only the daemon may read: the state dir and everything under it.
//!
//! The state dir holds the node's key, the Raft log and the rows of the
//! store, so it is 0700 and every file in it 0600 **from creation**: a file
//! created 0644 and tightened afterwards can be opened by anyone in between,
//! and the open descriptor survives the `chmod`. Code of ours creates files
//! through [`create_dir_all`] and [`write_atomic`] with explicit modes;
//! files that libraries create on their own (sled's `db`, `conf`, blobs and
//! snapshots, written at any time) are covered by [`restrict_umask`], which
//! the daemon sets once at start-up for the whole process. A file that must
//! be readable by others (a secret mounted into a container, 0444) widens
//! its own mode on its open descriptor.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of directories only the daemon reads.
pub const DIR_MODE: u32 = 0o700;
/// Mode of files only the daemon reads.
pub const FILE_MODE: u32 = 0o600;

/// Failures creating or writing a private file.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFsError {
    /// An I/O call failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// An existing directory is not what a private directory must be.
    #[error("{path}: {reason}")]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrivateFsError {
    let path = path.to_path_buf();
    move |source| PrivateFsError::Io { path, source }
}

/// Makes every file and directory this process creates from now on
/// private to its owner (umask 077). Process-wide, so called once, early.
pub fn restrict_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_dir_all(dir: &Path) -> Result<(), PrivateFsError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io(dir))
}

/// Writes `body` to `path` atomically (a 0600 temporary file, synced, then
/// renamed over it), creating the directory 0700 if needed.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<(), PrivateFsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    // A temporary file left by a crash is ours; start it afresh so that its
    // mode is the one given here.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(body).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Creates `dir` (its parent must exist) as a directory of this user with
/// mode 0700, or accepts it if it already is exactly that: a directory (not
/// a link), owned by this process's user, with no access for anyone else.
/// Anything else is refused, so that a directory someone prepared in a
/// shared place (`/dev/shm`) can never receive what is meant for us.
pub fn create_owned_dir(dir: &Path) -> Result<(), PrivateFsError> {
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(dir)(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    let unsafe_dir = |reason: String| PrivateFsError::Unsafe {
        path: dir.to_path_buf(),
        reason,
    };
    if !meta.file_type().is_dir() {
        return Err(unsafe_dir("exists and is not a directory".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(unsafe_dir(format!(
            "exists and is owned by uid {}, not {me}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(unsafe_dir(format!(
            "exists with mode {:o}; it must be 700",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn files_and_dirs_are_private_whatever_the_umask() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("a/b/node.json");
        write_atomic(&file, b"{}").expect("write");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&root.path().join("a/b")), 0o700);
        write_atomic(&file, b"{\"x\":1}").expect("rewrite");
        assert_eq!(std::fs::read(&file).expect("read"), b"{\"x\":1}");
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn an_owned_dir_is_created_or_accepted_only_if_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("secrets");
        create_owned_dir(&dir).expect("create");
        assert_eq!(mode(&dir), 0o700);
        create_owned_dir(&dir).expect("accept our own");

        let open = root.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = create_owned_dir(&open).expect_err("world-writable refused");
        assert!(err.to_string().contains("mode 777"), "{err}");

        let link = root.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        let err = create_owned_dir(&link).expect_err("link refused");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
