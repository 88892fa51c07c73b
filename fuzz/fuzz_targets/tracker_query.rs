//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run tracker_query` (from `fuzz/`).
//!
//! Any query string a client can send: announce and scrape parsing never panic, and an
//! announce that parses survives `to_query` and parses to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmcdn_proto::tracker::{AnnounceRequest, ScrapeRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = AnnounceRequest::from_query(query) {
        let again = AnnounceRequest::from_query(&request.to_query()).expect("re-encoded query parses");
        assert_eq!(again, request);
    }
    if let Ok(request) = ScrapeRequest::from_query(query) {
        let again = ScrapeRequest::from_query(&request.to_query()).expect("re-encoded scrape parses");
        assert_eq!(again, request);
    }
});
