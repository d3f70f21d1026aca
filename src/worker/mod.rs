//! One worker: an nsjail process running a warm Python zygote, and the typed
//! conversation with it over its control socket.
//!
//! A `Worker` starts, waits for `ready`, runs scripts one at a time, and
//! knows whether it is still healthy. It never sees HTTP; it does not decide
//! when it is replaced (the pool and supervisor do).
//!
//! Faults of the worker's own processes are found here: a dead jail by its
//! closed socket, a stopped one (SIGSTOP) by the state in `/proc` of nsjail
//! and of the zygote, sampled every [`STOP_POLL`] during a run and by the
//! supervisor while idle; faults below the zygote arrive as the zygote's
//! `pyexec zygote: fault ...` log lines. Each is reported once to the
//! [`FaultSink`] the pool passes in.

pub mod cgroup;
mod faults;
mod notebook;
pub mod nsjail;
pub mod seccomp_policy;
mod spawn;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio::process::Child;
use tokio_util::codec::Framed;

use crate::config::SandboxConfig;
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::{
    FrameCodec, FromWorker, InputFile, Outcome, ProtocolError, ReadyInfo, RunReport, RunRequest, ToWorker,
};
use cgroup::delegated::{self, CapHits, WorkerCgroup};
use cgroup::CgroupPlan;
use faults::{proc_state, ProcState};
pub use faults::{Component, FaultSink};
pub use notebook::Cell;
pub use spawn::StderrTail;

/// How long past a run's own timeout the zygote may take to report before
/// the whole worker is killed. The zygote enforces the timeout itself; this
/// only catches a wedged (running, not stopped) zygote. It leaves room for
/// the zygote's own retries of spares lost before user code started
/// (1.5 s each at most, see `session.START_TIMEOUT_S`).
pub const RUN_GRACE: Duration = Duration::from_secs(5);

/// How often the state of nsjail and the zygote is sampled for a stop.
pub const STOP_POLL: Duration = Duration::from_millis(200);
/// Consecutive samples a process must be seen stopped before the worker is
/// declared hung: a stop is found within `STOP_SAMPLES * STOP_POLL` (plus
/// one poll of phase), 0.6 s.
pub const STOP_SAMPLES: u32 = 2;

/// The counter a worker's cgroup keeps that a run is judged or the worker
/// recycled by.
enum MemoryWatch {
    /// Per-run leaves: hits of the worker's own cap (the zygote reads the
    /// run's leaf for the verdict).
    CapHits(CapHits),
    /// No per-run leaf: the worker cgroup's `oom_kill` counter file.
    OomKills(PathBuf),
}

/// Why a worker was taken out of service (or returned to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecycleReason {
    /// A run finished and the worker went back to the pool.
    RunFinished,
    /// The zygote did not report within the deadline.
    Timeout,
    /// The kernel OOM-killed in the worker's cgroup beyond what a run's own
    /// limit explains: the worker ran short of memory.
    MemoryLimit,
    /// The worker process died or closed its socket.
    Crash,
    /// The worker sent something the protocol does not allow.
    ProtocolError,
    /// A worker could not be started.
    StartupFailure,
    /// nsjail or the zygote was stopped (SIGSTOP) and did not continue.
    Stopped,
}

impl RecycleReason {
    /// Every reason, for pre-registering metric labels.
    pub const ALL: [Self; 7] = [
        Self::RunFinished,
        Self::Timeout,
        Self::MemoryLimit,
        Self::Crash,
        Self::ProtocolError,
        Self::StartupFailure,
        Self::Stopped,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::RunFinished => "run_finished",
            Self::Timeout => "timeout",
            Self::MemoryLimit => "memory_limit",
            Self::Crash => "crash",
            Self::ProtocolError => "protocol_error",
            Self::StartupFailure => "startup_failure",
            Self::Stopped => "stopped",
        }
    }
}

