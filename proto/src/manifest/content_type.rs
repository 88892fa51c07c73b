//! Content types: guessing one from a file name, and checking one a manifest declares.
//!
//! The site router serves each file with the content type its signed manifest declares, so
//! the type decides how a browser treats the bytes. Guessing happens once, on the publisher's
//! side, from a short fixed table; text types carry `charset=utf-8` so a browser never sniffs
//! an encoding. Two rules hold whatever the publisher wants: a declared type is short,
//! printable ASCII (it goes into an HTTP header as is), and nothing is ever declared or guessed
//! as `application/x-bittorrent`: a `.torrent` is internal to the swarm and must never reach a
//! browser as a torrent.

/// The longest content type a manifest may declare, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 128;

/// The type used when nothing better is known.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The media type no manifest may declare (compared case-insensitively, parameters ignored).
const TORRENT_MEDIA_TYPE: &str = "application/x-bittorrent";

/// Guesses a content type from the extension of `path` (a file name or a `/`-separated path;
/// the extension is compared case-insensitively). Unknown extensions, files without one, and
/// `.torrent` files get [`DEFAULT_CONTENT_TYPE`].
///
/// ```
/// use swarmcdn_proto::manifest::content_type_for_path;
///
/// assert_eq!(content_type_for_path("button.js"), "text/javascript; charset=utf-8");
/// assert_eq!(content_type_for_path("icons/Share.SVG"), "image/svg+xml");
/// assert_eq!(content_type_for_path("release.torrent"), "application/octet-stream");
/// ```
pub fn content_type_for_path(path: &str) -> &'static str {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    let Some((stem, extension)) = file_name.rsplit_once('.') else {
        return DEFAULT_CONTENT_TYPE;
    };
    if stem.is_empty() {
        // `.htaccess` is a hidden file, not an extension.
        return DEFAULT_CONTENT_TYPE;
    }
    match extension.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        // JSON is UTF-8 by definition (RFC 8259) and defines no charset parameter; source maps
        // are JSON.
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        // Never `application/x-bittorrent`: see the module docs.
        "torrent" => DEFAULT_CONTENT_TYPE,
        _ => DEFAULT_CONTENT_TYPE,
    }
}

/// Checks a declared content type; the error says which rule it breaks.
pub(crate) fn check_content_type(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("it is empty");
    }
    if value.len() > MAX_CONTENT_TYPE_LEN {
        return Err("it is longer than 128 bytes");
    }
    if !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err("it holds a character outside printable ASCII");
    }
    let media_type = value.split(';').next().unwrap_or(value).trim();
    if media_type.eq_ignore_ascii_case(TORRENT_MEDIA_TYPE) {
        return Err("a torrent is never served to a browser as a torrent");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_each_listed_extension() {
        for (path, expected) in [
            ("index.html", "text/html; charset=utf-8"),
            ("a/b/page.HTM", "text/html; charset=utf-8"),
            ("button.js", "text/javascript; charset=utf-8"),
            ("module.mjs", "text/javascript; charset=utf-8"),
            ("button.css", "text/css; charset=utf-8"),
            ("LICENSE.txt", "text/plain; charset=utf-8"),
            ("data.json", "application/json"),
            ("button.js.map", "application/json"),
            ("icon.svg", "image/svg+xml"),
            ("icon.png", "image/png"),
            ("photo.jpg", "image/jpeg"),
            ("photo.jpeg", "image/jpeg"),
            ("anim.gif", "image/gif"),
            ("pic.webp", "image/webp"),
            ("favicon.ico", "image/x-icon"),
            ("font.woff", "font/woff"),
            ("font.woff2", "font/woff2"),
            ("engine.wasm", "application/wasm"),
            ("archive.tar.gz", DEFAULT_CONTENT_TYPE),
            ("README", DEFAULT_CONTENT_TYPE),
            (".htaccess", DEFAULT_CONTENT_TYPE),
            ("dir.js/file", DEFAULT_CONTENT_TYPE),
            ("", DEFAULT_CONTENT_TYPE),
        ] {
            assert_eq!(content_type_for_path(path), expected, "{path}");
            assert_eq!(check_content_type(expected), Ok(()), "{expected}");
        }
    }

    #[test]
    fn a_torrent_is_never_given_the_bittorrent_type() {
        for path in ["release.torrent", "a/b/X.TORRENT", "t.Torrent"] {
            let guessed = content_type_for_path(path);
            assert_eq!(guessed, "application/octet-stream", "{path}");
            assert!(!guessed.contains("bittorrent"));
        }
        for declared in [
            "application/x-bittorrent",
            "Application/X-BitTorrent",
            " application/x-bittorrent ; charset=utf-8",
        ] {
            assert!(check_content_type(declared).is_err(), "{declared}");
        }
    }

    #[test]
    fn rejects_unprintable_empty_and_long_types() {
        assert!(check_content_type("").is_err());
        assert!(check_content_type("text/html\r\nSet-Cookie: x=1").is_err());
        assert!(check_content_type("text/html; charset=\u{e9}").is_err());
        assert!(check_content_type(&"a".repeat(MAX_CONTENT_TYPE_LEN)).is_ok());
        assert!(check_content_type(&"a".repeat(MAX_CONTENT_TYPE_LEN + 1)).is_err());
    }
}
