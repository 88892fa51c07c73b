//! The raw shapes of the JSON and bencode forms, before validation.
//!
//! Both forms are first read into plain values (strings, integers, byte strings), then every
//! field is checked by the same constructors the publisher uses, so a document from the network
//! and a manifest built in memory pass the same rules and fail with the same typed errors.

use std::collections::BTreeMap;

use data_encoding::{HEXLOWER, HEXLOWER_PERMISSIVE};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serializer};

use super::{MAX_FILES, ManifestError};
use crate::bencode::Value;

/// Serializes a byte array as lowercase hex.
pub(crate) fn serialize_hex<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&HEXLOWER.encode(bytes))
}

/// Decodes exactly `2 * N` hex digits (either case).
pub(crate) fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let bytes = HEXLOWER_PERMISSIVE.decode(text.as_bytes()).ok()?;
    <[u8; N]>::try_from(bytes).ok()
}

/// A file entry as JSON holds it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileJson {
    pub(crate) path: String,
    pub(crate) size: u64,
    pub(crate) content_type: String,
    pub(crate) sha256: String,
    pub(crate) sri: String,
}

/// A manifest as JSON holds it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestJson {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) info_hash: String,
    pub(crate) created: u64,
    pub(crate) files: FilesJson,
}

/// A signed manifest as JSON holds it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignedJson {
    pub(crate) manifest: ManifestJson,
    pub(crate) public_key: String,
    pub(crate) signature: String,
}

/// The `files` array, holding at most [`MAX_FILES`] entries however long the array is: later
/// entries are parsed (to find the array's end) and dropped, and `count` says how many there
/// were, so the caller can report [`ManifestError::TooManyFiles`] without having stored them.
pub(crate) struct FilesJson {
    pub(crate) entries: Vec<FileJson>,
    pub(crate) count: usize,
}

impl<'de> Deserialize<'de> for FilesJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FilesVisitor;

        impl<'de> Visitor<'de> for FilesVisitor {
            type Value = FilesJson;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of file entries")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FilesJson, A::Error> {
                let mut entries = Vec::new();
                let mut count = 0usize;
                while let Some(entry) = seq.next_element::<FileJson>()? {
                    count += 1;
                    if entries.len() < MAX_FILES {
                        entries.push(entry);
                    }
                }
                Ok(FilesJson { entries, count })
            }
        }

        deserializer.deserialize_seq(FilesVisitor)
    }
}

/// A bencode dictionary whose keys have been checked against a fixed set, all required.
pub(crate) struct Dict<'a> {
    entries: &'a BTreeMap<Vec<u8>, Value>,
    what: &'static str,
}

impl<'a> Dict<'a> {
    /// Checks that `value` is a dictionary with exactly the keys `keys`.
    pub(crate) fn new(
        value: &'a Value,
        what: &'static str,
        keys: &[&'static str],
    ) -> Result<Self, ManifestError> {
        let entries = value
            .as_dict()
            .ok_or_else(|| malformed(what, "is not a dictionary"))?;
        if let Some(unknown) = entries
            .keys()
            .find(|k| !keys.iter().any(|key| key.as_bytes() == k.as_slice()))
        {
            // Show a bounded, printable prefix of a hostile key.
            let shown = String::from_utf8_lossy(&unknown[..unknown.len().min(32)]).into_owned();
            return Err(malformed(what, &format!("has an unknown key {shown:?}")));
        }
        if let Some(missing) = keys.iter().find(|k| !entries.contains_key(k.as_bytes())) {
            return Err(malformed(what, &format!("has no key `{missing}`")));
        }
        Ok(Self { entries, what })
    }

    /// The value under `key`.
    pub(crate) fn value(&self, key: &'static str) -> &'a Value {
        // `new` checked that every key is present; an absent key reads as an empty list, which
        // no getter accepts, rather than panicking.
        const EMPTY: &Value = &Value::List(Vec::new());
        self.entries.get(key.as_bytes()).unwrap_or(EMPTY)
    }

    /// The byte string under `key`.
    pub(crate) fn bytes(&self, key: &'static str) -> Result<&'a [u8], ManifestError> {
        self.value(key)
            .as_bytes()
            .ok_or_else(|| malformed(self.what, &format!("`{key}` is not a byte string")))
    }

    /// The UTF-8 string under `key`.
    pub(crate) fn str(&self, key: &'static str) -> Result<&'a str, ManifestError> {
        std::str::from_utf8(self.bytes(key)?)
            .map_err(|_| malformed(self.what, &format!("`{key}` is not UTF-8")))
    }

    /// The non-negative integer under `key`.
    pub(crate) fn uint(&self, key: &'static str) -> Result<u64, ManifestError> {
        self.value(key)
            .as_int()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| malformed(self.what, &format!("`{key}` is not a non-negative integer")))
    }

    /// The list under `key`.
    pub(crate) fn list(&self, key: &'static str) -> Result<&'a [Value], ManifestError> {
        self.value(key)
            .as_list()
            .ok_or_else(|| malformed(self.what, &format!("`{key}` is not a list")))
    }

    /// The fixed-length byte string under `key`.
    pub(crate) fn array<const N: usize>(
        &self,
        key: &'static str,
    ) -> Result<[u8; N], ManifestError> {
        <[u8; N]>::try_from(self.bytes(key)?)
            .map_err(|_| malformed(self.what, &format!("`{key}` is not {N} bytes long")))
    }
}

fn malformed(what: &str, problem: &str) -> ManifestError {
    ManifestError::Malformed(format!("the {what} {problem}"))
}
