//! The one seccomp policy of pyexec: which syscalls a run may not make, and
//! the subset the whole jail (zygote included) may not make.
//!
//! Owns the deny-list (each group with a `SECURITY:` note), the run filter
//! compiled to classic BPF by firecracker's `seccompiler`, and the Kafel text
//! nsjail gets as `--seccomp_string`. Both come from [`REFUSED`], so they
//! cannot drift. Syscall numbers come from the `libc` crate for the machine
//! this binary is built for (x86_64 or aarch64); no number is written here
//! except `open_tree_attr`, which neither libc nor seccompiler knows yet.
//!
//! A refused call returns -1 with EPERM, never a kill. The exceptions:
//! `clone3` fails with ENOSYS, and a syscall through another ABI kills the
//! process (see [`run_filter`]).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

/// Why the run filter cannot be built; no script may run then.
#[derive(Debug, thiserror::Error)]
pub enum SeccompPolicyError {
    /// seccompiler refused the policy (a bug in this file).
    #[error("seccomp: cannot compile the run filter: {0}")]
    Compile(#[from] seccompiler::BackendError),
    /// This binary was built for a machine without a syscall table here.
    #[error(
        "seccomp: no syscall table for this machine (pyexec supports x86_64 and aarch64); refusing to run scripts without the syscall filter"
    )]
    UnsupportedMachine,
}

/// Who a deny-list entry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole jail: the zygote and fork server never make this call.
    Jail,
    /// Only runs: the zygote needs it to build each run's namespaces.
    RunOnly,
}

/// One refused syscall: its name (for Kafel) and number (for BPF).
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    /// The name Kafel knows it by.
    pub name: &'static str,
    /// Its number on this machine.
    pub number: i64,
    /// Jail-wide or runs only.
    pub scope: Scope,
}

macro_rules! sys {
    ($name:ident, $scope:ident) => {
        Refused {
            name: stringify!($name).trim_start_matches("SYS_"),
            number: libc::$name as i64,
            scope: Scope::$scope,
        }
    };
}

/// `open_tree_attr` (kernel 6.15): the unified number every architecture
/// shares since kernel 5.1; newer than the libc crate's tables.
const SYS_OPEN_TREE_ATTR: i64 = 467;