/// What went wrong with a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// nsjail could not be executed.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program we tried.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The jail exited before the zygote said ready.
    #[error("worker {worker} exited before it was ready ({status}); its last messages: {stderr}")]
    ExitedBeforeReady {
        /// Worker id.
        worker: u64,
        /// Exit status as text.
        status: String,
        /// The last lines of its stderr.
        stderr: String,
    },
    /// The zygote reported that it cannot work.
    #[error("worker {worker} cannot run scripts: {error}")]
    Fatal {
        /// Worker id.
        worker: u64,
        /// The zygote's explanation.
        error: String,
    },
    /// The zygote took too long to import numpy and pandas.
    #[error("worker {worker} was not ready after {after:?}; its last messages: {stderr}")]
    StartTimeout {
        /// Worker id.
        worker: u64,
        /// The limit.
        after: Duration,
        /// The last lines of its stderr.
        stderr: String,
    },
    /// The zygote broke the protocol.
    #[error("worker {worker} broke the protocol: {source}")]
    Protocol {
        /// Worker id.
        worker: u64,
        /// What was wrong.
        source: ProtocolError,
    },
    /// The zygote did not report a run within its deadline plus grace.
    #[error("worker {worker} did not report within {after:?}")]
    Unresponsive {
        /// Worker id.
        worker: u64,
        /// The deadline.
        after: Duration,
    },
    /// The worker process died during a conversation.
    #[error("worker {worker} died ({component} gone): {stderr}")]
    Crashed {
        /// Worker id.
        worker: u64,
        /// Which process went first, as far as its exit status tells.
        component: Component,
        /// The last lines of its stderr.
        stderr: String,
    },
    /// The worker's own cgroup (per-run leaves) could not be made.
    #[error("worker {worker}: {source}")]
    Cgroup {
        /// Worker id.
        worker: u64,
        /// What failed, and what to do.
        source: cgroup::CgroupError,
    },
    /// nsjail or the zygote stayed stopped (SIGSTOP) during a run.
    #[error("worker {worker}: its {component} (pid {pid}) is stopped")]
    Stopped {
        /// Worker id.
        worker: u64,
        /// The stopped process.
        component: Component,
        /// Its host pid.
        pid: u32,
    },
}

impl WorkerError {
    /// The metrics reason when this error takes a worker out of service.
    pub fn reason(&self) -> RecycleReason {
        match self {
            Self::Spawn { .. }
            | Self::Cgroup { .. }
            | Self::ExitedBeforeReady { .. }
            | Self::Fatal { .. }
            | Self::StartTimeout { .. } => RecycleReason::StartupFailure,
            Self::Protocol { .. } => RecycleReason::ProtocolError,
            Self::Unresponsive { .. } => RecycleReason::Timeout,
            Self::Crashed { .. } => RecycleReason::Crash,
            Self::Stopped { .. } => RecycleReason::Stopped,
        }
    }

    /// The process at fault, for `pyexec_worker_faults_total`, when this
    /// error is a fault of the worker's own processes (not a start failure).
    pub fn component(&self) -> Option<Component> {
        match self {
            Self::Crashed { component, .. } | Self::Stopped { component, .. } => Some(*component),
            Self::Protocol { .. } | Self::Unresponsive { .. } => Some(Component::Zygote),
            Self::Spawn { .. }
            | Self::Cgroup { .. }
            | Self::ExitedBeforeReady { .. }
            | Self::Fatal { .. }
            | Self::StartTimeout { .. } => None,
        }
    }
}

/// One run's inputs, as the pool hands them to a worker.
#[derive(Debug, Clone)]
pub struct Job {
    /// The user's script.
    pub script: String,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Memory the run may allocate on top of the warm interpreter.
    pub memory_bytes: u64,
    /// Most stdout/stderr kept.
    pub max_output_bytes: u64,
    /// Largest serialized result.
    pub max_result_bytes: u64,
    /// Files placed in the run's `/tmp` before the script runs.
    pub files: Vec<InputFile>,
    /// Most figures returned.
    pub max_figures: u64,
    /// Most PNG bytes of all figures together.
    pub max_figures_bytes: u64,
}

