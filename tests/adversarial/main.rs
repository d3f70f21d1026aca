//! The adversarial suite: scripts written by an attacker, run against the
//! real service (real nsjail, real Python), each with its expected verdict.
//! After every attack a normal request must be answered correctly and
//! quickly, from a run that starts clean (empty `/tmp`, a process slot to
//! fork into).
//!
//! - [`escapes`]: breaking out of the sandbox or spying on other runs;
//! - [`resources`]: exhausting CPU, memory, processes, disk or output;
//! - [`worker`]: attacking the service through the worker's fds, processes
//!   and signals.
//!
//! HTTP-level abuse (slowloris, slow bodies, idle connections, bad JSON)
//! lives in `tests/http_abuse.rs`; the seccomp deny-list, call by call, in
//! `tests/seccomp.rs`.
//!
//! Run `cargo test --test adversarial -- --nocapture` to see the table of
//! every attack with its verdict.

#[path = "../common/mod.rs"]
mod common;
mod escapes;
mod resources;
mod worker;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::Service;
use serde_json::{json, Value};

/// Defined before every attack script: `refused(f, *args)` and
/// `syscall(name, *args)` return `"ALLOWED"` when the operation succeeded,
/// else the errno's name (`"EPERM"`, `"EROFS"`, ...).
const PRELUDE: &str = r#"import ctypes, errno, os, platform, sys
_libc = ctypes.CDLL(None, use_errno=True)
_NR = {
    'x86_64': {'ptrace': 101, 'mount': 165, 'umount2': 166, 'pivot_root': 155, 'chroot': 161,
               'unshare': 272, 'setns': 308, 'clone': 56, 'bpf': 321, 'perf_event_open': 298,
               'keyctl': 250, 'add_key': 248, 'userfaultfd': 323, 'io_uring_setup': 425,
               'open_by_handle_at': 304, 'init_module': 175, 'kexec_load': 246, 'reboot': 169,
               'process_vm_readv': 310},
    'aarch64': {'ptrace': 117, 'mount': 40, 'umount2': 39, 'pivot_root': 41, 'chroot': 51,
                'unshare': 97, 'setns': 268, 'clone': 220, 'bpf': 280, 'perf_event_open': 241,
                'keyctl': 219, 'add_key': 217, 'userfaultfd': 282, 'io_uring_setup': 425,
                'open_by_handle_at': 265, 'init_module': 105, 'kexec_load': 104, 'reboot': 142,
                'process_vm_readv': 270},
}[platform.machine()]

def _errno_name(number):
    return errno.errorcode.get(number, str(number))

def refused(call, *args):
    try:
        call(*args)
    except OSError as e:
        return _errno_name(e.errno)
    return 'ALLOWED'

def syscall(name, *args):
    ctypes.set_errno(0)
    result = _libc.syscall(_NR[name], *[ctypes.c_long(a) for a in args])
    return 'ALLOWED' if result != -1 else _errno_name(ctypes.get_errno())

"#;