/// The deny-list, in groups. Names are libc's `SYS_*` without the prefix.
///
/// SECURITY: analysis code (numpy, pandas, the standard library, the
/// subprocesses it starts) needs none of these calls.
pub fn refused() -> Vec<Refused> {
    let mut list = vec![
        // SECURITY: reading, writing or stealing from another process. The
        // pid namespace already hides other processes; this is the second lock.
        sys!(SYS_ptrace, Jail),
        sys!(SYS_process_vm_readv, Jail),
        sys!(SYS_process_vm_writev, Jail),
        sys!(SYS_process_madvise, Jail),
        sys!(SYS_pidfd_getfd, Jail),
        sys!(SYS_kcmp, Jail),
        // SECURITY: the kernel's largest unprivileged attack surfaces: the BPF
        // verifier, perf events (also a side channel), io_uring (its
        // operations bypass seccomp), userfaultfd (the usual race-widening
        // primitive of exploits) and the key retention service.
        sys!(SYS_bpf, Jail),
        sys!(SYS_perf_event_open, Jail),
        sys!(SYS_io_uring_setup, Jail),
        sys!(SYS_io_uring_enter, Jail),
        sys!(SYS_io_uring_register, Jail),
        sys!(SYS_userfaultfd, Jail),
        sys!(SYS_keyctl, Jail),
        sys!(SYS_add_key, Jail),
        sys!(SYS_request_key, Jail),
        // SECURITY: changing the mount tree (uncovering the jail's /proc or
        // /tmp, remounting something writable). Runs have no capability for
        // it; the filter keeps it so if one leaks. The zygote mounts.
        sys!(SYS_mount, RunOnly),
        sys!(SYS_umount2, RunOnly),
        sys!(SYS_pivot_root, RunOnly),
        sys!(SYS_chroot, RunOnly),
        sys!(SYS_open_tree, RunOnly),
        Refused { name: "open_tree_attr", number: SYS_OPEN_TREE_ATTR, scope: Scope::RunOnly },
        sys!(SYS_move_mount, RunOnly),
        sys!(SYS_fsopen, RunOnly),
        sys!(SYS_fsconfig, RunOnly),
        sys!(SYS_fsmount, RunOnly),
        sys!(SYS_fspick, RunOnly),
        sys!(SYS_mount_setattr, RunOnly),
        // SECURITY: new namespaces give a full capability set in them and
        // expose namespaced kernel code (netfilter in a new net namespace).
        // clone is refused only with a CLONE_NEW* flag (see run_filter).
        sys!(SYS_unshare, RunOnly),
        sys!(SYS_setns, RunOnly),
        // SECURITY: opening files by handle, around the mount view: the 2014
        // "shocker" container escape.
        sys!(SYS_open_by_handle_at, Jail),
        sys!(SYS_name_to_handle_at, Jail),
        // SECURITY: host administration. All need capabilities of the initial
        // namespace; refusing them means a capability bug never reaches them.
        // syslog is the kernel log (addresses); fanotify watches whole
        // filesystems; lookup_dcookie is a path leak.
        sys!(SYS_kexec_load, Jail),
        sys!(SYS_kexec_file_load, Jail),
        sys!(SYS_reboot, Jail),
        sys!(SYS_init_module, Jail),
        sys!(SYS_finit_module, Jail),
        sys!(SYS_delete_module, Jail),
        sys!(SYS_acct, Jail),
        sys!(SYS_swapon, Jail),
        sys!(SYS_swapoff, Jail),
        sys!(SYS_quotactl, Jail),
        sys!(SYS_quotactl_fd, RunOnly),
        sys!(SYS_lookup_dcookie, Jail),
        sys!(SYS_fanotify_init, Jail),
        sys!(SYS_syslog, Jail),
        sys!(SYS_vhangup, Jail),
    ];
    // SECURITY (x86_64 only): modify_ldt serves 16-bit code and had several
    // kernel bugs; uselib loads a.out libraries; iopl/ioperm grant port I/O.
    #[cfg(target_arch = "x86_64")]
    list.extend([
        sys!(SYS_modify_ldt, Jail),
        sys!(SYS_uselib, Jail),
        sys!(SYS_iopl, Jail),
        sys!(SYS_ioperm, Jail),
    ]);
    list
}

/// SECURITY: clone(2) with any of these flags (its first argument on both
/// machines) is refused like unshare. The kernel reads only clone's low 32
/// bits of flags, which is the word checked. CLONE_NEWTIME exists only for
/// unshare and clone3.
pub const CLONE_NAMESPACE_FLAGS: [i32; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// SECURITY: socket/socketpair only for AF_UNIX (local IPC) and
/// AF_INET/AF_INET6 (loopback of the run's empty network namespace).
/// Refused: netlink, packet, vsock, AF_ALG and every other family.
pub const ALLOWED_SOCKET_FAMILIES: [i32; 3] = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6];

/// The machine this binary targets, as seccompiler names it.
pub fn target_arch() -> Result<TargetArch, SeccompPolicyError> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else {
        Err(SeccompPolicyError::UnsupportedMachine)
    }
}