/// A live, ready worker.
pub struct Worker {
    id: u64,
    child: Child,
    io: Framed<UnixStream, FrameCodec>,
    stderr: StderrTail,
    info: ReadyInfo,
    /// What the worker's cgroup says about memory during a run.
    memory_watch: Option<MemoryWatch>,
    cgroup_dirs: Vec<PathBuf>,
    next_run: u64,
    in_run: bool,
    broken: Option<RecycleReason>,
    pids: Pids,
    faults: FaultSink,
    /// Consecutive idle checks that found a process of the jail stopped.
    stopped_seen: AtomicU32,
}

/// Host pids of the two processes the supervisor watches.
#[derive(Debug, Clone, Copy)]
struct Pids {
    nsjail: Option<u32>,
    zygote: Option<u32>,
}

impl Pids {
    fn each(self) -> impl Iterator<Item = (Component, u32)> {
        [(Component::Nsjail, self.nsjail), (Component::Zygote, self.zygote)]
            .into_iter()
            .filter_map(|(component, pid)| pid.map(|pid| (component, pid)))
    }

    /// The first process found dead or stopped, if any.
    fn fault(self) -> Option<(Component, u32, ProcState)> {
        self.each().find_map(|(component, pid)| match proc_state(pid) {
            ProcState::Running => None,
            state => Some((component, pid, state)),
        })
    }
}

/// Why an idle worker must be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleFault {
    /// The recycle reason (crash or stopped).
    pub reason: RecycleReason,
    /// The process at fault.
    pub component: Component,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("id", &self.id).field("pid", &self.child.id()).finish()
    }
}

impl Worker {
    /// Starts a jail and waits until its zygote is warm.
    ///
    /// # Errors
    /// Any [`WorkerError`] of the start-up family: the process cannot start,
    /// exits, reports `fatal`, speaks another version, or is too slow.
    pub async fn start(
        id: u64,
        cfg: &SandboxConfig,
        cgroup: &CgroupPlan,
        faults: FaultSink,
    ) -> Result<Self, WorkerError> {
        let delegated = if cgroup.run_leaves(cfg.run_cgroup) {
            let pids = cgroup::worker_pids(cfg.max_processes);
            WorkerCgroup::create(cgroup, id, cfg.uid, cfg.worker_memory_bytes, pids)
                .map_err(|source| WorkerError::Cgroup { worker: id, source })?
        } else {
            None
        };
        let dirs = delegated.as_ref().map(|d| d.dirs.clone());
        let started = Self::start_jail(id, cfg, cgroup, faults, delegated).await;
        if let (Err(_), Some(dirs)) = (&started, dirs) {
            // The jail is dead or dying (its Child was dropped: killed).
            tokio::spawn(remove_cgroups(id, dirs));
        }
        started
    }

