use proptest::prelude::*;
use splitlm_protocol::{ProtocolError, TensorFrame, WireDType};

proptest! {
    #[test]
    fn f32_is_exact(values in proptest::collection::vec(any::<f32>().prop_filter("not nan", |v| !v.is_nan()), 0..32)) {
        let f = TensorFrame::from_f32(vec![values.len()], &values, WireDType::F32).unwrap();
        prop_assert_eq!(f.to_f32().unwrap(), values);
    }

    #[test]
    fn f16_relative_error_is_bounded(values in proptest::collection::vec(-60000.0f32..60000.0, 1..32)) {
        let f = TensorFrame::from_f32(vec![values.len()], &values, WireDType::F16).unwrap();
        for (a, b) in values.iter().zip(f.to_f32().unwrap()) {
            // 11-bit significand: half an ulp is 2^-11 relative; subnormals below 2^-14 get an absolute 2^-25.
            prop_assert!((a - b).abs() <= a.abs() * 2f32.powi(-11) + 2f32.powi(-25), "{a} -> {b}");
        }
    }

    #[test]
    fn bf16_relative_error_is_bounded(values in proptest::collection::vec(-1e30f32..1e30, 1..32)) {
        let f = TensorFrame::from_f32(vec![values.len()], &values, WireDType::BF16).unwrap();
        for (a, b) in values.iter().zip(f.to_f32().unwrap()) {
            // 8-bit significand: half an ulp is 2^-8 relative.
            prop_assert!((a - b).abs() <= a.abs() * 2f32.powi(-8) + f32::MIN_POSITIVE, "{a} -> {b}");
        }
    }

    #[test]
    fn ints_round_trip(values in proptest::collection::vec(any::<i64>(), 0..16)) {
        let f = TensorFrame::from_i64(vec![values.len()], &values).unwrap();
        prop_assert_eq!(f.to_i64().unwrap(), values.clone());
        let small: Vec<i64> = values.iter().map(|v| v.rem_euclid(256)).collect();
        let u8s = TensorFrame::from_ints(vec![small.len()], &small, WireDType::U8).unwrap();
        prop_assert_eq!(u8s.to_i64().unwrap(), small);
    }
}

#[test]
fn specials_survive_half_precision() {
    let v = [0.0, -0.0, 1.0, f32::INFINITY, f32::NEG_INFINITY, -2.5];
    for dtype in [WireDType::F16, WireDType::BF16] {
        let back = TensorFrame::from_f32(vec![6], &v, dtype)
            .unwrap()
            .to_f32()
            .unwrap();
        assert_eq!(back, v);
        assert!(
            TensorFrame::from_f32(vec![1], &[f32::NAN], dtype)
                .unwrap()
                .to_f32()
                .unwrap()[0]
                .is_nan()
        );
    }
    let max = TensorFrame::from_f32(vec![1], &[65504.0], WireDType::F16).unwrap();
    assert_eq!(max.to_f32().unwrap(), [65504.0]);
    // f16 overflows to infinity past its range; bf16 keeps the f32 range.
    let big = TensorFrame::from_f32(vec![1], &[1e6], WireDType::F16).unwrap();
    assert_eq!(big.to_f32().unwrap(), [f32::INFINITY]);
}

#[test]
fn constructors_and_readers_check_their_inputs() {
    assert!(matches!(
        TensorFrame::from_f32(vec![2, 2], &[1.0; 3], WireDType::F32),
        Err(ProtocolError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        TensorFrame::from_f32(vec![1], &[1.0], WireDType::I64),
        Err(ProtocolError::WrongDType { .. })
    ));
    assert!(matches!(
        TensorFrame::from_ints(vec![1], &[300], WireDType::U8),
        Err(ProtocolError::IntOutOfRange { value: 300, .. })
    ));
    assert!(matches!(
        TensorFrame::from_ints(vec![1], &[1 << 40], WireDType::I32),
        Err(ProtocolError::IntOutOfRange { .. })
    ));
    assert!(matches!(
        TensorFrame::from_i64(vec![1; 9], &[1]),
        Err(ProtocolError::Oversized {
            what: "tensor rank",
            ..
        })
    ));
    let ints = TensorFrame::from_i64(vec![2], &[1, 2]).unwrap();
    assert!(matches!(
        ints.to_f32(),
        Err(ProtocolError::WrongDType { .. })
    ));
    let floats = TensorFrame::from_f32(vec![], &[1.0], WireDType::F32).unwrap();
    assert_eq!(floats.num_elements(), 1);
    assert!(matches!(
        floats.to_i64(),
        Err(ProtocolError::WrongDType { .. })
    ));
    let overflow = TensorFrame {
        dtype: WireDType::I64,
        shape: vec![usize::MAX, 2],
        data: vec![],
    };
    assert!(matches!(
        overflow.validate(),
        Err(ProtocolError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        WireDType::from_u8(6),
        Err(ProtocolError::UnknownDType(6))
    ));
}
