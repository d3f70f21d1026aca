//! Starts one nsjail process: the only place in the service that builds a
//! `Command` or runs code between fork and exec.
//!
//! The child gets an empty environment, its own process group, stdin and
//! stdout on /dev/null, the control socket as fd 3 (with per-run cgroup
//! leaves, the worker cgroup's directories as fds 4 and 5, and nsjail itself
//! moved into the worker cgroup before exec), and a parent-death
//! signal; its stderr (nsjail's and the zygote's own messages, never a run's
//! output) is drained by a task into the log and a short tail kept for error
//! messages.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio_util::codec::{Decoder, FramedRead, LinesCodec, LinesCodecError};

use super::cgroup::delegated::{WorkerCgroup, MEMORY_DIR_FD, PIDS_DIR_FD};
use super::faults::{Component, FaultSink};
use super::nsjail::CONTROL_FD;
use super::WorkerError;

const TAIL_LINES: usize = 20;

/// The last lines a worker wrote to stderr.
#[derive(Clone, Default, Debug)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == TAIL_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }

    /// The kept lines joined with " | ", for one-line error messages.
    pub fn joined(&self) -> String {
        self.0.lock().map(|lines| lines.iter().cloned().collect::<Vec<_>>().join(" | ")).unwrap_or_default()
    }
}

/// A started nsjail process and our end of its control socket.
pub struct Spawned {
    /// The nsjail process (killed if dropped).
    pub child: Child,
    /// Our end of the socketpair.
    pub control: UnixStream,
    /// What it wrote to stderr lately.
    pub stderr: StderrTail,
}

/// Starts `argv[0]` with `argv[1..]`, passing one end of a fresh socketpair
/// as fd 3.
///
/// # Errors
/// When the socketpair cannot be made or the program cannot be executed.
pub fn spawn(
    worker: u64,
    argv: &[OsString],
    faults: FaultSink,
    cgroup: Option<&WorkerCgroup>,
) -> Result<Spawned, WorkerError> {
    let (program, args) = argv.split_first().ok_or(WorkerError::Spawn {
        program: PathBuf::new(),
        source: std::io::Error::other("empty command line"),
    })?;
    let spawn_error = |source| WorkerError::Spawn { program: PathBuf::from(program), source };
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(spawn_error)?;
    let theirs = OwnedFd::from(theirs);
    let theirs_raw = theirs.as_raw_fd();
    // All at or above 10 (delegated.rs), so no dup2 below overwrites them.
    let dir_fds = cgroup.map(|c| [c.dir_fds[0].as_raw_fd(), c.dir_fds[1].as_raw_fd()]);
    let procs_fds: [RawFd; 2] = match cgroup.map(|c| c.procs_fds.as_slice()) {
        Some([one]) => [one.as_raw_fd(), -1],
        Some([memory, pids, ..]) => [memory.as_raw_fd(), pids.as_raw_fd()],
        _ => [-1, -1],
    };

    let mut cmd = Command::new(program);
    cmd.args(args)
        // SECURITY: nothing of the service's environment reaches nsjail.
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Own process group: a signal aimed at the worker never hits us.
        .process_group(0)
        .kill_on_drop(true);
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec. It only makes
    // async-signal-safe syscalls (write, dup2, fcntl, prctl) on descriptors
    // that stay open in the parent until `spawn` returns, and allocates
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            // SECURITY: nsjail joins <worker>/zygote before it exists as a
            // jail: everything it starts is below the worker cap from its
            // first instruction on, and the jail's processes never sit in
            // pyexec's own cgroup.
            for fd in procs_fds.into_iter().filter(|fd| *fd >= 0) {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if theirs_raw == CONTROL_FD {
                // Already fd 3: just let it survive exec.
                if libc::fcntl(CONTROL_FD, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(theirs_raw, CONTROL_FD) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(dirs) = dir_fds {
                for (from, to) in dirs.into_iter().zip([MEMORY_DIR_FD, PIDS_DIR_FD]) {
                    if libc::dup2(from, to) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            // If the service dies, its workers die with it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(spawn_error)?;
    drop(theirs);

    ours.set_nonblocking(true).map_err(spawn_error)?;
    let control = UnixStream::from_std(ours).map_err(spawn_error)?;
    let stderr = StderrTail::default();
    if let Some(pipe) = child.stderr.take() {
        tokio::spawn(drain_stderr(worker, pipe, stderr.clone(), faults));
    }
    Ok(Spawned { child, control, stderr })
}

/// Reads the worker's stderr line by line into the log and the tail. The
/// zygote's `fault` lines (faults it absorbed below itself) are counted.
async fn drain_stderr(worker: u64, pipe: impl AsyncRead + Unpin, tail: StderrTail, faults: FaultSink) {
    let mut lines = FramedRead::new(pipe, StderrLines(LinesCodec::new_with_max_length(MAX_STDERR_LINE)));
    while let Some(Ok(line)) = lines.next().await {
        if let Some(component) = Component::from_log_line(&line) {
            faults(component);
        }
        tracing::warn!(worker, line = %line, "worker stderr");
        tail.push(line);
    }
}

/// The longest stderr line kept.
const MAX_STDERR_LINE: usize = 4096;

/// `LinesCodec` whose per-line errors become a short notice line, so that
/// the stream goes on with the next line: a line longer than
/// `MAX_STDERR_LINE` bytes (so a misbehaving worker cannot grow our memory)
/// or one that is not UTF-8. FramedRead would end the stream at an error
/// and, at the pipe's end, lose the lines still buffered.
struct StderrLines(LinesCodec);

impl StderrLines {
    fn notice(decoded: Result<Option<String>, LinesCodecError>) -> std::io::Result<Option<String>> {
        match decoded {
            Ok(line) => Ok(line),
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                Ok(Some(format!("(a stderr line over {MAX_STDERR_LINE} bytes, dropped)")))
            }
            Err(LinesCodecError::Io(err)) if err.kind() == std::io::ErrorKind::InvalidData => {
                Ok(Some("(a stderr line that is not UTF-8, dropped)".to_owned()))
            }
            Err(LinesCodecError::Io(err)) => Err(err),
        }
    }
}

impl Decoder for StderrLines {
    type Item = String;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<String>> {
        Self::notice(self.0.decode(buf))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<String>> {
        Self::notice(self.0.decode_eof(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stderr_lines_reach_the_tail_and_bad_ones_are_noticed_not_kept() {
        let long = "x".repeat(5000);
        let input = format!("first\n{long}\nafter long\n").into_bytes();
        let mut input = input;
        input.extend_from_slice(b"\xff\xfe\npyexec zygote: fault spare: gone\nno newline at the end");
        let tail = StderrTail::default();
        let counted = Arc::new(Mutex::new(Vec::new()));
        let sink = counted.clone();
        let faults: FaultSink = Arc::new(move |component| sink.lock().expect("lock").push(component));
        drain_stderr(7, input.as_slice(), tail.clone(), faults).await;
        assert_eq!(
            tail.joined(),
            "first | (a stderr line over 4096 bytes, dropped) | after long | \
             (a stderr line that is not UTF-8, dropped) | pyexec zygote: fault spare: gone | no newline at the end"
        );
        assert_eq!(*counted.lock().expect("lock"), vec![Component::Spare]);
    }
}
