//! The frame every tracker response body shares, read in one place so announce and scrape
//! cannot drift apart: a size bound checked before decoding, bencode with a depth limit, a
//! top-level dictionary, and `failure reason` taking precedence over everything else.
//!
//! Each response keeps its own public error enum (its messages name the response), so the
//! shared reader reports a small crate-private [`FrameError`] that both convert from.

use bip_bencode::{BDictAccess, BRefAccess, BencodeRef};

use crate::bencode::{self, BencodeError, Limits};

/// A decoded dictionary borrowing the body (`'a`) through the decoded tree (`'b`).
pub(crate) type RefDict<'a, 'b> = dyn BDictAccess<&'a [u8], BencodeRef<'a>> + 'b;
/// A decoded list borrowing the body (`'a`) through the decoded tree (`'b`).
pub(crate) type RefList<'a, 'b> = dyn bip_bencode::BListAccess<BencodeRef<'a>> + 'b;

/// Deepest legal shape of either response: response dict > peers list or files dict >
/// peer or entry dict > value.
const MAX_DEPTH: usize = 4;

/// What can be wrong with the frame, or with a plain field read through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The body is longer than the response's limit.
    TooLarge { len: usize, limit: usize },
    /// The body is not bencode.
    Bencode(BencodeError),
    /// The body is bencode but not a dictionary.
    NotADictionary,
    /// A key holds the wrong type, or a number out of its range.
    InvalidField(&'static str),
}

/// `impl From<FrameError>` for a response's public error enum, which must have the
/// variants `TooLarge { len, limit }`, `Bencode`, `NotADictionary` and `InvalidField`.
macro_rules! from_frame_error {
    ($error:ty) => {
        impl From<$crate::tracker::response::FrameError> for $error {
            fn from(e: $crate::tracker::response::FrameError) -> Self {
                use $crate::tracker::response::FrameError as F;
                match e {
                    F::TooLarge { len, limit } => Self::TooLarge { len, limit },
                    F::Bencode(e) => Self::Bencode(e),
                    F::NotADictionary => Self::NotADictionary,
                    F::InvalidField(key) => Self::InvalidField(key),
                }
            }
        }
    };
}
pub(crate) use from_frame_error;

/// A response body once its frame is read: the tracker's refusal, or what `read` made of
/// the top-level dictionary.
pub(crate) enum Framed<T> {
    /// The body carried `failure reason` (lossily decoded as UTF-8).
    Failure(String),
    /// The body's dictionary, as read.
    Body(T),
}

/// Reads the frame of `body` (at most `max_len` bytes) and hands its top-level dictionary
/// to `read`, unless it carries a `failure reason`.
pub(crate) fn read_response<'a, T, E: From<FrameError>>(
    body: &'a [u8],
    max_len: usize,
    read: impl FnOnce(&RefDict<'a, '_>) -> Result<T, E>,
) -> Result<Framed<T>, E> {
    if body.len() > max_len {
        return Err(FrameError::TooLarge {
            len: body.len(),
            limit: max_len,
        }
        .into());
    }
    let limits = Limits {
        max_input: max_len,
        max_depth: MAX_DEPTH,
        ..Limits::DEFAULT
    };
    let root = bencode::decode_ref(body, &limits).map_err(FrameError::Bencode)?;
    let dict = root.dict().ok_or(FrameError::NotADictionary)?;
    if let Some(reason) = text(dict, "failure reason")? {
        return Ok(Framed::Failure(reason));
    }
    read(dict).map(Framed::Body)
}

/// The value of `key` in `dict` as a `u32`, if present.
pub(crate) fn get_u32(
    dict: &RefDict<'_, '_>,
    key: &'static str,
) -> Result<Option<u32>, FrameError> {
    match dict.lookup(key.as_bytes()) {
        None => Ok(None),
        Some(v) => v
            .int()
            .and_then(|i| u32::try_from(i).ok())
            .map(Some)
            .ok_or(FrameError::InvalidField(key)),
    }
}

/// The value of `key` in `dict` as text (lossily decoded as UTF-8), if present.
pub(crate) fn text(
    dict: &RefDict<'_, '_>,
    key: &'static str,
) -> Result<Option<String>, FrameError> {
    match dict.lookup(key.as_bytes()) {
        None => Ok(None),
        Some(v) => {
            let bytes = v.bytes().ok_or(FrameError::InvalidField(key))?;
            Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
        }
    }
}
