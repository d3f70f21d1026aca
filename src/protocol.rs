//! The supervisor <-> zygote protocol: typed messages and their framing.
//!
//! Frames are a `u32` big-endian length followed by a MessagePack map
//! (`rmp-serde` with named fields, matching Python's `msgpack`). The field
//! order is part of the protocol and pinned by the golden files in
//! `tests/golden/`. Everything decoded here comes from a sandbox and is
//! untrusted: the length is checked against the maximum before anything is
//! allocated, and any malformed frame is a [`ProtocolError`], never a panic.
//!
//! This module knows nothing of processes, pools or HTTP.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec, LengthDelimitedCodecError};

/// Deepest nesting a worker's message may have: ours have two levels (the
/// message map, a field's value); anything deeper is malformed.
const MAX_MESSAGE_DEPTH: usize = 16;

/// Version the zygote must announce in its `ready` message.
pub const PROTOCOL_VERSION: u32 = 2;

/// A message from the supervisor to a zygote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// Run one script in a fresh isolated child.
    Run(RunRequest),
    /// Turn a spare into this worker's notebook session (a kept-alive
    /// run); the zygote answers `result` (`ok`, or why not).
    Session(SessionRequest),
    /// The next cell of this worker's session; the zygote answers `result`
    /// with `display` and `session_ended`.
    Cell(CellRequest),
    /// Health probe; the zygote answers `pong` with the same id.
    Ping {
        /// Echoed back.
        id: u64,
    },
}

/// A script and the limits it runs under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    /// Correlates the result with the request.
    pub id: u64,
    /// The user's Python source.
    pub script: String,
    /// Wall-clock limit, enforced by the zygote (and, with grace, by us).
    pub timeout_ms: u64,
    /// Memory the run may allocate on top of the warm interpreter.
    pub memory_bytes: u64,
    /// Most stdout (and, separately, stderr) kept.
    pub max_output_bytes: u64,
    /// Largest serialized result.
    pub max_result_bytes: u64,
    /// Files the runner writes into the run's `/tmp` before the script
    /// runs (names already validated by the HTTP layer).
    pub files: Vec<InputFile>,
    /// Most figures returned.
    pub max_figures: u64,
    /// Most PNG bytes of all returned figures together.
    pub max_figures_bytes: u64,
}

/// Opens a notebook session on a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// Correlates the result with the request.
    pub id: u64,
    /// Memory the whole session may allocate on top of the warm interpreter.
    pub memory_bytes: u64,
    /// CPU backstop for the session's whole life (its maximum lifetime).
    pub timeout_ms: u64,
    /// Files written into the session's `/tmp` before the first cell.
    pub files: Vec<InputFile>,
}

/// One cell of a notebook session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellRequest {
    /// Correlates the result with the request.
    pub id: u64,
    /// The cell's Python source.
    pub script: String,
    /// Wall-clock limit of this cell; passing it ends the session.
    pub timeout_ms: u64,
    /// Most stdout (and, separately, stderr) kept.
    pub max_output_bytes: u64,
    /// Largest serialized value of the last expression.
    pub max_result_bytes: u64,
    /// Most figures returned.
    pub max_figures: u64,
    /// Most PNG bytes of all returned figures together.
    pub max_figures_bytes: u64,
}

/// One input file of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFile {
    /// A plain file name (no `/`, not `.` or `..`).
    pub name: String,
    /// The file's bytes (msgpack `bin`).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A message from a zygote to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    /// The zygote is warm and its first isolated spare exists.
    Ready(ReadyInfo),
    /// The zygote cannot go on (e.g. namespaces cannot be created).
    Fatal {
        /// What failed, for the operator.
        error: String,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's id.
        id: u64,
    },
    /// The verdict of one run.
    Result(RunReport),
}

/// What a zygote tells about itself once warm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyInfo {
    /// Must equal [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The zygote's pid inside its jail.
    pub pid: i64,
    /// Python version of the sandbox.
    pub python: String,
    /// numpy version.
    pub numpy: String,
    /// pandas version.
    pub pandas: String,
}

crate::vocabulary::vocabulary! {
/// How a run ended, as the zygote saw it. The strings are the msgpack
/// wire values (serde's snake_case names; `protocol_tests.rs` checks they
/// agree) and the Python worker's `Outcome` (`tests/vocabulary.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// main() returned a JSON value.
    Ok = "ok",
    /// The script does not compile.
    SyntaxError = "syntax_error",
    /// No callable `main` after the script ran.
    MissingMain = "missing_main",
    /// An uncaught exception (including `SystemExit`).
    RuntimeError = "runtime_error",
    /// main() returned something that is not JSON.
    ResultNotJson = "result_not_json",
    /// The serialized result is over the limit.
    ResultTooLarge = "result_too_large",
    /// The run hit its wall-clock (or CPU) limit.
    Timeout = "timeout",
    /// The run hit its memory limit.
    MemoryLimit = "memory_limit",
    /// The run died by a signal or exited without a result.
    Killed = "killed",
    /// Not the script's doing: the zygote lost the run's sandbox (its init
    /// was killed from outside, or every spare tried died before user code
    /// started). The supervisor retries once, then answers 503.
    WorkerLost = "worker_lost",
}
}

