//! Run with: `RUSTC_BOOTSTRAP=1 cargo fuzz run peer_message` (from `fuzz/`).
//!
//! Any byte stream a peer can send: the handshake and message decoders never panic, both
//! message decoders agree, every decoded message re-encodes to exactly the bytes it came from,
//! extension payloads decode without panicking, and a decoded `swarmcdn_manifest` message
//! survives a re-encode.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use swarmcdn_proto::peer::{
    Bitfield, ExtendedHandshake, Handshake, ManifestMessage, Message, MetadataMessage, WireLimits,
};

fuzz_target!(|data: &[u8]| {
    let limits = WireLimits::default();
    let _ = Handshake::peek_info_hash(data);
    let _ = Handshake::decode(data);

    let mut offset = 0;
    let mut stream = BytesMut::from(data);
    loop {
        let copied = Message::decode(&data[offset..], &limits);
        let shared = Message::decode_from(&mut stream, &limits);
        match (copied, shared) {
            (Ok(Some((message, used))), Ok(Some(same))) => {
                assert_eq!(message, same);
                assert_eq!(message.to_bytes(), &data[offset..offset + used]);
                match &message {
                    Message::Extended { id: 0, payload } => {
                        let _ = ExtendedHandshake::decode(payload);
                    }
                    Message::Extended { payload, .. } => {
                        let _ = MetadataMessage::decode(&Bytes::clone(payload));
                        if let Ok(manifest) = ManifestMessage::decode(payload) {
                            let mut again = Vec::new();
                            manifest.encode(&mut again);
                            assert_eq!(ManifestMessage::decode(&again), Ok(manifest));
                        }
                    }
                    Message::Bitfield(bits) => {
                        let _ = Bitfield::from_payload(bits, (bits.len() as u32).saturating_mul(8));
                    }
                    _ => {}
                }
                offset += used;
            }
            (Ok(None), Ok(None)) | (Err(_), Err(_)) => break,
            (a, b) => panic!("decoders disagree: {a:?} vs {b:?}"),
        }
    }
});
