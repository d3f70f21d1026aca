//! Runs one probe program (nsjail, the sandbox Python) with a clean
//! environment, no stdin and a deadline, and returns what it printed.
//! The only process spawning of the doctor.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a probe gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The program could not be started.
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// It ran past its deadline and was killed.
    #[error("{} did not finish within {} s (killed)", program.display(), timeout.as_secs())]
    Timeout {
        /// The program.
        program: PathBuf,
        /// The deadline.
        timeout: Duration,
    },
}

/// What a probe printed and how it ended.
#[derive(Debug)]
pub struct Output {
    /// Exit status 0.
    pub success: bool,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// The last non-empty line of stderr (where programs put the reason), or
    /// of stdout when stderr is empty, capped for a one-line report.
    pub fn reason(&self) -> String {
        let last = |text: &str| {
            text.lines().rev().find(|line| !line.trim().is_empty()).map(str::trim).map(String::from)
        };
        let line = last(&self.stderr).or_else(|| last(&self.stdout)).unwrap_or_else(|| "no output".into());
        line.chars().take(300).collect()
    }
}

/// Runs `argv` (program first) with only `env`, waits at most `timeout`.
///
/// # Errors
/// [`ProbeError`] when it cannot start or overruns its deadline.
pub fn run(argv: &[OsString], env: &[(&str, &str)], timeout: Duration) -> Result<Output, ProbeError> {
    let program = PathBuf::from(argv.first().cloned().unwrap_or_default());
    let mut child = Command::new(&program)
        .args(argv.iter().skip(1))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group: a timeout kills the probe and all it started.
        .process_group(0)
        .spawn()
        .map_err(|source| ProbeError::Spawn { program: program.clone(), source })?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                // At most 1 MiB: a chatty probe cannot grow the doctor's memory.
                let _ = pipe.by_ref().take(1 << 20).read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(child.stdout.take().map(|pipe| Box::new(pipe) as Box<dyn Read + Send>));
    let stderr = reader(child.stderr.take().map(|pipe| Box::new(pipe) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => break None,
        }
    };
    // Whatever the probe left in its group (it could hold the pipes open)
    // goes too; ESRCH (nothing left) is fine.
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let Some(status) = status else {
        let _ = child.wait();
        return Err(ProbeError::Timeout { program, timeout });
    };
    Ok(Output {
        success: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}
