use proptest::prelude::*;
use splitlm_protocol::{
    HEADER_LEN, Limits, Message, ProtocolError, TensorFrame, WireDType, decode, encode,
    read_message,
};

use crate::{message, sample_forward};

/// Offset of the first frame's dtype byte in an encoded Gradient (header, step).
const GRAD_FRAME: usize = HEADER_LEN + 8;

fn gradient(shape: Vec<usize>, values: &[f32]) -> Vec<u8> {
    let grad = TensorFrame::from_f32(shape, values, WireDType::F32).unwrap();
    encode(&Message::Gradient { step: 3, grad })
}

fn set_body_len(bytes: &mut [u8], len: u64) {
    bytes[7..15].copy_from_slice(&len.to_le_bytes());
}

#[test]
fn every_truncation_is_an_error() {
    let msgs = [
        sample_forward(),
        Message::Hello {
            version: 1,
            role: splitlm_protocol::Role::DataParty,
            party_id: "héad".into(),
            session_key: "run-1".into(),
            terms: vec![("partition".into(), "HT(2)".into())],
        },
        Message::StateDone {
            tag: "step-000004".into(),
            steps: 4,
        },
        Message::Output {
            step: 1,
            kind: splitlm_protocol::OutputKind::SpanLogits,
            tensors: vec![TensorFrame::from_f32(vec![2], &[1.0, 2.0], WireDType::BF16).unwrap(); 2],
        },
        Message::Error {
            code: 9,
            message: "boom".into(),
        },
    ];
    for msg in msgs {
        let bytes = encode(&msg);
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            assert!(
                decode(prefix, &Limits::default()).is_err(),
                "{} cut at {cut}",
                msg.name()
            );
            let streamed = read_message(&mut &prefix[..], &Limits::default());
            match (cut, streamed) {
                (0, Err(ProtocolError::Disconnected)) => {}
                (_, Err(ProtocolError::Truncated { .. })) => {}
                (_, other) => panic!("{} cut at {cut}: {other:?}", msg.name()),
            }
        }
    }
}

#[test]
fn oversized_message_is_rejected_before_reading_the_body() {
    let mut bytes = gradient(vec![2], &[1.0, 2.0]);
    set_body_len(&mut bytes, u64::MAX);
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::Oversized {
            what: "message size",
            ..
        })
    ));
    // A stream announcing 1 GiB with nothing behind it fails on the header alone.
    set_body_len(&mut bytes, 1 << 30);
    assert!(matches!(
        read_message(&mut &bytes[..HEADER_LEN], &Limits::default()),
        Err(ProtocolError::Oversized {
            what: "message size",
            ..
        })
    ));
    let small = Limits {
        max_message_bytes: 20,
        ..Limits::default()
    };
    let ok = gradient(vec![2], &[1.0, 2.0]);
    assert!(matches!(
        decode(&ok, &small),
        Err(ProtocolError::Oversized { .. })
    ));
}

#[test]
fn oversized_tensor_is_rejected() {
    let bytes = gradient(vec![4, 4], &[0.0; 16]);
    let limits = Limits {
        max_tensor_elements: 15,
        ..Limits::default()
    };
    assert!(matches!(
        decode(&bytes, &limits),
        Err(ProtocolError::Oversized {
            what: "tensor elements",
            size: 16,
            limit: 15
        })
    ));
    // Dimensions whose product overflows.
    let mut bytes = gradient(vec![1, 1], &[0.0]);
    let dims = GRAD_FRAME + 2;
    bytes[dims..dims + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    bytes[dims + 8..dims + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::Oversized { .. })
    ));
    // A huge declared data length with a matching huge shape, but no data behind it.
    let mut bytes = gradient(vec![1], &[0.0]);
    bytes[GRAD_FRAME + 2..GRAD_FRAME + 10].copy_from_slice(&(1u64 << 27).to_le_bytes());
    bytes[GRAD_FRAME + 10..GRAD_FRAME + 18].copy_from_slice(&(1u64 << 29).to_le_bytes());
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::Truncated {
            what: "tensor data"
        })
    ));
    // Rank above the limit.
    let mut bytes = gradient(vec![1], &[0.0]);
    bytes[GRAD_FRAME + 1] = 9;
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::Oversized {
            what: "tensor rank",
            size: 9,
            ..
        })
    ));
    // Too many tensors in an Output.
    let out = Message::Output {
        step: 0,
        kind: splitlm_protocol::OutputKind::Hidden,
        tensors: vec![TensorFrame::from_i64(vec![], &[1]).unwrap(); 3],
    };
    let limits = Limits {
        max_tensors_per_message: 2,
        ..Limits::default()
    };
    assert!(matches!(
        decode(&encode(&out), &limits),
        Err(ProtocolError::Oversized {
            what: "tensor count",
            ..
        })
    ));
}

