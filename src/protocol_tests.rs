use super::*;
use proptest::prelude::*;

fn decode_all(codec: &mut FrameCodec, bytes: &[u8]) -> Result<Option<FromWorker>, ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    codec.decode(&mut buf)
}

fn sample_report() -> RunReport {
    RunReport {
        id: 7,
        outcome: Outcome::Ok,
        result: Some(br#"{"sum":4}"#.to_vec()),
        error: None,
        traceback: None,
        stdout: b"hi\n".to_vec(),
        stderr: Vec::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        duration_ms: 1.5,
    }
}

#[test]
fn result_frame_round_trips() {
    let frame = encode_frame(&FromWorker::Result(sample_report())).expect("encodes");
    let decoded = decode_all(&mut FrameCodec::new(1024), &frame).expect("decodes");
    assert_eq!(decoded, Some(FromWorker::Result(sample_report())));
}

#[test]
fn partial_frame_needs_more_bytes_not_an_error() {
    let frame = encode_frame(&FromWorker::Pong { id: 3 }).expect("encodes");
    for cut in 0..frame.len() {
        assert!(decode_all(&mut FrameCodec::new(1024), &frame[..cut]).expect("not an error").is_none());
    }
    // Byte by byte through one codec, as a stream delivers them.
    let mut codec = FrameCodec::new(1024);
    let mut buf = BytesMut::new();
    let mut decoded = None;
    for byte in &frame {
        buf.extend_from_slice(&[*byte]);
        if let Some(msg) = codec.decode(&mut buf).expect("not an error") {
            decoded = Some(msg);
        }
    }
    assert_eq!(decoded, Some(FromWorker::Pong { id: 3 }));
}

#[test]
fn oversized_announcement_is_refused_before_reading_the_body() {
    let mut codec = FrameCodec::new(100);
    let header = 101u32.to_be_bytes();
    match decode_all(&mut codec, &header) {
        Err(ProtocolError::FrameTooLarge { max: 100 }) => {}
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
}

#[test]
fn unknown_type_and_unknown_outcome_are_decode_errors() {
    #[derive(Serialize)]
    struct Odd<'a> {
        r#type: &'a str,
        id: u64,
    }
    let frame = encode_frame(&Odd { r#type: "launch_missiles", id: 1 }).expect("encodes");
    assert!(matches!(decode_all(&mut FrameCodec::new(1024), &frame), Err(ProtocolError::Decode(_))));

    let mut report = rmp_serde::to_vec_named(&FromWorker::Result(sample_report())).expect("encodes");
    let at = report.windows(2).position(|w| w == b"ok").expect("outcome present");
    report[at] = b'n';
    let mut frame = (report.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&report);
    assert!(matches!(decode_all(&mut FrameCodec::new(1024), &frame), Err(ProtocolError::Decode(_))));
}

#[test]
fn encoder_refuses_a_script_over_the_maximum() {
    let run = ToWorker::Run(RunRequest {
        id: 1,
        script: "x".repeat(200),
        timeout_ms: 1,
        memory_bytes: 1,
        max_output_bytes: 1,
        max_result_bytes: 1,
    });
    let mut dst = BytesMut::new();
    assert!(matches!(FrameCodec::new(100).encode(&run, &mut dst), Err(ProtocolError::FrameTooLarge { .. })));
}

proptest! {
    /// Whatever a compromised worker sends, decoding returns (never panics).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut codec = FrameCodec::new(256);
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..4 {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn any_report_round_trips(stdout in proptest::collection::vec(any::<u8>(), 0..64), id in any::<u64>(), ms in 0.0f64..1e6) {
        let report = RunReport { id, stdout, duration_ms: ms, ..sample_report() };
        let frame = encode_frame(&FromWorker::Result(report.clone())).expect("encodes");
        let decoded = decode_all(&mut FrameCodec::new(4096), &frame).expect("decodes");
        prop_assert_eq!(decoded, Some(FromWorker::Result(report)));
    }
}