fn dword(op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SeccompPolicyError> {
    // Dword: seccompiler compares only the low 32 bits, as the kernel reads
    // clone's flags and socket's domain.
    Ok(SeccompCondition::new(0, SeccompCmpArgLen::Dword, op, value)?)
}

/// The EPERM part of the run filter, compiled by seccompiler.
fn eperm_filter(arch: TargetArch) -> Result<BpfProgram, SeccompPolicyError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for call in refused() {
        rules.insert(call.number, Vec::new());
    }
    let mut clone_rules = Vec::new();
    for flag in CLONE_NAMESPACE_FLAGS {
        let flag = u64::from(flag.unsigned_abs());
        clone_rules.push(SeccompRule::new(vec![dword(SeccompCmpOp::MaskedEq(flag), flag)?])?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    let mut other_family = Vec::new();
    for family in ALLOWED_SOCKET_FAMILIES {
        other_family.push(dword(SeccompCmpOp::Ne, u64::from(family.unsigned_abs()))?);
    }
    let socket_rule = SeccompRule::new(other_family)?;
    rules.insert(libc::SYS_socket, vec![socket_rule.clone()]);
    rules.insert(libc::SYS_socketpair, vec![socket_rule]);
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)?;
    Ok(filter.try_into()?)
}

// Classic BPF of the prefix (linux/bpf_common.h, linux/seccomp.h).
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JA: u16 = 0x05;
const RET_K: u16 = 0x06;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// x86_64: a number with this bit is an x32-ABI call under the x86_64 arch id.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// include/uapi/linux/audit.h
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// include/uapi/linux/audit.h
pub const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code, jt, jf, k }
}

/// The hand-written prefix, 8 instructions (7 on aarch64), for what
/// seccompiler cannot express: one filter has one match action, but clone3
/// must get ENOSYS while the rest gets EPERM (a second filter would change
/// every run's `Seccomp_filters` count and cost a second install), and
/// seccompiler does not look at the x32 bit.
fn prefix(arch: TargetArch) -> Vec<seccompiler::sock_filter> {
    let (audit, x32) = match arch {
        TargetArch::x86_64 => (AUDIT_ARCH_X86_64, true),
        _ => (AUDIT_ARCH_AARCH64, false),
    };
    let skip = u8::from(x32);
    let mut out = vec![
        insn(LD_W_ABS, 0, 0, OFFSET_ARCH),
        // SECURITY: numbers mean something else under another ABI (i386 via
        // int 0x80, 32-bit arm): killed outright. KILL_PROCESS outranks
        // Kafel's own kill-thread and takes the whole process down.
        insn(JEQ_K, 0, 4 + skip, audit),
        insn(LD_W_ABS, 0, 0, OFFSET_NR),
    ];
    if x32 {
        // SECURITY: x32 calls carry the x86_64 arch id and bit 30; killed too.
        out.push(insn(JGE_K, 3, 0, X32_SYSCALL_BIT));
    }
    // SECURITY: clone3 passes its flags in memory, which seccomp cannot read.
    // ENOSYS makes glibc (pthread_create, posix_spawn) fall back to clone(2),
    // whose flags are checked; EPERM would make threads fail.
    out.extend([
        insn(JEQ_K, 1, 0, libc::SYS_clone3 as u32),
        insn(JA, 0, 0, 2),
        insn(RET_K, 0, 0, 0x0005_0000 | libc::ENOSYS as u32),
        insn(RET_K, 0, 0, 0x8000_0000),
    ]);
    out
}

/// The run filter for this machine: the prefix, then seccompiler's program.
pub fn run_filter() -> Result<BpfProgram, SeccompPolicyError> {
    let arch = target_arch()?;
    let mut program = prefix(arch);
    program.extend(eperm_filter(arch)?);
    Ok(program)
}

/// The run filter as packed `struct sock_filter` bytes (native endian).
pub fn run_filter_bytes() -> Result<Vec<u8>, SeccompPolicyError> {
    let mut out = Vec::new();
    for insn in run_filter()? {
        out.extend_from_slice(&insn.code.to_ne_bytes());
        out.push(insn.jt);
        out.push(insn.jf);
        out.extend_from_slice(&insn.k.to_ne_bytes());
    }
    Ok(out)
}

/// The Kafel policy for `--seccomp_string`: `ERRNO(1)` (EPERM) for every
/// [`Scope::Jail`] call, everything else allowed. Kafel itself kills a
/// syscall made through another architecture's ABI.
pub fn jail_kafel_policy() -> String {
    let names: Vec<&str> = refused().iter().filter(|c| c.scope == Scope::Jail).map(|c| c.name).collect();
    format!("POLICY pyexec_jail {{ ERRNO(1) {{ {} }} }} USE pyexec_jail DEFAULT ALLOW", names.join(", "))
}

#[cfg(test)]
#[path = "seccomp_policy_tests.rs"]
mod tests;