    async fn start_jail(
        id: u64,
        cfg: &SandboxConfig,
        cgroup: &CgroupPlan,
        faults: FaultSink,
        delegated: Option<WorkerCgroup>,
    ) -> Result<Self, WorkerError> {
        let spawned = spawn::spawn(id, &nsjail::render(cfg, cgroup), faults.clone(), delegated.as_ref())?;
        let mut io = Framed::new(spawned.control, FrameCodec::new(cfg.max_frame_bytes));
        let mut child = spawned.child;
        let stderr = spawned.stderr;
        let first = tokio::time::timeout(cfg.start_timeout, io.next()).await;
        let info = match first {
            Err(_) => {
                return Err(WorkerError::StartTimeout {
                    worker: id,
                    after: cfg.start_timeout,
                    stderr: stderr.joined(),
                })
            }
            Ok(Some(Ok(FromWorker::Ready(info)))) if info.version == PROTOCOL_VERSION => info,
            Ok(Some(Ok(FromWorker::Ready(info)))) => {
                let source = ProtocolError::Version { expected: PROTOCOL_VERSION, got: info.version };
                return Err(WorkerError::Protocol { worker: id, source });
            }
            Ok(Some(Ok(FromWorker::Fatal { error }))) => {
                return Err(WorkerError::Fatal { worker: id, error })
            }
            Ok(Some(Ok(other))) => {
                let source = ProtocolError::Unexpected { expected: "ready", got: other.kind().into() };
                return Err(WorkerError::Protocol { worker: id, source });
            }
            Ok(Some(Err(source))) => return Err(WorkerError::Protocol { worker: id, source }),
            Ok(None) => {
                // Give stderr a moment to drain so the message says why.
                let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                let status = match status {
                    Ok(Ok(status)) => status.to_string(),
                    _ => "still running, socket closed".into(),
                };
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(WorkerError::ExitedBeforeReady { worker: id, status, stderr: stderr.joined() });
            }
        };
        let nsjail_pid = child.id();
        let zygote_pid = nsjail_pid.and_then(jailed_pid);
        let (memory_watch, cgroup_dirs) = match delegated {
            // Its fds were the jail's to keep; ours close here.
            Some(delegated) => (Some(MemoryWatch::CapHits(delegated.cap_hits)), delegated.dirs),
            None => (
                zygote_pid.and_then(|pid| cgroup.oom_events_file(pid)).map(MemoryWatch::OomKills),
                zygote_pid.map(|pid| cgroup.leaf_dirs(pid)).unwrap_or_default(),
            ),
        };
        Ok(Self {
            id,
            child,
            io,
            stderr,
            info,
            memory_watch,
            cgroup_dirs,
            next_run: 1,
            in_run: false,
            broken: None,
            pids: Pids { nsjail: nsjail_pid, zygote: zygote_pid },
            faults,
            stopped_seen: AtomicU32::new(0),
        })
    }

    /// The worker's id (unique for the life of the service).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What the zygote said about itself.
    pub fn info(&self) -> &ReadyInfo {
        &self.info
    }

    /// Why the worker must not be reused, if it must not.
    pub fn broken(&self) -> Option<RecycleReason> {
        self.broken
    }

    /// Whether the worker may serve another run.
    pub fn is_healthy(&mut self) -> bool {
        // A run abandoned half-way (its future dropped) leaves an answer in
        // flight that would be read as the next run's: never reuse that.
        self.broken.is_none() && !self.in_run && matches!(self.child.try_wait(), Ok(None))
    }

    /// The supervisor's idle check (it holds the pool's lock: no waiting
    /// here, two small `/proc` reads). `Some` when the worker must be
    /// replaced: a process of the jail is gone, or has been stopped for
    /// [`STOP_SAMPLES`] consecutive checks. The fault is reported to the sink.
    pub fn idle_fault(&self) -> Option<IdleFault> {
        let fault = match self.pids.fault() {
            None => {
                self.stopped_seen.store(0, Ordering::Relaxed);
                return None;
            }
            Some((component, _, ProcState::Gone)) => IdleFault { reason: RecycleReason::Crash, component },
            Some((component, _, _)) => {
                if self.stopped_seen.fetch_add(1, Ordering::Relaxed) + 1 < STOP_SAMPLES {
                    return None;
                }
                IdleFault { reason: RecycleReason::Stopped, component }
            }
        };
        (self.faults)(fault.component);
        Some(fault)
    }

