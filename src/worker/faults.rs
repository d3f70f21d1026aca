//! Faults of a worker's own processes: which process (the [`Component`]),
//! where they are reported (a [`FaultSink`]), and how a process's state is
//! read from `/proc`.
//!
//! Owns the component names (the `component` label of
//! `pyexec_worker_faults_total`) and parsing the zygote's `fault` log lines.
//! Must not: decide what happens to a worker or a request.

use std::sync::Arc;

/// A process of a worker's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The jail itself (pid 1 of nothing: the service's child).
    Nsjail,
    /// The warm interpreter that talks to the supervisor.
    Zygote,
    /// A fork server (or its standby) below the zygote.
    ForkServer,
    /// A spare: a run-init and its runner, before or (init) during a run.
    Spare,
    /// The worker's memory: the kernel OOM-killed in its cgroup beyond what
    /// a run's own limit explains (the worker is replaced).
    WorkerMemory,
}

impl Component {
    /// Every component, for pre-registering metric labels.
    pub const ALL: [Self; 5] =
        [Self::Nsjail, Self::Zygote, Self::ForkServer, Self::Spare, Self::WorkerMemory];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Nsjail => "nsjail",
            Self::Zygote => "zygote",
            Self::ForkServer => "fork_server",
            Self::Spare => "spare",
            Self::WorkerMemory => "worker_memory",
        }
    }

    /// The component a zygote log line reports a fault of: the zygote writes
    /// `pyexec zygote: fault fork_server: ...` or `... fault spare: ...` for
    /// each fault it absorbed. Anything else is `None`.
    pub fn from_log_line(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("pyexec zygote: fault ")?;
        let (word, _) = rest.split_once(':')?;
        match word {
            "fork_server" => Some(Self::ForkServer),
            "spare" => Some(Self::Spare),
            _ => None,
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Where a worker reports each fault of its processes (the pool counts them).
pub type FaultSink = Arc<dyn Fn(Component) + Send + Sync>;

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// Running or sleeping: alive.
    Running,
    /// Stopped by a signal (`T`) or in a tracing stop (`t`).
    Stopped,
    /// No such process, or a zombie (`Z`, `X`): it has exited.
    Gone,
}

/// The state of host pid `pid` (proc(5): the field after the `(comm)`).
pub fn proc_state(pid: u32) -> ProcState {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return ProcState::Gone };
    // comm may contain spaces and parentheses: the state follows the last ')'.
    let state = stat.rfind(')').and_then(|end| stat[end + 1..].trim_start().chars().next());
    match state {
        Some('T' | 't') => ProcState::Stopped,
        Some('Z' | 'X' | 'x') | None => ProcState::Gone,
        Some(_) => ProcState::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zygote_fault_lines_name_their_component() {
        let line = "pyexec zygote: fault fork_server: plain fork server pid 7: it exited";
        assert_eq!(Component::from_log_line(line), Some(Component::ForkServer));
        assert_eq!(Component::from_log_line("pyexec zygote: fault spare: x"), Some(Component::Spare));
        assert_eq!(Component::from_log_line("pyexec zygote: fault zygote: x"), None);
        assert_eq!(Component::from_log_line("pyexec zygote: plain spare failed"), None);
        assert_eq!(Component::from_log_line("fault spare: x"), None);
    }

    #[test]
    fn own_process_runs_and_a_missing_one_is_gone() {
        assert_eq!(proc_state(std::process::id()), ProcState::Running);
        assert_eq!(proc_state(u32::MAX), ProcState::Gone);
    }

    #[test]
    fn a_stopped_child_reads_as_stopped() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let pid = child.id();
        let kill = |signal| {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits"));
            nix::sys::signal::kill(pid, signal).expect("kill(2) a child of ours");
        };
        kill(nix::sys::signal::Signal::SIGSTOP);
        let mut state = ProcState::Running;
        for _ in 0..100 {
            state = proc_state(pid);
            if state == ProcState::Stopped {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(state, ProcState::Stopped);
        kill(nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        assert_eq!(proc_state(pid), ProcState::Gone);
    }
}