#[test]
fn wrong_dtype_byte() {
    let mut bytes = gradient(vec![1], &[0.0]);
    bytes[GRAD_FRAME] = 42;
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::UnknownDType(42))
    ));
}

#[test]
fn shape_times_dtype_must_match_data_length() {
    // Relabel F32 data as I64: 2 elements need 16 bytes, 8 are present.
    let mut bytes = gradient(vec![2], &[1.0, 2.0]);
    bytes[GRAD_FRAME] = WireDType::I64.to_u8();
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::ShapeMismatch {
            dtype: WireDType::I64,
            data_len: 8,
            ..
        })
    ));
    let bad = TensorFrame {
        dtype: WireDType::F16,
        shape: vec![3],
        data: vec![0; 4],
    };
    assert!(matches!(
        bad.validate(),
        Err(ProtocolError::ShapeMismatch { .. })
    ));
    let msg = Message::Gradient { step: 0, grad: bad };
    assert!(matches!(
        decode(&encode(&msg), &Limits::default()),
        Err(ProtocolError::ShapeMismatch { .. })
    ));
    assert!(msg.validate(&Limits::default()).is_err());
}

#[test]
fn bad_envelope_fields() {
    let good = encode(&sample_forward());
    let mut bytes = good.clone();
    bytes[0] = b'X';
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::BadMagic { .. })
    ));
    let mut bytes = good.clone();
    bytes[4..6].copy_from_slice(&1u16.to_le_bytes());
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::UnknownVersion {
            found: 1,
            supported: splitlm_protocol::PROTOCOL_VERSION
        })
    ));
    let mut bytes = good.clone();
    bytes[6] = 200;
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::UnknownMessage(200))
    ));
    let mut bytes = good.clone();
    bytes[HEADER_LEN + 8] = 9; // mode
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::UnknownEnum {
            what: "mode",
            value: 9
        })
    ));
}

#[test]
fn trailing_bytes() {
    let mut bytes = encode(&sample_forward());
    bytes.push(0);
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::TrailingBytes { count: 1 })
    ));
    // Trailing bytes inside the announced body.
    let mut bytes = encode(&Message::End {
        reason: "done".into(),
    });
    bytes.extend_from_slice(&[1, 2, 3]);
    let len = (bytes.len() - HEADER_LEN) as u64;
    set_body_len(&mut bytes, len);
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::TrailingBytes { count: 3 })
    ));
    assert!(matches!(
        read_message(&mut &bytes[..], &Limits::default()),
        Err(ProtocolError::TrailingBytes { count: 3 })
    ));
}

#[test]
fn strings_must_be_utf8_and_bounded() {
    let mut bytes = encode(&Message::End {
        reason: "ok".into(),
    });
    let last = bytes.len() - 1;
    bytes[last] = 0xFF;
    assert!(matches!(
        decode(&bytes, &Limits::default()),
        Err(ProtocolError::BadUtf8)
    ));
    let long = Message::End {
        reason: "x".repeat(100),
    };
    let limits = Limits {
        max_string_bytes: 99,
        ..Limits::default()
    };
    assert!(matches!(
        decode(&encode(&long), &limits),
        Err(ProtocolError::Oversized {
            what: "string length",
            ..
        })
    ));
    assert!(long.validate(&limits).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes, &Limits::default());
        let _ = read_message(&mut &bytes[..], &Limits::default());
    }

    #[test]
    fn mutated_messages_never_panic(msg in message(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode(&msg);
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(back) = decode(&bytes, &Limits::default()) {
            prop_assert_eq!(encode(&back), bytes);
        }
    }
}