    /// Runs one script and returns the zygote's report. A run that fails
    /// (timeout, memory, crash inside the run) is still `Ok`: the verdict is in
    /// the report. `Err` means the *worker* failed; it is then marked broken.
    ///
    /// # Errors
    /// [`WorkerError::Unresponsive`], [`WorkerError::Crashed`] or
    /// [`WorkerError::Protocol`].
    pub async fn run(&mut self, job: Job) -> Result<RunReport, WorkerError> {
        let id = self.next_run;
        self.next_run += 1;
        let deadline = job.timeout + RUN_GRACE;
        let request = ToWorker::Run(RunRequest {
            id,
            script: job.script,
            timeout_ms: u64::try_from(job.timeout.as_millis()).unwrap_or(u64::MAX),
            memory_bytes: job.memory_bytes,
            max_output_bytes: job.max_output_bytes,
            max_result_bytes: job.max_result_bytes,
            files: job.files,
            max_figures: job.max_figures,
            max_figures_bytes: job.max_figures_bytes,
        });
        self.exchange(request, id, deadline).await
    }

    /// Sends one request and waits up to `deadline` for its `result`
    /// (shared by runs and by session openings and cells).
    pub(crate) async fn exchange(
        &mut self,
        request: ToWorker,
        id: u64,
        deadline: Duration,
    ) -> Result<RunReport, WorkerError> {
        let mut memory_before = self.memory_count();
        if let Some(MemoryWatch::CapHits(hits @ CapHits::V1(_))) = &self.memory_watch {
            // v1's hit is a peak, which outlives the moment: start from the
            // usage now (only when a peak still sits at the cap).
            if memory_before > 0 {
                hits.reset();
                memory_before = hits.read();
            }
        }
        self.in_run = true;
        let pids = self.pids;
        let io = &mut self.io;
        let exchange = tokio::time::timeout(deadline, async {
            io.send(&request).await?;
            io.next().await.ok_or(ProtocolError::Closed)?
        });
        let answer = tokio::select! {
            answer = exchange => answer,
            (component, pid) = wait_for_stop(pids) => {
                self.in_run = false;
                return Err(self.fail(WorkerError::Stopped { worker: self.id, component, pid }));
            }
        };
        self.in_run = false;
        let mut report = match answer {
            Err(_) => return Err(self.fail(WorkerError::Unresponsive { worker: self.id, after: deadline })),
            Ok(Ok(FromWorker::Result(report))) if report.id == id => report,
            Ok(Ok(other)) => {
                let got = match &other {
                    FromWorker::Result(r) => format!("result for run {} (expected {id})", r.id),
                    other => other.kind().to_string(),
                };
                let source = ProtocolError::Unexpected { expected: "result", got };
                return Err(self.fail(WorkerError::Protocol { worker: self.id, source }));
            }
            Ok(Err(ProtocolError::Closed | ProtocolError::Io(_))) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let component = self.who_died();
                let crashed =
                    WorkerError::Crashed { worker: self.id, component, stderr: self.stderr.joined() };
                return Err(self.fail(crashed));
            }
            Ok(Err(source)) => return Err(self.fail(WorkerError::Protocol { worker: self.id, source })),
        };
        let rose = self.memory_count() > memory_before;
        if rose && matches!(self.memory_watch, Some(MemoryWatch::CapHits(_))) {
            // The zygote judged the run by its own leaf (`memory_limit` when
            // the leaf's limit was hit, `worker_lost` for a kill the leaf's
            // limit does not explain). A charge that ran into the worker's
            // own cap during a run that kept within its limit means the
            // worker ran short (the zygote grew, or the cap was lowered): it
            // is replaced, with a fresh cgroup.
            match &self.memory_watch {
                // The run's own overdraw reached the cap too: accounted for.
                Some(MemoryWatch::CapHits(hits)) if report.outcome == Outcome::MemoryLimit => hits.reset(),
                _ => {
                    (self.faults)(Component::WorkerMemory);
                    self.broken = Some(RecycleReason::MemoryLimit);
                }
            }
        } else if rose && matches!(report.outcome, Outcome::Killed | Outcome::WorkerLost | Outcome::Ok) {
            // No per-run leaf: the cgroup OOM killer sends SIGKILL, which the
            // zygote can only report as `killed` (or, if it chose the run's
            // init, `worker_lost`). A worker runs one script at a time, so an
            // OOM kill in its cgroup during the run is the run's doing even
            // when main() still returned (it killed only some of the run's
            // children): that, too, is `memory_limit`.
            report.outcome = Outcome::MemoryLimit;
            report.error = Some("the run exceeded the worker's memory limit and was killed".into());
        }
        Ok(report)
    }

    fn fail(&mut self, error: WorkerError) -> WorkerError {
        self.broken = Some(error.reason());
        if let Some(component) = error.component() {
            (self.faults)(component);
        }
        error
    }

    /// After the socket closed: nsjail killed by a signal means nsjail was
    /// hit (the zygote dies with it); otherwise the zygote died and nsjail
    /// exited after it.
    fn who_died(&mut self) -> Component {
        use std::os::unix::process::ExitStatusExt;
        match self.child.try_wait() {
            Ok(Some(status)) if status.signal().is_some() => Component::Nsjail,
            _ => Component::Zygote,
        }
    }

    fn memory_count(&self) -> u64 {
        match &self.memory_watch {
            Some(MemoryWatch::CapHits(hits)) => hits.read(),
            Some(MemoryWatch::OomKills(file)) => cgroup::read_oom_kills(file).unwrap_or(0),
            None => 0,
        }
    }

    /// Stops the worker: closes its socket (the zygote exits on EOF and nsjail
    /// cleans up its cgroup), then kills it if it lingers. Always reaps.
    pub async fn shutdown(mut self, grace: Duration) {
        // Shuts down our write half: the zygote reads EOF and exits.
        let _ = self.io.close().await;
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            // ESRCH (already gone) is fine: kill_on_drop and the reaper do the rest.
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
        // nsjail removes a cgroup it made when it exits normally; one the
        // supervisor made (per-run leaves) is always ours to remove.
        self.remove_cgroups().await;
    }

    /// Sends SIGKILL to the jail now; reaping happens in [`Worker::kill`].
    pub fn kill_now(&mut self) {
        // ESRCH (already gone) is fine.
        let _ = self.child.start_kill();
    }

    /// Kills the worker at once (used when it is wedged) and reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.remove_cgroups().await;
    }

    /// A killed nsjail cannot remove its cgroup; do it once the jail's
    /// processes are gone (the zygote dies with nsjail: parent-death signal).
    async fn remove_cgroups(&self) {
        remove_cgroups(self.id, self.cgroup_dirs.clone()).await;
    }

    /// For a worker about to be dropped (deadpool discards it): kill it now
    /// and remove its cgroup in the background.
    pub fn discard(&mut self) {
        self.kill_now();
        tokio::spawn(remove_cgroups(self.id, std::mem::take(&mut self.cgroup_dirs)));
    }
}

async fn remove_cgroups(worker: u64, dirs: Vec<PathBuf>) {
    for _ in 0..20 {
        if dirs.iter().all(|dir| delegated::remove_tree(dir)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(worker, "could not remove the worker's cgroup; it is swept at the next start");
}

/// Resolves once nsjail or the zygote has been seen stopped at
/// [`STOP_SAMPLES`] consecutive samples [`STOP_POLL`] apart.
async fn wait_for_stop(pids: Pids) -> (Component, u32) {
    let mut seen = 0;
    loop {
        tokio::time::sleep(STOP_POLL).await;
        match pids.fault() {
            Some((component, pid, ProcState::Stopped)) => {
                seen += 1;
                if seen >= STOP_SAMPLES {
                    return (component, pid);
                }
            }
            // A dead process shows as a closed socket, answered there.
            _ => seen = 0,
        }
    }
}

/// The host pid of nsjail's jailed child (the zygote), which names its cgroup.
fn jailed_pid(nsjail_pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{nsjail_pid}/task/{nsjail_pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}
