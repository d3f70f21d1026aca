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
        usage: Some(Usage { wall_ms: 1.25, cpu_ms: Some(1.0), max_rss_kib: Some(90_000) }),
        figures: vec![Figure { format: FigureFormat::Png, data: b"\x89PNG".to_vec(), width: 64, height: 48 }],
        figures_truncated: true,
        display: None,
        session_ended: None,
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
        files: Vec::new(),
        max_figures: 1,
        max_figures_bytes: 1,
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

    /// Every message the supervisor sends reads back the same, whatever
    /// the script's text (any Unicode) and limits.
    #[test]
    fn any_run_request_round_trips(
        id in any::<u64>(),
        script in ".*",
        limits in proptest::array::uniform6(any::<u64>()),
        files in proptest::collection::vec((".*", proptest::collection::vec(any::<u8>(), 0..64)), 0..4),
    ) {
        let [timeout_ms, memory_bytes, max_output_bytes, max_result_bytes, max_figures, max_figures_bytes] = limits;
        let files = files.into_iter().map(|(name, data)| InputFile { name, data }).collect();
        let run = ToWorker::Run(RunRequest {
            id, script, timeout_ms, memory_bytes, max_output_bytes, max_result_bytes, files, max_figures, max_figures_bytes,
        });
        let mut frame = BytesMut::new();
        FrameCodec::new(1 << 20).encode(&run, &mut frame).expect("encodes");
        prop_assert_eq!(rmp_serde::from_slice::<ToWorker>(&frame[4..]).expect("decodes"), run.clone());
        prop_assert_eq!(encode_frame(&run).expect("encodes"), frame.to_vec());
        let ping = ToWorker::Ping { id };
        prop_assert_eq!(rmp_serde::from_slice::<ToWorker>(&encode_frame(&ping).expect("encodes")[4..]).expect("decodes"), ping);
    }

    /// Every reply a worker can send, with every outcome and optional
    /// field, decodes to what was encoded.
    #[test]
    fn any_worker_reply_round_trips(
        outcome in prop_oneof![
            Just(Outcome::Ok), Just(Outcome::SyntaxError), Just(Outcome::MissingMain),
            Just(Outcome::RuntimeError), Just(Outcome::ResultNotJson), Just(Outcome::ResultTooLarge),
            Just(Outcome::Timeout), Just(Outcome::MemoryLimit), Just(Outcome::Killed),
        ],
        result in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        error in proptest::option::of(".*"),
        traceback in proptest::option::of(".*"),
        stderr in proptest::collection::vec(any::<u8>(), 0..64),
        truncated in any::<(bool, bool)>(),
        text in ".*",
        id in any::<u64>(),
    ) {
        let report = RunReport {
            id,
            outcome,
            result,
            error,
            traceback,
            stderr,
            stdout_truncated: truncated.0,
            stderr_truncated: truncated.1,
            ..sample_report()
        };
        for message in [
            FromWorker::Result(report),
            FromWorker::Fatal { error: text.clone() },
            FromWorker::Pong { id },
            FromWorker::Ready(ReadyInfo { version: PROTOCOL_VERSION, pid: 1, python: text.clone(), numpy: text.clone(), pandas: text.clone() }),
        ] {
            let frame = encode_frame(&message).expect("encodes");
            prop_assert_eq!(decode_message(&frame[4..]).expect("decodes"), message.clone());
            prop_assert_eq!(decode_all(&mut FrameCodec::new(1 << 20), &frame).expect("decodes"), Some(message));
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

/// The golden frames in `tests/golden/` (also checked by the Python tests):
/// both sides must produce and read exactly these bytes.
mod golden {
    use super::*;

    fn golden(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn decode(name: &str) -> FromWorker {
        decode_all(&mut FrameCodec::new(1 << 20), &golden(name)).expect("decodes").expect("one whole frame")
    }

    fn assert_golden<T: Serialize>(name: &str, msg: &T) {
        assert_eq!(encode_frame(msg).expect("encodes"), golden(name), "{name} differs from the golden bytes");
    }

    fn run() -> ToWorker {
        ToWorker::Run(RunRequest {
            id: 42,
            script: "def main():\n    return {\"sum\": 2 + 2}\n".into(),
            timeout_ms: 10_000,
            memory_bytes: 268_435_456,
            max_output_bytes: 1_048_576,
            max_result_bytes: 4_194_304,
            files: vec![
                InputFile { name: "data.csv".into(), data: b"a,b\n1,2\n".to_vec() },
                InputFile { name: "blob.bin".into(), data: vec![0, 255, 10] },
            ],
            max_figures: 8,
            max_figures_bytes: 4_194_304,
        })
    }

    fn result_ok() -> FromWorker {
        FromWorker::Result(RunReport {
            id: 42,
            outcome: Outcome::Ok,
            result: Some(br#"{"sum":4}"#.to_vec()),
            error: None,
            traceback: None,
            stdout: b"hello\n".to_vec(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration_ms: 3.25,
            usage: Some(Usage { wall_ms: 2.5, cpu_ms: Some(2.0), max_rss_kib: Some(91_234) }),
            figures: vec![Figure {
                format: FigureFormat::Png,
                data: b"\x89PNG\r\n\x1a\n".to_vec(),
                width: 640,
                height: 480,
            }],
            figures_truncated: false,
            display: None,
            session_ended: None,
        })
    }

    fn result_error() -> FromWorker {
        FromWorker::Result(RunReport {
            id: 43,
            outcome: Outcome::RuntimeError,
            result: None,
            error: Some("ZeroDivisionError: division by zero".into()),
            traceback: Some(
                "Traceback (most recent call last):\n  File \"<script>\", line 2, in main\n    return 1 / 0\nZeroDivisionError: division by zero\n".into(),
            ),
            stdout: Vec::new(),
            stderr: b"warn \xff\n".to_vec(),
            stdout_truncated: false,
            stderr_truncated: true,
            duration_ms: 12.5,
            usage: Some(Usage { wall_ms: 12.0, cpu_ms: None, max_rss_kib: None }),
            figures: Vec::new(),
            figures_truncated: false,
            display: None,
            session_ended: None,
        })
    }

    fn ready() -> FromWorker {
        FromWorker::Ready(ReadyInfo {
            version: 2,
            pid: 1,
            python: "3.11.2".into(),
            numpy: "2.4.6".into(),
            pandas: "3.1.1".into(),
        })
    }

    fn fatal() -> FromWorker {
        FromWorker::Fatal {
            error: "cannot create a per-run sandbox: unshare(CLONE_NEWUSER) failed: EPERM (Operation not permitted)"
                .into(),
        }
    }

    #[test]
    fn supervisor_messages_encode_to_the_golden_bytes() {
        assert_golden("run.msgpack", &run());
        assert_golden("ping.msgpack", &ToWorker::Ping { id: 7 });
        let body = &golden("run.msgpack")[4..];
        assert_eq!(rmp_serde::from_slice::<ToWorker>(body).expect("decodes"), run());
    }

    #[test]
    fn worker_messages_decode_from_the_golden_bytes() {
        for (name, expected) in [
            ("ready.msgpack", ready()),
            ("pong.msgpack", FromWorker::Pong { id: 7 }),
            ("result_ok.msgpack", result_ok()),
            ("result_error.msgpack", result_error()),
            ("fatal.msgpack", fatal()),
        ] {
            assert_eq!(decode(name), expected, "{name}");
            assert_golden(name, &expected);
        }
    }
}

/// A compromised worker can nest MessagePack arrays as deep as its frame
/// allows; decoding must refuse that with an error, within a small stack
/// (tokio's worker threads have 2 MiB; a stack overflow aborts the whole
/// service, which no error handling can catch).
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [40, 1_000, 100_000] {
        // {"type": "fatal", "error": [[[...nil...]]]}
        let mut body = vec![0x82, 0xa4];
        body.extend_from_slice(b"type");
        body.push(0xa5);
        body.extend_from_slice(b"fatal");
        body.push(0xa5);
        body.extend_from_slice(b"error");
        body.extend(std::iter::repeat_n(0x91, depth));
        body.push(0xc0);
        let decode = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || decode_message(&body))
            .expect("thread");
        let decoded = decode.join().expect("decoding returned");
        assert!(matches!(decoded, Err(ProtocolError::Decode(_))), "depth {depth}: {decoded:?}");
    }
}

#[test]
fn outcome_strings_are_the_serde_wire_names() {
    for outcome in Outcome::ALL {
        let wire = serde_json::to_value(outcome).expect("serializes");
        assert_eq!(wire, outcome.as_str(), "{outcome:?}");
        let back: Outcome = serde_json::from_value(wire).expect("deserializes");
        assert_eq!(back, *outcome);
    }
}
