//! Finding the files of a release folder, and refusing what cannot be published.
//!
//! Everything that can go wrong with the folder is found here, before a byte is copied into
//! the store or a request reaches the tracker: a name that is not UTF-8 or cannot be a
//! torrent path, a symbolic link that leaves the folder (publishing it would publish whatever
//! the link points at, for instance a home directory), a loop of links, a FIFO or device (a
//! FIFO would block the read forever), a file we may not read, a folder with no data, a
//! release over the size or file-count limit. Each is its own error naming the path.
//!
//! Symbolic links that stay inside the folder are followed: they are a common way to share
//! an asset between two paths, and whatever they point at is published under the link's name.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use swarmcdn_proto::RelativePath;
use swarmcdn_proto::manifest::MAX_FILES;

use super::PublishError;

/// One file to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Its path inside the release.
    pub(crate) path: RelativePath,
    /// Where it is on disk.
    pub(crate) source: PathBuf,
    /// Its size when the folder was walked.
    pub(crate) size: u64,
}

/// Every file below `root`, sorted by path, with the checks described in the module docs.
pub(crate) fn walk(root: &Path, max_total: u64) -> Result<Vec<Entry>, PublishError> {
    let meta = fs::metadata(root).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            PublishError::FolderMissing {
                path: root.to_owned(),
            }
        } else {
            PublishError::Unreadable {
                path: root.to_owned(),
                source,
            }
        }
    })?;
    if !meta.is_dir() {
        return Err(PublishError::NotAFolder {
            path: root.to_owned(),
        });
    }
    let canonical_root = fs::canonicalize(root).map_err(|source| PublishError::Unreadable {
        path: root.to_owned(),
        source,
    })?;
    let mut walker = Walker {
        canonical_root: canonical_root.clone(),
        ancestors: HashSet::from([canonical_root]),
        found: Vec::new(),
        total: 0,
        max_total,
    };
    walker.dir(root, &mut Vec::new())?;
    let mut found = walker.found;
    if found.iter().all(|e| e.size == 0) {
        return Err(PublishError::EmptyFolder {
            path: root.to_owned(),
            only_empty_files: !found.is_empty(),
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

struct Walker {
    canonical_root: PathBuf,
    /// The canonical folders being walked, from the root down: a link to one of them is a
    /// loop.
    ancestors: HashSet<PathBuf>,
    found: Vec<Entry>,
    total: u64,
    max_total: u64,
}

impl Walker {
    fn dir(&mut self, dir: &Path, prefix: &mut Vec<String>) -> Result<(), PublishError> {
        let unreadable = |source| PublishError::Unreadable {
            path: dir.to_owned(),
            source,
        };
        let mut children = Vec::new();
        for entry in fs::read_dir(dir).map_err(unreadable)? {
            children.push(entry.map_err(unreadable)?.path());
        }
        children.sort();
        for path in children {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| PublishError::NonUtf8Name { path: path.clone() })?
                .to_owned();
            prefix.push(name);
            let relative = RelativePath::from_components(prefix.clone()).map_err(|source| {
                PublishError::BadName {
                    path: path.clone(),
                    source,
                }
            })?;
            self.entry(&path, relative, prefix)?;
            prefix.pop();
        }
        Ok(())
    }

    fn entry(
        &mut self,
        path: &Path,
        relative: RelativePath,
        prefix: &mut Vec<String>,
    ) -> Result<(), PublishError> {
        let unreadable = |source| PublishError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let link = fs::symlink_metadata(path).map_err(unreadable)?;
        let (meta, canonical) = if link.file_type().is_symlink() {
            let target = fs::canonicalize(path).map_err(|_| PublishError::DanglingSymlink {
                path: path.to_owned(),
            })?;
            if !target.starts_with(&self.canonical_root) {
                return Err(PublishError::SymlinkEscapes {
                    path: path.to_owned(),
                    target,
                });
            }
            (fs::metadata(&target).map_err(unreadable)?, Some(target))
        } else {
            (link, None)
        };

        if meta.is_dir() {
            let canonical = match canonical {
                Some(c) => c,
                None => fs::canonicalize(path).map_err(unreadable)?,
            };
            if !self.ancestors.insert(canonical.clone()) {
                return Err(PublishError::SymlinkLoop {
                    path: path.to_owned(),
                });
            }
            self.dir(path, prefix)?;
            self.ancestors.remove(&canonical);
            return Ok(());
        }
        if !meta.is_file() {
            return Err(PublishError::NotAFile {
                path: path.to_owned(),
            });
        }
        // Opening proves we may read it (the copy opens it again later).
        File::open(path).map_err(unreadable)?;
        let size = meta.len();
        if size > self.max_total {
            return Err(PublishError::FileTooLarge {
                path: path.to_owned(),
                size,
                limit: self.max_total,
            });
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.max_total {
            return Err(PublishError::ReleaseTooLarge {
                path: path.to_owned(),
                total: self.total,
                limit: self.max_total,
            });
        }
        if self.found.len() >= MAX_FILES {
            return Err(PublishError::TooManyFiles { limit: MAX_FILES });
        }
        self.found.push(Entry {
            path: relative,
            source: path.to_owned(),
            size,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn paths(entries: &[Entry]) -> Vec<String> {
        entries.iter().map(|e| e.path.to_string()).collect()
    }

    #[test]
    fn files_are_found_sorted_with_their_sizes() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("icons/small")).unwrap();
        fs::write(dir.path().join("b.js"), "bb").unwrap();
        fs::write(dir.path().join("a.html"), "a").unwrap();
        fs::write(dir.path().join("icons/small/x.svg"), "xxx").unwrap();
        fs::write(dir.path().join("empty.txt"), "").unwrap();
        let found = walk(dir.path(), 1000).unwrap();
        assert_eq!(
            paths(&found),
            ["a.html", "b.js", "empty.txt", "icons/small/x.svg"]
        );
        assert_eq!(found[3].size, 3);
    }

    #[test]
    fn links_inside_the_folder_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("shared")).unwrap();
        fs::write(dir.path().join("shared/logo.svg"), "<svg/>").unwrap();
        symlink("shared/logo.svg", dir.path().join("logo.svg")).unwrap();
        symlink("shared", dir.path().join("alias")).unwrap();
        let found = walk(dir.path(), 1000).unwrap();
        assert_eq!(
            paths(&found),
            ["alias/logo.svg", "logo.svg", "shared/logo.svg"]
        );
    }

    #[test]
    fn a_link_out_of_the_folder_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), "a").unwrap();
        symlink(outside.path().join("secret"), dir.path().join("b")).unwrap();
        let error = walk(dir.path(), 1000).unwrap_err();
        assert!(
            matches!(error, PublishError::SymlinkEscapes { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("b"), "{error}");
        // Relative links that climb out are caught too.
        let dir = tempfile::tempdir().unwrap();
        symlink("../../../etc", dir.path().join("etc")).unwrap();
        assert!(matches!(
            walk(dir.path(), 1000),
            Err(PublishError::SymlinkEscapes { .. })
        ));
    }

    #[test]
    fn link_loops_and_dangling_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/f"), "f").unwrap();
        symlink("..", dir.path().join("d/up")).unwrap();
        assert!(matches!(
            walk(dir.path(), 1000),
            Err(PublishError::SymlinkLoop { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        symlink("nowhere", dir.path().join("x")).unwrap();
        assert!(matches!(
            walk(dir.path(), 1000),
            Err(PublishError::DanglingSymlink { .. })
        ));
    }

    #[test]
    fn empty_folders_and_empty_files_only_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            walk(dir.path(), 1000),
            Err(PublishError::EmptyFolder {
                only_empty_files: false,
                ..
            })
        ));
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/e"), "").unwrap();
        assert!(matches!(
            walk(dir.path(), 1000),
            Err(PublishError::EmptyFolder {
                only_empty_files: true,
                ..
            })
        ));
    }

    #[test]
    fn size_limits_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), vec![0; 600]).unwrap();
        fs::write(dir.path().join("b"), vec![0; 600]).unwrap();
        let error = walk(dir.path(), 1000).unwrap_err();
        assert!(
            matches!(&error, PublishError::ReleaseTooLarge { path, total: 1200, .. } if path.ends_with("b")),
            "{error}"
        );
        let error = walk(dir.path(), 500).unwrap_err();
        assert!(
            matches!(&error, PublishError::FileTooLarge { path, size: 600, .. } if path.ends_with("a")),
            "{error}"
        );
    }

    #[test]
    fn a_missing_root_or_a_file_as_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            walk(&dir.path().join("none"), 10),
            Err(PublishError::FolderMissing { .. })
        ));
        fs::write(dir.path().join("f"), "x").unwrap();
        assert!(matches!(
            walk(&dir.path().join("f"), 10),
            Err(PublishError::NotAFolder { .. })
        ));
    }

    #[test]
    fn names_that_cannot_be_torrent_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a\\b"), "x").unwrap();
        assert!(matches!(
            walk(dir.path(), 10),
            Err(PublishError::BadName { .. })
        ));
    }
}
