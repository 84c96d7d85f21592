use proptest::prelude::*;
use splitlm_protocol::{Limits, WireDType, decode, encode, read_message, write_message};

use crate::{frame_of, message};

proptest! {
    #[test]
    fn every_message_round_trips(msg in message()) {
        let bytes = encode(&msg);
        prop_assert_eq!(bytes.len() as u64, splitlm_protocol::codec::encoded_len(&msg));
        prop_assert_eq!(&decode(&bytes, &Limits::default()).unwrap(), &msg);
        msg.validate(&Limits::default()).unwrap();
    }

    #[test]
    fn streams_of_messages_round_trip(msgs in proptest::collection::vec(message(), 0..5)) {
        let mut stream = Vec::new();
        for m in &msgs {
            write_message(&mut stream, m).unwrap();
        }
        let mut reader = stream.as_slice();
        for m in &msgs {
            prop_assert_eq!(&read_message(&mut reader, &Limits::default()).unwrap(), m);
        }
        prop_assert!(matches!(
            read_message(&mut reader, &Limits::default()),
            Err(splitlm_protocol::ProtocolError::Disconnected)
        ));
    }
}

#[test]
fn every_dtype_round_trips() {
    let mut runner = proptest::test_runner::TestRunner::default();
    for dtype in WireDType::ALL {
        runner
            .run(&frame_of(Just(dtype)), |f| {
                let msg = splitlm_protocol::Message::Gradient { step: 1, grad: f };
                prop_assert_eq!(decode(&encode(&msg), &Limits::default()).unwrap(), msg);
                Ok(())
            })
            .unwrap();
    }
}
