//! Which local files a script may name, for scripts sent to a server: relative paths are
//! resolved against the client's working directory, and every path must lie under one of the
//! allowed roots (`weir server --allow-path`), so a client cannot read or write arbitrary
//! files of the server's machine.

use std::path::{Component, Path, PathBuf};

use crate::error::{user, UserError};

/// A base directory for relative paths and the roots paths must stay under.
#[derive(Debug, Clone)]
pub struct FileAccess {
    /// Relative paths are joined to it (absolute).
    pub base_dir: PathBuf,
    /// Paths must lie under one of these (after `..` and symbolic links are resolved).
    pub allowed_roots: Vec<PathBuf>,
    /// ... and under none of these (a server's own job directories).
    pub denied_roots: Vec<PathBuf>,
}

impl FileAccess {
    /// `path` made absolute (against [`FileAccess::base_dir`]), with `..` and symbolic links
    /// resolved, and checked against the roots.
    ///
    /// Errors: the path leaves every allowed root or enters a denied one, climbs out (`..`)
    /// of a directory that does not exist yet, or is a symbolic link that points nowhere.
    pub fn resolve(&self, what: &str, path: &str) -> Result<PathBuf, UserError> {
        let joined = self.base_dir.join(path);
        let real = real_path(&joined).ok_or_else(|| {
            user(format!(
                "{what} '{path}' cannot be resolved: a '..' after a directory that does not \
                 exist, or a symbolic link that points nowhere"
            ))
        })?;
        let under = |roots: &[PathBuf]| {
            (roots.iter()).any(|root| real_path(root).is_some_and(|root| real.starts_with(root)))
        };
        if !under(&self.allowed_roots) {
            let roots: Vec<String> = (self.allowed_roots.iter())
                .map(|r| r.display().to_string())
                .collect();
            return Err(user(format!(
                "{what} '{}' is outside the directories this server allows",
                real.display()
            ))
            .hint(format!(
                "allowed: {} (weir server --allow-path)",
                roots.join(", ")
            )));
        }
        if under(&self.denied_roots) {
            return Err(user(format!(
                "{what} '{}' is inside the server's own job directories",
                real.display()
            )));
        }
        Ok(real)
    }
}

/// `path` with symbolic links and `..` resolved: the longest existing ancestor made
/// canonical, the rest appended (`None` if the rest climbs with `..`, or if a part is a
/// symbolic link that points nowhere: what it would create is not known).
fn real_path(path: &Path) -> Option<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if existing.canonicalize().is_err() && existing.symlink_metadata().is_ok() {
            return None;
        }
        if let Ok(real) = existing.canonicalize() {
            let mut real = real;
            for component in rest.iter().rev() {
                match component {
                    Component::Normal(name) => real.push(name),
                    Component::CurDir => {}
                    _ => return None,
                }
            }
            return Some(real);
        }
        let name = existing.components().next_back()?;
        rest.push(name);
        existing = existing.parent()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_the_base_and_stay_under_the_roots() {
        let base = std::env::temp_dir().join(format!("weir-access-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let allowed = base.join("data");
        std::fs::create_dir_all(allowed.join("in")).unwrap();
        std::fs::create_dir_all(allowed.join("jobs")).unwrap();
        let allowed = allowed.canonicalize().unwrap();
        let access = FileAccess {
            base_dir: allowed.clone(),
            allowed_roots: vec![allowed.clone()],
            denied_roots: vec![allowed.join("jobs")],
        };
        assert_eq!(
            access.resolve("path", "in/x.csv").unwrap(),
            allowed.join("in/x.csv")
        );
        assert!(access.resolve("path", "jobs/x/job.json").is_err());
        assert!(access.resolve("path", "out/new/part").is_ok());
        assert!(access.resolve("path", "in/*.csv").is_ok());
        let outside = access.resolve("path", "../secret").unwrap_err();
        assert!(outside.to_string().contains("outside"), "{outside}");
        assert!(access.resolve("path", "/etc/passwd").is_err());
        assert!(access.resolve("path", "missing/../../x").is_err());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", allowed.join("link")).unwrap();
            assert!(access.resolve("path", "link/passwd").is_err());
            std::os::unix::fs::symlink("/nowhere/x", allowed.join("dangling")).unwrap();
            assert!(access.resolve("path", "dangling").is_err());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
