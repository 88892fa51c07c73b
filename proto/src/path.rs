//! Relative file paths that cannot escape the folder they are joined to.
//!
//! A torrent names its files with lists of path components, and a hostile torrent can put
//! `..`, an absolute path, or a separator inside a component to make a naive client write
//! outside its download folder. We reject those when metainfo or a manifest is *parsed*, so
//! every later user (the disk cache, the web seed, the site router) holds a value that is safe
//! by construction.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most components a path may have.
pub const MAX_COMPONENTS: usize = 32;
/// The longest a single component may be, in bytes (common file systems allow 255).
pub const MAX_COMPONENT_LEN: usize = 255;

/// Why a path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path has no components.
    #[error("the path is empty")]
    Empty,
    /// A component is the empty string (also: a leading `/`, which makes a path absolute).
    #[error("the path has an empty component (absolute paths and `//` are not allowed)")]
    EmptyComponent,
    /// A component is `.` or `..`.
    #[error("the path component `{0}` is not allowed")]
    DotComponent(String),
    /// A component holds a path separator, a NUL or another control character.
    #[error("the path component {0:?} holds a separator or control character")]
    BadCharacter(String),
    /// A component is longer than [`MAX_COMPONENT_LEN`].
    #[error("a path component is {0} bytes, the limit is {MAX_COMPONENT_LEN}")]
    ComponentTooLong(usize),
    /// More than [`MAX_COMPONENTS`] components.
    #[error("the path has {0} components, the limit is {MAX_COMPONENTS}")]
    TooDeep(usize),
    /// A component is not UTF-8.
    #[error("a path component is not UTF-8")]
    NotUtf8,
}

/// A validated relative path: one or more components, none empty, `.` or `..`, none holding
/// `/`, `\` or a control character.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelativePath {
    components: Vec<String>,
}

impl RelativePath {
    /// Validates a list of components (the form torrents use).
    pub fn from_components<I, S>(components: I) -> Result<Self, PathError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let components: Vec<String> = components.into_iter().map(Into::into).collect();
        if components.is_empty() {
            return Err(PathError::Empty);
        }
        if components.len() > MAX_COMPONENTS {
            return Err(PathError::TooDeep(components.len()));
        }
        for c in &components {
            check_component(c)?;
        }
        Ok(Self { components })
    }

    /// Validates byte components as they come off the wire; each must be UTF-8.
    pub fn from_byte_components<'a, I>(components: I) -> Result<Self, PathError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut parts = Vec::new();
        for c in components {
            let s = std::str::from_utf8(c).map_err(|_| PathError::NotUtf8)?;
            parts.push(s.to_owned());
        }
        Self::from_components(parts)
    }

    /// Parses the `/`-separated form used in manifests and URLs (`icons/share.svg`).
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        Self::from_components(text.split('/'))
    }

    /// The components, in order.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The last component (the file name).
    pub fn file_name(&self) -> &str {
        self.components.last().map(String::as_str).unwrap_or("")
    }

    /// Joins the path below `root`. The result is always inside `root`.
    pub fn to_path_under(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(&self.components);
        path
    }

    /// A new path with `prefix` in front (a multi-file torrent's name is the folder).
    pub fn prefixed(&self, prefix: &str) -> Result<Self, PathError> {
        Self::from_components(std::iter::once(prefix.to_owned()).chain(self.components.clone()))
    }
}

fn check_component(c: &str) -> Result<(), PathError> {
    if c.is_empty() {
        return Err(PathError::EmptyComponent);
    }
    if c == "." || c == ".." {
        return Err(PathError::DotComponent(c.to_owned()));
    }
    if c.len() > MAX_COMPONENT_LEN {
        return Err(PathError::ComponentTooLong(c.len()));
    }
    if c.chars()
        .any(|ch| ch == '/' || ch == '\\' || ch.is_control())
    {
        return Err(PathError::BadCharacter(c.to_owned()));
    }
    Ok(())
}

impl fmt::Display for RelativePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.components.join("/"))
    }
}

impl fmt::Debug for RelativePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelativePath({self})")
    }
}

impl std::str::FromStr for RelativePath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for RelativePath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for RelativePath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        let p = RelativePath::parse("icons/share.svg").unwrap();
        assert_eq!(p.components(), ["icons", "share.svg"]);
        assert_eq!(p.file_name(), "share.svg");
        assert_eq!(p.to_string(), "icons/share.svg");
        assert_eq!(
            p.to_path_under(Path::new("/srv/store")),
            PathBuf::from("/srv/store/icons/share.svg")
        );
    }

    #[test]
    fn rejects_traversal_and_absolute_paths() {
        assert!(matches!(
            RelativePath::parse("../etc/passwd"),
            Err(PathError::DotComponent(_))
        ));
        assert!(matches!(
            RelativePath::parse("a/./b"),
            Err(PathError::DotComponent(_))
        ));
        assert_eq!(
            RelativePath::parse("/etc/passwd"),
            Err(PathError::EmptyComponent)
        );
        assert_eq!(RelativePath::parse("a//b"), Err(PathError::EmptyComponent));
        assert_eq!(RelativePath::parse(""), Err(PathError::Empty));
        assert_eq!(
            RelativePath::from_components(Vec::<String>::new()),
            Err(PathError::Empty)
        );
    }

    #[test]
    fn rejects_separators_inside_components() {
        for bad in ["a/b", "a\\b", "nul\0", "line\nbreak"] {
            assert!(
                matches!(
                    RelativePath::from_components([bad]),
                    Err(PathError::BadCharacter(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_non_utf8_and_oversize() {
        assert_eq!(
            RelativePath::from_byte_components([&b"\xff"[..]]),
            Err(PathError::NotUtf8)
        );
        assert_eq!(
            RelativePath::from_components(["x".repeat(256)]),
            Err(PathError::ComponentTooLong(256))
        );
        assert_eq!(
            RelativePath::from_components(vec!["d"; 33]),
            Err(PathError::TooDeep(33))
        );
    }
}
