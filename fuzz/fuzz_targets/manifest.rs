//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run manifest` (from `fuzz/`).
//!
//! Any bytes offered as a signed manifest, in JSON or bencode: parsing never panics; what
//! parses survives a round trip through both forms unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmcdn_proto::manifest::SignedManifest;

fuzz_target!(|data: &[u8]| {
    for parsed in [SignedManifest::from_json(data), SignedManifest::from_bencode(data)] {
        if let Ok(signed) = parsed {
            let json = SignedManifest::from_json(signed.to_json().as_bytes()).expect("JSON round trip");
            assert_eq!(json, signed);
            let ben = SignedManifest::from_bencode(&signed.to_bencode()).expect("bencode round trip");
            assert_eq!(ben, signed);
            // Verification of an arbitrary signature must fail or pass, never panic.
            let _ = signed.verify(&[]);
        }
    }
});
