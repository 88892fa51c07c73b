//! Where a web seed keeps each file of a torrent (the BEP 19 URL rules).
//!
//! A `url-list` entry names either the file itself (single-file torrent, URL without a
//! trailing `/`), or a folder that holds the torrent's content (trailing `/`, or any
//! multi-file torrent). File names come from the torrent, so they are percent-encoded one
//! path component at a time with everything but RFC 3986 unreserved characters escaped: a
//! name holding `#`, `?`, `%` or a space can neither end the path early nor be read as a
//! query. Components cannot be `.` or `..` or hold `/` (the metainfo parser rejects those),
//! so a torrent cannot point a request outside the seed's folder.
//!
//! Every file's URL is built and parsed once, when the [`WebSeed`](super::WebSeed) is made,
//! so an unusable `url-list` entry is rejected up front and fetching never re-parses.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use swarmcdn_proto::metainfo::Info;

use super::WebSeedError;

/// Bytes escaped in a path component: all but the RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The URL of every file of `info` (in [`Info::files`] order) served by the web seed
/// `base`.
///
/// Rules (BEP 19): a base ending in `/` is a folder, and the file's path (the torrent
/// `name`, then for a multi-file torrent the path inside its folder) is appended. A base
/// without a trailing `/` is the file itself for a single-file torrent; for a multi-file
/// torrent a `/` is added first. [`Info::files`] paths already start with the torrent name
/// for multi-file torrents and are the name alone for single-file ones, so in both cases the
/// appended part is the file's path, component by component.
pub(super) fn file_urls(base: &str, info: &Info) -> Result<Vec<Url>, WebSeedError> {
    let base = base.trim();
    let invalid = |reason: String| WebSeedError::InvalidUrl {
        url: base.to_owned(),
        reason,
    };
    let parsed = Url::parse(base).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme `{}` is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("the URL has no host".into()));
    }
    let folder = base.ends_with('/');
    if !folder && !info.is_multi_file() {
        // The URL is the file itself, used as given.
        return Ok(vec![parsed]);
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            "a web seed folder URL cannot have a query or fragment".into(),
        ));
    }
    let separator = if folder { "" } else { "/" };
    info.files()
        .iter()
        .map(|file| {
            let path = encode_path(file.path.components());
            let full = format!("{base}{separator}{path}");
            Url::parse(&full).map_err(|e| WebSeedError::InvalidUrl {
                url: full.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Percent-encodes each component and joins them with `/`.
fn encode_path(components: &[String]) -> String {
    let encoded: Vec<String> = components
        .iter()
        .map(|c| utf8_percent_encode(c, COMPONENT).to_string())
        .collect();
    encoded.join("/")
}

#[cfg(test)]
mod tests {
    use swarmcdn_proto::RelativePath;
    use swarmcdn_proto::metainfo::{Metainfo, TorrentBuilder};

    use super::*;

    fn single(name: &str) -> Metainfo {
        TorrentBuilder::new("unused")
            .add_bytes(RelativePath::parse(name).unwrap(), vec![7; 100])
            .piece_length(16 * 1024)
            .build()
            .unwrap()
    }

    /// Folder `name` with `a/b c.js` and `icons/x.svg`.
    fn multi(name: &str) -> Metainfo {
        TorrentBuilder::new(name)
            .add_bytes(RelativePath::parse("a/b c.js").unwrap(), vec![1; 10])
            .add_bytes(RelativePath::parse("icons/x.svg").unwrap(), vec![2; 10])
            .piece_length(16 * 1024)
            .build()
            .unwrap()
    }

    fn urls(base: &str, torrent: &Metainfo) -> Vec<String> {
        file_urls(base, torrent.info())
            .unwrap()
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn url_table() {
        let cases: &[(&str, Metainfo, &[&str])] = &[
            // single-file, folder URL: the name is appended
            (
                "http://o.example/seed/",
                single("app.js"),
                &["http://o.example/seed/app.js"],
            ),
            // single-file, file URL: used as is (even with another name)
            (
                "http://o.example/files/other-name.js",
                single("app.js"),
                &["http://o.example/files/other-name.js"],
            ),
            // a single-file URL may carry a query; it is not touched
            (
                "https://o.example/get?id=3",
                single("app.js"),
                &["https://o.example/get?id=3"],
            ),
            // multi-file, folder URL: name/path appended
            (
                "http://o.example/seed/",
                multi("site"),
                &[
                    "http://o.example/seed/site/a/b%20c.js",
                    "http://o.example/seed/site/icons/x.svg",
                ],
            ),
            // multi-file, no trailing slash: one is added
            (
                "https://o.example:8443/seed",
                multi("site"),
                &[
                    "https://o.example:8443/seed/site/a/b%20c.js",
                    "https://o.example:8443/seed/site/icons/x.svg",
                ],
            ),
            // a bare host
            (
                "http://o.example",
                multi("s"),
                &[
                    "http://o.example/s/a/b%20c.js",
                    "http://o.example/s/icons/x.svg",
                ],
            ),
            // spaces, unicode, `#`, `?`, `%`, `+`, `&` in names are escaped
            (
                "http://o.example/",
                single("my file #1?.js"),
                &["http://o.example/my%20file%20%231%3F.js"],
            ),
            (
                "http://o.example/",
                single("héllo wörld.txt"),
                &["http://o.example/h%C3%A9llo%20w%C3%B6rld.txt"],
            ),
            (
                "http://o.example/",
                single("100%+a&b=c;d.txt"),
                &["http://o.example/100%25%2Ba%26b%3Dc%3Bd.txt"],
            ),
            (
                "http://o.example/w/",
                multi("日本 #?"),
                &[
                    "http://o.example/w/%E6%97%A5%E6%9C%AC%20%23%3F/a/b%20c.js",
                    "http://o.example/w/%E6%97%A5%E6%9C%AC%20%23%3F/icons/x.svg",
                ],
            ),
            // unreserved characters stay as they are
            (
                "http://o.example/",
                single("a-b_c.d~e.js"),
                &["http://o.example/a-b_c.d~e.js"],
            ),
        ];
        for (base, torrent, expected) in cases {
            assert_eq!(urls(base, torrent), *expected, "base {base}");
        }
    }

    #[test]
    fn a_single_file_in_a_folder_torrent_gets_name_and_path() {
        let torrent = TorrentBuilder::new("pkg")
            .add_bytes(RelativePath::parse("only.js").unwrap(), vec![1; 10])
            .folder(true)
            .piece_length(16 * 1024)
            .build()
            .unwrap();
        assert_eq!(
            urls("http://o.example/x", &torrent),
            ["http://o.example/x/pkg/only.js"]
        );
    }

    #[test]
    fn unusable_base_urls_are_rejected() {
        let torrent = multi("site");
        for base in [
            "ftp://o.example/seed/",
            "file:///srv/seed/",
            "not a url",
            "",
            "/relative/path/",
            "http://o.example/seed?x=1",
            "http://o.example/seed#frag",
        ] {
            let err = file_urls(base, torrent.info()).unwrap_err();
            assert!(
                matches!(err, WebSeedError::InvalidUrl { .. }),
                "{base}: {err:?}"
            );
        }
        // A query is only a problem when something has to be appended.
        assert!(file_urls("http://o.example/seed?x=1", single("a.js").info()).is_ok());
    }
}
