//! The secrets and configs of this node's tasks as files on tmpfs.
//!
//! Managers send a task's secrets and configs with its assignment (over
//! mutual TLS); they are kept in memory here, and when the task is
//! prepared they are written to `/dev/shm/swarmlet-<node>/<task>/` (a
//! tmpfs: never on disk; directory 0700, files 0444 as Docker's) and
//! bind-mounted read-only into the container at their targets. The task's
//! directory goes when its controller ends. `/dev/shm` is chosen because it
//! is a tmpfs on every Linux host and is shared with `dockerd` even when
//! `swarmd` runs in a mount namespace of its own; the file system type is
//! checked before anything is written.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

use swarmlet_proto::dispatcher::FilePayload;
use swarmlet_proto::objects::Task;

use crate::executor::FileMount;

/// Where the per-node directories live.
const SHM: &str = "/dev/shm";

/// The plaintext of this node's secrets and configs, and their files.
pub struct SecretFiles {
    root: PathBuf,
    data: Mutex<HashMap<String, Vec<u8>>>,
}

impl SecretFiles {
    /// Files for node `node_id`.
    pub fn new(node_id: &str) -> Self {
        let short: String = node_id.chars().take(12).collect();
        SecretFiles {
            root: PathBuf::from(SHM).join(format!("swarmlet-{short}")),
            data: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps payloads received with an assignment.
    pub fn remember(&self, files: Vec<FilePayload>) {
        if let Ok(mut d) = self.data.lock() {
            for f in files {
                d.insert(f.id, f.data);
            }
        }
    }

    fn task_dir(&self, task_id: &str) -> PathBuf {
        self.root.join(task_id)
    }

    /// Writes `task`'s secrets and configs; the mounts for its container.
    /// A missing payload or a `/dev/shm` that is not a tmpfs is an error
    /// (the task is rejected with it).
    pub fn materialize(&self, task: &Task) -> Result<Vec<FileMount>, String> {
        let Some(spec) = &task.spec else {
            return Ok(Vec::new());
        };
        let refs: Vec<_> = spec.secrets.iter().chain(spec.configs.iter()).collect();
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let fs = nix::sys::statfs::statfs(SHM).map_err(|e| format!("{SHM}: {e}"))?;
        if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
            return Err(format!(
                "{SHM} is not a tmpfs: secrets are never written to disk"
            ));
        }
        // The node's root sits in a directory anyone can write to: it is
        // made 0700 by us, or refused if someone else prepared it.
        swarmlet_common::private_fs::create_owned_dir(&self.root)
            .map_err(|e| format!("secrets directory refused: {e}"))?;
        let dir = self.task_dir(&task.id);
        swarmlet_common::private_fs::create_owned_dir(&dir)
            .map_err(|e| format!("secrets directory refused: {e}"))?;
        let data = self
            .data
            .lock()
            .map_err(|_| "secret store poisoned".to_string())?;
        let mut mounts = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            let bytes = data
                .get(&r.id)
                .ok_or_else(|| format!("{} was not received from the managers", r.name))?;
            let path = dir.join(format!("{i}-{}", r.id));
            let _ = std::fs::remove_file(&path);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&path)
                .map_err(|e| format!("writing {}: {e}", r.name))?;
            // Readable by the container's user whatever it is, as Docker's
            // (the daemon's umask keeps new files private; widened here on
            // the open file, which sits in a 0700 directory).
            f.set_permissions(std::fs::Permissions::from_mode(0o444))
                .and_then(|_| f.write_all(bytes))
                .map_err(|e| format!("writing {}: {e}", r.name))?;
            mounts.push(FileMount {
                source: path,
                target: r.target.clone(),
            });
        }
        Ok(mounts)
    }

    /// Checks that every secret and config of `task` was received (for an
    /// executor that mounts nothing).
    pub fn check_received(&self, task: &Task) -> Result<(), String> {
        let Some(spec) = &task.spec else {
            return Ok(());
        };
        let data = self
            .data
            .lock()
            .map_err(|_| "secret store poisoned".to_string())?;
        match spec
            .secrets
            .iter()
            .chain(spec.configs.iter())
            .find(|r| !data.contains_key(&r.id))
        {
            Some(r) => Err(format!("{} was not received from the managers", r.name)),
            None => Ok(()),
        }
    }

    /// Removes every file of this node (`node leave`).
    pub fn forget_all(&self) {
        let _ = std::fs::remove_dir_all(&self.root);
        if let Ok(mut d) = self.data.lock() {
            d.clear();
        }
    }

    /// Removes `task_id`'s files.
    pub fn forget_task(&self, task_id: &str) {
        let dir = self.task_dir(task_id);
        if dir.exists() {
            let _ = std::fs::remove_dir_all(dir);
            // The node's directory too, once no task has files (fails,
            // harmlessly, while one has).
            let _ = std::fs::remove_dir(&self.root);
        }
    }

    /// Removes the files of tasks not in `keep`, and the payloads no task
    /// in `tasks` uses any more.
    pub fn retain(&self, tasks: &[Task]) {
        let keep: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !keep.contains(name.as_str()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let used: HashSet<&str> = tasks
            .iter()
            .filter_map(|t| t.spec.as_ref())
            .flat_map(|s| s.secrets.iter().chain(s.configs.iter()))
            .map(|r| r.id.as_str())
            .collect();
        if let Ok(mut d) = self.data.lock() {
            d.retain(|id, _| used.contains(id.as_str()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlet_proto::objects::{FileReference, ServiceSpec};

    /// Task `t1` with secret `s1` (`db`) at `/run/secrets/db`.
    fn task_with_secret() -> Task {
        Task {
            id: "t1".into(),
            spec: Some(ServiceSpec {
                secrets: vec![FileReference {
                    id: "s1".into(),
                    name: "db".into(),
                    target: "/run/secrets/db".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn files_on_tmpfs_then_gone() {
        let files = SecretFiles::new(&format!("unittest{}", std::process::id()));
        let task = task_with_secret();
        assert!(files.materialize(&task).is_err(), "payload not received");
        files.remember(vec![FilePayload {
            id: "s1".into(),
            data: b"hunter2".to_vec(),
        }]);
        // The daemon's umask keeps its own files private; secret files are
        // still readable by a container's user.
        swarmlet_common::private_fs::restrict_umask();
        let mounts = files.materialize(&task).expect("written");
        assert_eq!(mounts.len(), 1);
        use std::os::unix::fs::MetadataExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).expect("stat").mode() & 0o7777;
        assert_eq!(mode(&mounts[0].source), 0o444);
        assert_eq!(mode(&files.root), 0o700);
        assert_eq!(mounts[0].target, "/run/secrets/db");
        assert_eq!(std::fs::read(&mounts[0].source).expect("read"), b"hunter2");
        files.retain(&[]);
        assert!(!mounts[0].source.exists());
        let _ = std::fs::remove_dir_all(&files.root);
    }

    #[test]
    fn a_secrets_root_prepared_by_someone_else_is_refused() {
        let files = SecretFiles::new(&format!("unittestopen{}", std::process::id()));
        std::fs::create_dir(&files.root).expect("mkdir");
        std::fs::set_permissions(&files.root, std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        files.remember(vec![FilePayload {
            id: "s1".into(),
            data: b"hunter2".to_vec(),
        }]);
        let task = task_with_secret();
        let err = files.materialize(&task).expect_err("refused");
        assert!(err.contains("secrets directory refused"), "{err}");
        assert!(std::fs::read_dir(&files.root).expect("ls").next().is_none());
        let _ = std::fs::remove_dir_all(&files.root);
    }
}