/// What an attack must end in.
pub enum Expect {
    /// 200, and `result` is exactly this.
    Result(Value),
    /// 200, and every value of the `result` object is a refusal (an errno
    /// name or `false`), never `"ALLOWED"` or `true`.
    AllRefused,
    /// 200, and the check (described by the text) accepts the answer.
    Answer(&'static str, fn(&Value) -> bool),
    /// An error answer with this status and kind.
    Kind(u16, &'static str),
    /// Any answer the check (described by the text) accepts.
    Verdict(&'static str, fn(u16, &Value) -> bool),
}

impl Expect {
    fn describe(&self) -> String {
        match self {
            Self::Result(value) => format!("200 {value}"),
            Self::AllRefused => "200, every probe refused".to_string(),
            Self::Answer(text, _) => format!("200, {text}"),
            Self::Kind(status, kind) => format!("{status} {kind}"),
            Self::Verdict(text, _) => (*text).to_string(),
        }
    }

    fn accepts(&self, status: u16, answer: &Value) -> bool {
        match self {
            Self::Kind(want, kind) => status == *want && answer["kind"] == *kind,
            Self::Verdict(_, check) => check(status, answer),
            _ if status != 200 => false,
            Self::Result(value) => answer["result"] == *value,
            Self::AllRefused => answer["result"].as_object().is_some_and(|probes| {
                !probes.is_empty()
                    && probes.values().all(|v| v.as_str().is_some_and(|s| s != "ALLOWED") || *v == false)
            }),
            Self::Answer(_, check) => check(answer),
        }
    }
}

/// One attack: a script (the prelude is prepended), its run timeout, the
/// verdict it must get.
pub struct Attack {
    /// What the attacker tries, as the verdict table shows it.
    pub name: &'static str,
    /// The whole script: [`PRELUDE`] and the attack.
    pub script: String,
    /// The run's timeout in seconds (10 unless the attack needs less).
    pub timeout_secs: f64,
    /// The verdict the attack must get.
    pub expect: Expect,
}

impl Attack {
    /// An attack whose script is `body` after the prelude, with a 10 s timeout.
    pub fn new(name: &'static str, body: &str, expect: Expect) -> Self {
        Self { name, script: format!("{PRELUDE}{body}"), timeout_secs: 10.0, expect }
    }

    /// The same attack with another run timeout.
    pub fn timeout(mut self, secs: f64) -> Self {
        self.timeout_secs = secs;
        self
    }
}

/// The request that must work after every attack: it computes, finds its
/// `/tmp` empty, and can still fork (leftovers would eat the process cap).
const FOLLOW_UP: &str = "import os\ndef main():\n    pid = os.fork()\n    if pid == 0:\n        os._exit(7)\n    _, status = os.waitpid(pid, 0)\n    return {'sum': 2 + 2, 'tmp': os.listdir('/tmp'), 'child_exit': os.waitstatus_to_exitcode(status)}";

/// How long the follow-up may take: generous (the machine may be loaded);
/// it catches a service that is wedged or rebuilding, not a slow one.
const FOLLOW_UP_LIMIT: Duration = Duration::from_secs(5);

/// Asserts that the service answers a normal request correctly and in time.
pub async fn follow_up(service: &Service) -> Result<Duration, String> {
    let started = Instant::now();
    let (status, answer) = service.run(FOLLOW_UP).await;
    let took = started.elapsed();
    let expected = json!({"sum": 4, "tmp": [], "child_exit": 7});
    if status != 200 || answer["result"] != expected {
        return Err(format!("follow-up answered {status} {answer}"));
    }
    if took > FOLLOW_UP_LIMIT {
        return Err(format!("follow-up took {took:?}"));
    }
    Ok(took)
}

/// Runs every attack in turn, each followed by [`follow_up`]; prints the
/// verdict table and fails listing every attack that did not get its verdict.
pub async fn run_all(service: &Service, suite: &str, attacks: Vec<Attack>) {
    let mut table = format!("\n{suite}: attack | expected | got | follow-up\n");
    let mut failures = Vec::new();
    for attack in attacks {
        let body = json!({"script": attack.script, "timeout": attack.timeout_secs});
        let (status, answer) = service.execute_body(body).await;
        let got = summarize(status, &answer);
        let verdict_ok = attack.expect.accepts(status, &answer);
        let after = follow_up(service).await;
        let after_text = match &after {
            Ok(took) => format!("ok in {} ms", took.as_millis()),
            Err(error) => error.clone(),
        };
        let _ = writeln!(table, "{} | {} | {got} | {after_text}", attack.name, attack.expect.describe());
        if !verdict_ok || after.is_err() {
            failures.push(format!(
                "{}: expected {}, got {got}; {after_text}",
                attack.name,
                attack.expect.describe()
            ));
        }
    }
    eprintln!("{table}");
    assert!(failures.is_empty(), "attacks without their verdict:\n{}", failures.join("\n"));
}

/// `200 <result>` or `<status> <kind>: <error>`, cut to one table cell.
fn summarize(status: u16, answer: &Value) -> String {
    let text = if status == 200 {
        format!("200 {}", answer["result"])
    } else {
        format!(
            "{status} {}: {}",
            answer["kind"].as_str().unwrap_or("?"),
            answer["error"].as_str().unwrap_or("")
        )
    };
    text.chars().take(300).collect()
}
