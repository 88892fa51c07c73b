//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run magnet` (from `fuzz/`).
//!
//! Any text offered as a magnet link: parsing never panics, and a parsed link formats to a
//! URI that parses to the same link.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmcdn_proto::magnet::Magnet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(magnet) = Magnet::parse(text) {
        let again = Magnet::parse(&magnet.to_uri()).expect("formatted magnet parses");
        assert_eq!(again, magnet);
    }
});
