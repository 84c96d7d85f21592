//! Integration tests of the protocol crate.

mod convert;
mod malformed;
mod roundtrip;
mod transport;

use proptest::prelude::*;
use splitlm_protocol::{Message, Mode, OutputKind, Role, TensorFrame, WireDType};

/// Any dtype.
pub fn dtype() -> impl Strategy<Value = WireDType> {
    proptest::sample::select(WireDType::ALL.to_vec())
}

/// A valid frame of the given dtype with a small random shape and random bytes.
pub fn frame_of(dtype: impl Strategy<Value = WireDType>) -> impl Strategy<Value = TensorFrame> {
    (dtype, proptest::collection::vec(0usize..5, 0..=4)).prop_flat_map(|(dtype, shape)| {
        let len = shape.iter().product::<usize>() * dtype.size();
        proptest::collection::vec(any::<u8>(), len).prop_map(move |data| TensorFrame {
            dtype,
            shape: shape.clone(),
            data,
        })
    })
}

/// Any valid frame.
pub fn frame() -> impl Strategy<Value = TensorFrame> {
    frame_of(dtype())
}

/// Any message variant with valid contents.
pub fn message() -> impl Strategy<Value = Message> {
    let role = prop_oneof![Just(Role::DataParty), Just(Role::ModelParty)];
    let mode = prop_oneof![
        Just(Mode::Train),
        Just(Mode::Eval),
        Just(Mode::Infer),
        Just(Mode::Prefill)
    ];
    let kind = prop_oneof![
        Just(OutputKind::Hidden),
        Just(OutputKind::LmLogits),
        Just(OutputKind::ClassLogits),
        Just(OutputKind::SpanLogits)
    ];
    prop_oneof![
        (
            any::<u16>(),
            role,
            ".{0,20}",
            ".{0,12}",
            proptest::collection::vec((".{0,8}", ".{0,8}"), 0..4)
        )
            .prop_map(
                |(version, role, party_id, session_key, terms)| Message::Hello {
                    version,
                    role,
                    party_id,
                    session_key,
                    terms
                }
            ),
        ".{0,12}".prop_map(|tag| Message::SaveState { tag }),
        ".{0,12}".prop_map(|tag| Message::RestoreState { tag }),
        (".{0,12}", any::<u64>()).prop_map(|(tag, steps)| Message::StateDone { tag, steps }),
        (any::<u16>(), any::<u64>())
            .prop_map(|(version, session)| Message::HelloAck { version, session }),
        (any::<u64>(), mode, frame(), frame(), frame()).prop_map(
            |(step, mode, hidden, attention_mask, positions)| Message::Forward {
                step,
                mode,
                hidden,
                attention_mask,
                positions
            }
        ),
        (any::<u64>(), kind, proptest::collection::vec(frame(), 0..4)).prop_map(
            |(step, kind, tensors)| Message::Output {
                step,
                kind,
                tensors
            }
        ),
        (any::<u64>(), frame()).prop_map(|(step, grad)| Message::Gradient { step, grad }),
        (any::<u64>(), frame()).prop_map(|(step, grad)| Message::InputGradient { step, grad }),
        ".{0,40}".prop_map(|reason| Message::End { reason }),
        (any::<u16>(), ".{0,40}").prop_map(|(code, message)| Message::Error { code, message }),
    ]
}

/// A small Forward message with one of each frame kind.
pub fn sample_forward() -> Message {
    let hidden = TensorFrame::from_f32(vec![1, 2, 3], &[0.5; 6], WireDType::F32).unwrap();
    let attention_mask = TensorFrame::from_ints(vec![1, 2], &[1, 1], WireDType::U8).unwrap();
    let positions = TensorFrame::from_i64(vec![1, 2], &[0, 1]).unwrap();
    Message::Forward {
        step: 7,
        mode: Mode::Train,
        hidden,
        attention_mask,
        positions,
    }
}
