//! Decodes arbitrary bytes, both from a slice and from a stream; neither may panic,
//! and whatever decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use splitlm_protocol::{Limits, decode, encode, read_message};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_bytes: 1 << 20,
        ..Limits::default()
    };
    if let Ok(msg) = decode(data, &limits) {
        assert_eq!(encode(&msg), data);
    }
    let mut stream = data;
    while read_message(&mut stream, &limits).is_ok() {}
});
