//! Renders the nsjail command line of one worker: a pure function of the
//! sandbox config, asserted as data in the tests below.
//!
//! Every choice here is a sandbox-boundary decision; each carries a
//! `SECURITY:` note saying what it stops. The per-run namespaces, mounts and
//! rlimits are set inside the jail by the zygote (see `worker/`).

use std::ffi::OsString;
use std::path::Path;

use super::cgroup::{self, delegated, CgroupPlan};
use crate::config::SandboxConfig;

/// Where `worker_dir` appears inside the jail.
pub const JAIL_WORKER_DIR: &str = "/pyexec/worker";
/// The fd number the control socket gets in the zygote.
pub const CONTROL_FD: i32 = 3;

fn venv_root(python: &Path) -> &Path {
    // <venv>/bin/python3 -> <venv>
    python.parent().and_then(Path::parent).unwrap_or(Path::new("/"))
}

/// The Kafel policy text for `--seccomp_string`, generated from the one
/// policy in [`super::seccomp_policy`].
pub fn jail_seccomp_policy() -> String {
    super::seccomp_policy::jail_kafel_policy()
}

/// The run filter as hex for the zygote's `--seccomp-bpf`; empty when this
/// machine has none, which the zygote refuses (it never runs unfiltered).
fn run_filter_hex() -> String {
    let bytes = super::seccomp_policy::run_filter_bytes().unwrap_or_default();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The full argv (program first) that starts one worker.
pub fn render(cfg: &SandboxConfig, cgroup: &CgroupPlan) -> Vec<OsString> {
    let venv = venv_root(&cfg.python);
    let uid = cfg.uid;
    let mut argv: Vec<OsString> = Vec::with_capacity(96);
    let mut push = |items: &[&str]| argv.extend(items.iter().map(OsString::from));

    push(&["--mode", "o", "--quiet", "--hostname", "pyexec"]);
    // SECURITY: the jail runs as an unprivileged host uid. The explicit
    // inside:outside:count form matters: a bare `--user N` maps to host root.
    let ids = format!("{uid}:{uid}:1");
    push(&["--user", &ids, "--group", &ids]);
    // nsjail's own 600 s default would kill a long-lived worker; the
    // supervisor enforces every run deadline instead.
    push(&["--time_limit", "0"]);
    // nsjail renices jails to 19 by default; runs are latency-sensitive
    // requests, not background work.
    push(&["--nice_level", "0"]);
    // The zygote writes uid maps and mounts a fresh /proc for each run; that
    // needs a writable /proc in the jail. The runs get their own read-only one.
    push(&["--proc_rw"]);
    // Jail-wide rlimits stay high because a process can lower but never raise
    // a hard limit: each run lowers them for itself.
    push(&["--rlimit_as", "inf", "--rlimit_cpu", "inf", "--rlimit_fsize", "inf"]);
    push(&["--rlimit_nofile", "1024", "--rlimit_nproc", "soft", "--rlimit_stack", "soft"]);
    // SECURITY: a jail-wide seccomp policy (Kafel) under the per-run filter
    // (src/worker/seccomp_policy.rs, installed by the zygote): the zygote and fork server, which
    // never run user code, lose these calls too. Defense in depth only.
    let policy = jail_seccomp_policy();
    push(&["--seccomp_string", &policy]);
    let run_leaves = cgroup.run_leaves(cfg.run_cgroup);
    if run_leaves {
        // The supervisor made the worker's cgroup and moved nsjail into it
        // (src/worker/cgroup/delegated.rs): nsjail gets no --cgroup_* flag,
        // only the worker cgroup's directory fds for the fork server.
        let memory_fd = delegated::MEMORY_DIR_FD.to_string();
        let pids_fd = delegated::PIDS_DIR_FD.to_string();
        push(&["--pass_fd", &memory_fd, "--pass_fd", &pids_fd]);
        if matches!(cgroup, CgroupPlan::V2 { .. }) {
            // A cgroup namespace rooted at <worker>/zygote would make every
            // move into a sibling leaf fail under nsdelegate (ENOENT). No
            // wider reach follows: the jail mounts no cgroupfs, and each
            // run gets a cgroup namespace rooted at its own leaf
            // (worker/pyexec_worker/runcgroup.py).
            push(&["--disable_clone_newcgroup"]);
        }
    } else {
        argv.extend(cgroup.nsjail_flags(cfg.worker_memory_bytes, cgroup::worker_pids(cfg.max_processes)));
    }
    let mut push = |items: &[&str]| argv.extend(items.iter().map(OsString::from));
    // SECURITY: the jail sees a minimal read-only tree: /usr (with the usrmerge
    // symlinks), the venv and the worker code. No /etc (so no host users, no
    // Kubernetes-injected hosts/resolv.conf to write), no /home, /root, /var.
    push(&["--tmpfsmount", "/tmp"]);
    // SECURITY: only a mount point: an empty read-only 4 KiB tmpfs the
    // zygote cannot write to. Each run mounts its own size-capped tmpfs over
    // it (worker/pyexec_worker/isolation.py), so no semaphore or segment is
    // shared between runs or with the zygote.
    push(&["-m", "none:/dev/shm:tmpfs:ro,size=4096"]);
    push(&["-R", "/usr", "-s", "usr/bin:/bin", "-s", "usr/lib:/lib", "-s", "usr/lib64:/lib64"]);
    let venv_mount = venv.display().to_string();
    let worker_mount = format!("{}:{JAIL_WORKER_DIR}", cfg.worker_dir.display());
    push(&["-R", &venv_mount, "-R", &worker_mount]);
    push(&["-R", "/dev/null", "-R", "/dev/zero", "-R", "/dev/urandom", "-R", "/dev/random"]);
    let control_fd = CONTROL_FD.to_string();
    push(&["--pass_fd", &control_fd]);
    // SECURITY: a small fixed environment; nothing of the service's own
    // environment (tokens, cloud credentials) reaches the jail.
    let path = format!("PATH={}/bin:/usr/bin:/bin", venv.display());
    // Built by scripts/install.sh (and the Dockerfile) inside the read-only
    // venv: matplotlib's font cache, never rebuilt by a worker or a run.
    let mpl_config = format!("MPLCONFIGDIR={}/mplconfig", venv.display());
    for var in [
        path.as_str(),
        "HOME=/tmp",
        "LANG=C.UTF-8",
        "TMPDIR=/tmp",
        "OPENBLAS_NUM_THREADS=1",
        "OMP_NUM_THREADS=1",
        "MKL_NUM_THREADS=1",
        "PYTHONDONTWRITEBYTECODE=1",
        mpl_config.as_str(),
    ] {
        push(&["-E", var]);
    }
    push(&["--cwd", "/", "--"]);
    let python = cfg.python.display().to_string();
    let zygote = format!("{JAIL_WORKER_DIR}/zygote.py");
    // -E: ignore PYTHON* variables; -s: no user site; -B: no .pyc writes.
    push(&[&python, "-E", "-s", "-B", &zygote]);
    let numbers = [
        ("--control-fd", u64::from(CONTROL_FD.unsigned_abs())),
        ("--max-frame-bytes", cfg.max_frame_bytes),
        ("--tmp-size-bytes", cfg.tmp_size_bytes),
        ("--max-processes", cfg.max_processes),
        ("--max-open-files", cfg.max_open_files),
        ("--max-file-size-bytes", cfg.max_file_size_bytes),
        ("--spares", cfg.spares),
    ];
    for (flag, value) in numbers {
        argv.push(flag.into());
        argv.push(value.to_string().into());
    }
    if run_leaves {
        argv.push("--run-cgroup".into());
        argv.push(cgroup.label().into());
        argv.push("--run-pids".into());
        argv.push(cgroup::run_pids(cfg.max_processes).to_string().into());
    }
    // SECURITY: the run filter, compiled here from the one policy; each run
    // init installs it before the runner exists (worker/pyexec_worker/seccomp.py).
    argv.push("--seccomp-bpf".into());
    argv.push(run_filter_hex().into());
    let mut full = vec![cfg.nsjail.clone().into_os_string()];
    full.extend(argv);
    full
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CgroupMode;
    use std::path::PathBuf;
    use std::time::Duration;

    fn sandbox() -> SandboxConfig {
        SandboxConfig {
            nsjail: PathBuf::from("/opt/pyexec/bin/nsjail"),
            python: PathBuf::from("/opt/pyexec/venv/bin/python3"),
            worker_dir: PathBuf::from("/opt/pyexec/worker"),
            cgroup: CgroupMode::Off,
            cgroup_parent: None,
            run_cgroup: true,
            tmp_size_bytes: 64 << 20,
            max_processes: 32,
            max_open_files: 256,
            max_file_size_bytes: 16 << 20,
            spares: 2,
            uid: 99999,
            max_frame_bytes: 7 << 20,
            worker_memory_bytes: 1 << 30,
            start_timeout: Duration::from_secs(30),
        }
    }

    fn rendered(plan: &CgroupPlan) -> Vec<String> {
        render(&sandbox(), plan).into_iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    fn has_pair(argv: &[String], flag: &str, value: &str) -> bool {
        argv.windows(2).any(|w| w[0] == flag && w[1] == value)
    }

    #[test]
    fn maps_an_explicit_unprivileged_uid() {
        let argv = rendered(&CgroupPlan::Off);
        assert_eq!(argv[0], "/opt/pyexec/bin/nsjail");
        assert!(has_pair(&argv, "--user", "99999:99999:1"));
        assert!(has_pair(&argv, "--group", "99999:99999:1"));
        assert!(has_pair(&argv, "--time_limit", "0"));
        assert!(has_pair(&argv, "--nice_level", "0"));
        assert!(has_pair(&argv, "--pass_fd", "3"));
    }

    #[test]
    fn mounts_only_usr_venv_worker_and_devices() {
        let argv = rendered(&CgroupPlan::Off);
        let mounts: Vec<&str> = argv.windows(2).filter(|w| w[0] == "-R").map(|w| w[1].as_str()).collect();
        assert_eq!(
            mounts,
            [
                "/usr",
                "/opt/pyexec/venv",
                "/opt/pyexec/worker:/pyexec/worker",
                "/dev/null",
                "/dev/zero",
                "/dev/urandom",
                "/dev/random"
            ]
        );
        assert!(!argv.iter().any(|a| a.contains("/etc")));
        assert!(has_pair(&argv, "--tmpfsmount", "/tmp"));
        assert!(has_pair(&argv, "-m", "none:/dev/shm:tmpfs:ro,size=4096"));
    }

    #[test]
    fn environment_is_fixed_and_small() {
        let argv = rendered(&CgroupPlan::Off);
        let jail_flags = &argv[..argv.iter().position(|a| a == "--").expect("has --")];
        let env: Vec<&str> = jail_flags.windows(2).filter(|w| w[0] == "-E").map(|w| w[1].as_str()).collect();
        assert_eq!(env[0], "PATH=/opt/pyexec/venv/bin:/usr/bin:/bin");
        assert!(env.contains(&"OPENBLAS_NUM_THREADS=1"));
        assert!(env.contains(&"MPLCONFIGDIR=/opt/pyexec/venv/mplconfig"));
        assert_eq!(env.len(), 9);
    }

    #[test]
    fn zygote_command_comes_last_with_its_limits() {
        let argv = rendered(&CgroupPlan::Off);
        let dashdash = argv.iter().position(|a| a == "--").expect("has --");
        assert_eq!(
            &argv[dashdash + 1..dashdash + 6],
            ["/opt/pyexec/venv/bin/python3", "-E", "-s", "-B", "/pyexec/worker/zygote.py"]
        );
        let tail = &argv[dashdash..];
        assert!(has_pair(tail, "--control-fd", "3"));
        assert!(has_pair(tail, "--max-frame-bytes", &(7u64 << 20).to_string()));
        assert!(has_pair(tail, "--tmp-size-bytes", &(64u64 << 20).to_string()));
        assert!(has_pair(tail, "--max-processes", "32"));
        assert!(has_pair(tail, "--max-open-files", "256"));
        assert!(has_pair(tail, "--spares", "2"));
        let at = tail.iter().position(|a| a == "--seccomp-bpf").expect("has --seccomp-bpf");
        let hex = &tail[at + 1];
        let bytes = super::super::seccomp_policy::run_filter_bytes().expect("a run filter for this machine");
        assert_eq!(hex.len(), bytes.len() * 2);
        assert!(!bytes.is_empty() && hex.starts_with("20000000"), "starts with ld [arch]: {hex}");
    }

    #[test]
    fn jail_seccomp_policy_refuses_the_zygote_free_subset() {
        let argv = rendered(&CgroupPlan::Off);
        let jail_flags = &argv[..argv.iter().position(|a| a == "--").expect("has --")];
        let at = jail_flags.iter().position(|a| a == "--seccomp_string").expect("has --seccomp_string");
        let policy = &jail_flags[at + 1];
        assert_eq!(policy, &jail_seccomp_policy());
        let body = policy
            .strip_prefix("POLICY pyexec_jail { ERRNO(1) { ")
            .and_then(|rest| rest.strip_suffix(" } } USE pyexec_jail DEFAULT ALLOW"))
            .expect("one ERRNO(1) rule, default allow");
        let names: Vec<&str> = body.split(", ").collect();
        for name in ["ptrace", "process_vm_writev", "bpf", "perf_event_open", "io_uring_setup", "keyctl"] {
            assert!(names.contains(&name), "{name} refused jail-wide");
        }
        for name in ["userfaultfd", "kexec_load", "init_module", "reboot", "open_by_handle_at"] {
            assert!(names.contains(&name), "{name} refused jail-wide");
        }
        // The zygote builds every run's namespaces: these must stay allowed.
        for name in
            ["mount", "umount2", "unshare", "setns", "clone", "clone3", "socket", "socketpair", "prctl"]
        {
            assert!(!names.contains(&name), "{name} is needed by the zygote");
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "no duplicates");
        assert_eq!(argv.iter().filter(|a| *a == "--seccomp_string").count(), 1);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn jail_seccomp_policy_has_the_x86_legacy_calls_on_x86_64() {
        let policy = jail_seccomp_policy();
        for name in ["modify_ldt", "uselib", "iopl", "ioperm"] {
            assert!(policy.contains(&format!(" {name}")), "{name}");
        }
    }

    fn rendered_nsjail_cgroups(plan: &CgroupPlan) -> Vec<String> {
        let cfg = SandboxConfig { run_cgroup: false, ..sandbox() };
        render(&cfg, plan).into_iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn run_leaves_pass_the_cgroup_dirs_instead_of_cgroup_flags() {
        let v1 = CgroupPlan::V1 { memory_root: "/cg/memory".into(), pids_root: "/cg/pids".into() };
        for plan in [v1, CgroupPlan::V2 { parent: PathBuf::from("/sys/fs/cgroup") }] {
            let argv = rendered(&plan);
            assert!(has_pair(&argv, "--pass_fd", "4") && has_pair(&argv, "--pass_fd", "5"));
            assert!(!argv.iter().any(|a| a.starts_with("--cgroup") || a == "--use_cgroupv2"));
            assert!(has_pair(&argv, "--run-cgroup", plan.label()));
            assert!(has_pair(&argv, "--run-pids", "40"));
            let v2 = matches!(plan, CgroupPlan::V2 { .. });
            assert_eq!(argv.contains(&"--disable_clone_newcgroup".to_string()), v2);
        }
        let off = rendered(&CgroupPlan::Off);
        assert!(!off.iter().any(|a| a == "--run-cgroup") && !has_pair(&off, "--pass_fd", "4"));
    }

    #[test]
    fn cgroup_v1_flags_name_the_parent_and_limits() {
        let plan = CgroupPlan::V1 {
            memory_root: PathBuf::from("/sys/fs/cgroup/memory"),
            pids_root: PathBuf::from("/sys/fs/cgroup/pids"),
        };
        let argv = rendered_nsjail_cgroups(&plan);
        assert!(has_pair(&argv, "--cgroup_mem_max", &(1u64 << 30).to_string()));
        assert!(has_pair(&argv, "--cgroup_mem_parent", "pyexec"));
        assert!(has_pair(&argv, "--cgroup_pids_max", "144"));
        assert!(!argv.contains(&"--use_cgroupv2".to_string()));
    }

    #[test]
    fn cgroup_v2_uses_the_unified_mount() {
        let argv = rendered_nsjail_cgroups(&CgroupPlan::V2 { parent: PathBuf::from("/sys/fs/cgroup") });
        assert!(argv.contains(&"--use_cgroupv2".to_string()));
        assert!(has_pair(&argv, "--cgroupv2_mount", "/sys/fs/cgroup"));
        assert!(has_pair(&argv, "--cgroup_mem_max", &(1u64 << 30).to_string()));
        assert!(!argv.iter().any(|a| a == "--cgroup_mem_parent"));
    }
}
