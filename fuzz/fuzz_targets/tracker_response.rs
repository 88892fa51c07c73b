//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run tracker_response` (from `fuzz/`).
//!
//! Any body a tracker can answer with: announce, scrape and release-lookup decoding never
//! panic, and what decodes re-encodes to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmcdn_proto::tracker::{AnnounceResponse, ReleaseLookup, ScrapeResponse, write_lookup};

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = AnnounceResponse::from_bytes(data) {
        let mut out = Vec::new();
        response.encode_compact(&mut out);
        let again = AnnounceResponse::from_bytes(&out).expect("re-encoded response decodes");
        // The compact form drops peer ids, so compare the rest.
        match (&again, &response) {
            (AnnounceResponse::Success(a), AnnounceResponse::Success(b)) => {
                assert_eq!(a.peers, b.peers);
                assert_eq!(a.peers6, b.peers6);
                assert_eq!(a.interval, b.interval);
                assert_eq!(a.complete, b.complete);
                assert_eq!(a.incomplete, b.incomplete);
            }
            (a, b) => assert_eq!(a, b),
        }
    }
    if let Ok(response) = ScrapeResponse::from_bytes(data) {
        let mut out = Vec::new();
        response.encode(&mut out);
        assert_eq!(ScrapeResponse::from_bytes(&out).expect("re-encoded scrape decodes"), response);
    }
    if let Ok(lookup) = ReleaseLookup::from_bytes(data) {
        let mut out = Vec::new();
        write_lookup(
            &mut out,
            lookup.manifest.to_json().as_bytes(),
            &lookup.torrent,
            lookup.peers.iter().copied(),
            lookup.peers6.iter().copied(),
        );
        let again = ReleaseLookup::from_bytes(&out).expect("re-encoded lookup decodes");
        assert_eq!(again.manifest, lookup.manifest);
        assert_eq!(again.torrent, lookup.torrent);
        assert_eq!(again.peers, lookup.peers);
        assert_eq!(again.peers6, lookup.peers6);
    }
});
