//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run tracker_response` (from `fuzz/`).
//!
//! Any body a tracker can answer with: announce, scrape and release-bundle decoding never
//! panic, and what decodes re-encodes to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmcdn_proto::tracker::{AnnounceResponse, ReleaseBundle, ScrapeResponse, write_bundle};

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
    if let Ok(bundle) = ReleaseBundle::from_bytes(data) {
        let mut out = Vec::new();
        write_bundle(
            &mut out,
            bundle.manifest.to_json().as_bytes(),
            &bundle.metainfo.to_bytes(),
            bundle.peers.iter().copied(),
            bundle.peers6.iter().copied(),
        );
        let again = ReleaseBundle::from_bytes(&out).expect("re-encoded bundle decodes");
        assert_eq!(again.manifest, bundle.manifest);
        assert_eq!(again.peers, bundle.peers);
        assert_eq!(again.peers6, bundle.peers6);
    }
});
