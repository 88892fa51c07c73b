//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run bencode` (from `fuzz/`).
//!
//! Any input: decoding never panics; whatever decodes re-encodes canonically and decodes to
//! the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmcdn_proto::bencode::{Limits, decode};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = decode(data, &Limits::default()) {
        let canonical = value.to_bytes();
        let again = decode(&canonical, &Limits::default()).expect("canonical bencode decodes");
        assert_eq!(again, value);
    }
});