/// The zygote's report of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The request's id.
    pub id: u64,
    /// The verdict.
    pub outcome: Outcome,
    /// UTF-8 JSON text of main()'s value, when `outcome` is `ok`.
    #[serde(with = "serde_bytes")]
    pub result: Option<Vec<u8>>,
    /// Human-readable error message.
    pub error: Option<String>,
    /// The user's traceback, for runtime errors.
    pub traceback: Option<String>,
    /// Captured fd 1, already cut at the limit.
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    /// Captured fd 2, already cut at the limit.
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    /// Whether stdout was cut.
    pub stdout_truncated: bool,
    /// Whether stderr was cut.
    pub stderr_truncated: bool,
    /// Run time measured by the zygote.
    pub duration_ms: f64,
    /// What the run consumed; `None` only in reports the service made up
    /// for a worker that failed.
    pub usage: Option<Usage>,
    /// Figures still open when `main()` returned, rendered as PNG.
    pub figures: Vec<Figure>,
    /// Whether figures were dropped for the count or byte cap.
    pub figures_truncated: bool,
    /// Session cells only: `repr()` of a last expression that is not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// Session answers only: whether the session ended with this answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_ended: Option<bool>,
}

impl RunReport {
    /// A report the service makes up (no run, no output): `outcome` with
    /// `error` as its message.
    pub fn synthesized(outcome: Outcome, error: Option<String>) -> Self {
        Self {
            id: 0,
            outcome,
            result: None,
            error,
            traceback: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            duration_ms: 0.0,
            usage: None,
            figures: Vec::new(),
            figures_truncated: false,
            display: None,
            session_ended: None,
        }
    }
}

/// Resources one run used (see `docs/internals.md`, "Resource usage").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Wall-clock time of the run, in milliseconds.
    pub wall_ms: f64,
    /// User + system CPU time of the run's processes, in milliseconds;
    /// `None` when the run was killed before anything could measure it.
    pub cpu_ms: Option<f64>,
    /// Peak resident set of the runner, in KiB (pages shared with the
    /// warm zygote included); `None` when unknown.
    pub max_rss_kib: Option<u64>,
}

/// Image formats a figure comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FigureFormat {
    /// Portable Network Graphics.
    Png,
}

/// One rendered figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The image format of `data`.
    pub format: FigureFormat,
    /// The encoded image (msgpack `bin`).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl FromWorker {
    /// The message's `type` tag, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ready(_) => "ready",
            Self::Fatal { .. } => "fatal",
            Self::Pong { .. } => "pong",
            Self::Result(_) => "result",
        }
    }
}

/// Why a frame could not be sent or understood.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket failed.
    #[error("control socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// A frame over the maximum (announced by the peer, or ours to send).
    #[error("frame exceeds the {max}-byte maximum")]
    FrameTooLarge {
        /// Configured maximum.
        max: u64,
    },
    /// The body is not a message we know.
    #[error("undecodable frame: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// We could not encode a message (a bug).
    #[error("cannot encode frame: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The peer closed the socket.
    #[error("the worker closed its control socket")]
    Closed,
    /// A valid message, but not the one the conversation needs now.
    #[error("expected a {expected} message, got {got}")]
    Unexpected {
        /// What we waited for.
        expected: &'static str,
        /// What came.
        got: String,
    },
    /// The zygote speaks another protocol version.
    #[error("worker speaks protocol version {got}, this service speaks {expected}")]
    Version {
        /// Ours.
        expected: u32,
        /// Theirs.
        got: u32,
    },
}

/// Length-prefixed MessagePack framing with a hard maximum.
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
    max: u64,
}

impl FrameCodec {
    /// A codec that refuses frames over `max_frame_bytes` in both directions.
    pub fn new(max_frame_bytes: u64) -> Self {
        let max_len = usize::try_from(max_frame_bytes).unwrap_or(usize::MAX);
        let inner = LengthDelimitedCodec::builder()
            .big_endian()
            .length_field_length(4)
            .max_frame_length(max_len)
            .new_codec();
        Self { inner, max: max_frame_bytes }
    }
}

impl Decoder for FrameCodec {
    type Item = FromWorker;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<FromWorker>, ProtocolError> {
        // The inner codec checks the announced length against the maximum
        // before reserving anything for the body.
        match self.inner.decode(src) {
            Ok(Some(body)) => decode_message(&body).map(Some),
            Ok(None) => Ok(None),
            Err(error) if error.get_ref().is_some_and(|e| e.is::<LengthDelimitedCodecError>()) => {
                Err(ProtocolError::FrameTooLarge { max: self.max })
            }
            Err(error) => Err(ProtocolError::Io(error)),
        }
    }
}

impl Encoder<&ToWorker> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, msg: &ToWorker, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let body = rmp_serde::to_vec_named(msg)?;
        if body.len() as u64 > self.max {
            return Err(ProtocolError::FrameTooLarge { max: self.max });
        }
        self.inner.encode(Bytes::from(body), dst)?;
        Ok(())
    }
}

/// Decodes one frame body (the MessagePack map, without its length
/// prefix) from a worker.
///
/// # Errors
/// [`ProtocolError::Decode`] when the bytes are not a message we know.
pub fn decode_message(body: &[u8]) -> Result<FromWorker, ProtocolError> {
    // SECURITY: decoding recurses once per nesting level. At rmp-serde's
    // default limit (1024 levels) a compromised worker's frame needs
    // 256-512 KiB of stack in a release build and more than a tokio
    // worker's 2 MiB in a debug build (measured); a stack overflow aborts
    // the whole service. Our messages nest two levels.
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(body);
    deserializer.set_max_depth(MAX_MESSAGE_DEPTH);
    Ok(FromWorker::deserialize(&mut deserializer)?)
}

/// Encodes any message as one complete frame (used by tests and tools).
///
/// # Errors
/// When the message cannot be serialized.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    let body = rmp_serde::to_vec_named(msg)?;
    let len =
        u32::try_from(body.len()).map_err(|_| ProtocolError::FrameTooLarge { max: u64::from(u32::MAX) })?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
