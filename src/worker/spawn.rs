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

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::process::{Child, ChildStderr, Command};

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

/// Reads the worker's stderr in bounded chunks: a line longer than
/// `MAX_LINE` is cut, so a misbehaving worker cannot grow our memory. The
/// zygote's `fault` lines (faults it absorbed below itself) are counted.
async fn drain_stderr(worker: u64, mut pipe: ChildStderr, tail: StderrTail, faults: FaultSink) {
    const MAX_LINE: usize = 4096;
    let emit = |line: &[u8]| {
        let line = String::from_utf8_lossy(line).into_owned();
        if let Some(component) = Component::from_log_line(&line) {
            faults(component);
        }
        tracing::warn!(worker, line = %line, "worker stderr");
        tail.push(line);
    };
    let mut chunk = [0u8; 8192];
    let mut line = Vec::with_capacity(256);
    while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
        for &byte in &chunk[..n] {
            if byte == b'\n' {
                emit(&line);
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(byte);
            }
        }
    }
    if !line.is_empty() {
        emit(&line);
    }
}
