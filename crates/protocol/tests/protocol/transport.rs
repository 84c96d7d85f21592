use splitlm_protocol::{
    Limits, Message, ProtocolError, StreamTransport, TensorFrame, Traffic, Transport, WireDType,
    encode, in_process_pair,
};

use crate::sample_forward;

#[test]
fn in_process_pair_across_threads_counts_encoded_bytes() {
    let (mut data, mut model) = in_process_pair(Limits::default());
    let forward = sample_forward();
    let forward_len = encode(&forward).len() as u64;
    let server = std::thread::spawn(move || {
        let mut sent = 0u64;
        let mut received = 0u64;
        loop {
            let msg = model.recv().unwrap();
            received += encode(&msg).len() as u64;
            let Message::Forward { step, hidden, .. } = msg else {
                assert!(matches!(msg, Message::End { .. }));
                break;
            };
            let values = hidden.to_f32().unwrap();
            let grad = TensorFrame::from_f32(hidden.shape, &values, WireDType::BF16).unwrap();
            let reply = Message::InputGradient { step, grad };
            sent += encode(&reply).len() as u64;
            model.send(&reply).unwrap();
        }
        let t = model.traffic();
        assert_eq!((t.bytes_sent, t.bytes_received), (sent, received));
        t
    });
    for _ in 0..3 {
        data.send(&forward).unwrap();
        assert!(matches!(
            data.recv().unwrap(),
            Message::InputGradient { step: 7, .. }
        ));
    }
    let end = Message::End {
        reason: "done".into(),
    };
    data.send(&end).unwrap();
    let model_traffic = server.join().unwrap();
    let t = data.traffic();
    assert_eq!(t.messages_sent, 4);
    assert_eq!(t.messages_received, 3);
    assert_eq!(t.bytes_sent, 3 * forward_len + encode(&end).len() as u64);
    assert_eq!(
        model_traffic,
        Traffic {
            bytes_sent: t.bytes_received,
            bytes_received: t.bytes_sent,
            messages_sent: 3,
            messages_received: 4
        }
    );
    // The peer is gone: both directions report Disconnected.
    assert!(matches!(data.recv(), Err(ProtocolError::Disconnected)));
    assert!(matches!(data.send(&end), Err(ProtocolError::Disconnected)));
}

#[test]
fn receiver_limits_are_enforced_and_invalid_frames_are_not_sent() {
    let (mut a, mut b) = in_process_pair(Limits {
        max_message_bytes: 64,
        ..Limits::default()
    });
    assert!(matches!(
        a.send(&sample_forward()),
        Err(ProtocolError::Oversized { .. })
    ));
    let bad = TensorFrame {
        dtype: WireDType::F32,
        shape: vec![2],
        data: vec![0; 7],
    };
    assert!(matches!(
        a.send(&Message::Gradient { step: 0, grad: bad }),
        Err(ProtocolError::ShapeMismatch { .. })
    ));
    assert_eq!(a.traffic(), Traffic::default());
    a.send(&Message::HelloAck {
        version: 1,
        session: 5,
    })
    .unwrap();
    assert_eq!(
        b.recv().unwrap(),
        Message::HelloAck {
            version: 1,
            session: 5
        }
    );
}

#[test]
fn transports_are_object_safe_and_streams_work() {
    let (a, b) = in_process_pair(Limits::default());
    let mut boxed: Vec<Box<dyn Transport>> = vec![Box::new(a), Box::new(b)];
    boxed[0].send(&Message::End { reason: "x".into() }).unwrap();
    assert_eq!(
        boxed[1].recv().unwrap(),
        Message::End { reason: "x".into() }
    );

    let mut wire = Vec::new();
    let mut tx = StreamTransport::new(std::io::empty(), &mut wire, Limits::default());
    tx.send(&sample_forward()).unwrap();
    tx.send(&Message::End {
        reason: "bye".into(),
    })
    .unwrap();
    let sent = tx.traffic();
    let _ = tx.into_inner();
    assert_eq!(sent.bytes_sent, wire.len() as u64);
    let mut rx = StreamTransport::new(wire.as_slice(), std::io::sink(), Limits::default());
    assert_eq!(rx.recv().unwrap(), sample_forward());
    assert_eq!(
        rx.recv().unwrap(),
        Message::End {
            reason: "bye".into()
        }
    );
    assert!(matches!(rx.recv(), Err(ProtocolError::Disconnected)));
    assert_eq!(rx.traffic().bytes_received, sent.bytes_sent);
}
