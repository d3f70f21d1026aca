//! The policy as data, and the compiled run filter run through a small
//! classic-BPF interpreter (the opcodes seccompiler and the prefix emit).
//! The real kernel's verdicts are tested by tests/seccomp.rs.

use super::*;

const ALLOW: u32 = 0x7FFF_0000;
const KILL: u32 = 0x8000_0000;
const EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
const ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;

fn this_audit_arch() -> u32 {
    if cfg!(target_arch = "x86_64") {
        AUDIT_ARCH_X86_64
    } else {
        AUDIT_ARCH_AARCH64
    }
}

/// Evaluates `program` on `struct seccomp_data` {nr, arch, ip, args}.
fn evaluate(program: &[seccompiler::sock_filter], nr: u32, arch: u32, arg0: u64) -> u32 {
    let word = |k: u32| match k {
        0 => nr,
        4 => arch,
        16 => arg0 as u32,
        20 => (arg0 >> 32) as u32,
        8..=15 | 24..=63 => 0,
        other => panic!("load at offset {other}"),
    };
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let i = &program[pc];
        pc += 1;
        let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
        match i.code {
            0x20 => acc = word(i.k),
            0x54 => acc &= i.k,
            0x05 => pc += i.k as usize,
            0x15 => pc += jump(acc == i.k),
            0x25 => pc += jump(acc > i.k),
            0x35 => pc += jump(acc >= i.k),
            0x45 => pc += jump(acc & i.k != 0),
            0x06 => return i.k,
            other => panic!("opcode {other:#x} at {}", pc - 1),
        }
    }
}

fn filter() -> BpfProgram {
    run_filter().expect("the run filter compiles on this machine")
}

#[test]
fn the_filter_is_non_empty_and_within_the_kernel_limit() {
    let program = filter();
    assert!(program.len() > 50, "{}", program.len());
    assert!(program.len() <= 4096, "BPF_MAXINSNS");
    assert_eq!(run_filter_bytes().expect("bytes").len(), program.len() * 8);
}

#[test]
fn every_refused_call_returns_eperm() {
    let program = filter();
    for call in refused() {
        assert_eq!(evaluate(&program, call.number as u32, this_audit_arch(), 0), EPERM, "{}", call.name);
    }
}

#[test]
fn everything_else_is_allowed() {
    let program = filter();
    let refused: Vec<i64> = refused().iter().map(|c| c.number).collect();
    let special = [libc::SYS_clone3, libc::SYS_socket, libc::SYS_socketpair];
    for nr in 0..600i64 {
        if refused.contains(&nr) || special.contains(&nr) {
            continue;
        }
        assert_eq!(
            evaluate(&program, nr as u32, this_audit_arch(), u64::MAX),
            if nr == libc::SYS_clone { EPERM } else { ALLOW }
        );
    }
}

#[test]
fn clone3_is_enosys_and_clone_is_checked_for_namespace_flags() {
    let program = filter();
    let arch = this_audit_arch();
    assert_eq!(evaluate(&program, libc::SYS_clone3 as u32, arch, 0), ENOSYS);
    let thread =
        (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_SIGHAND | libc::CLONE_THREAD)
            as u64;
    assert_eq!(evaluate(&program, libc::SYS_clone as u32, arch, thread), ALLOW);
    assert_eq!(evaluate(&program, libc::SYS_clone as u32, arch, u64::from(libc::SIGCHLD as u32)), ALLOW);
    for flag in CLONE_NAMESPACE_FLAGS {
        let flags = thread | u64::from(flag as u32);
        assert_eq!(evaluate(&program, libc::SYS_clone as u32, arch, flags), EPERM, "{flag:#x}");
    }
    // Only the low 32 bits count, as in the kernel.
    assert_eq!(
        evaluate(
            &program,
            libc::SYS_clone as u32,
            arch,
            thread | (u64::from(libc::CLONE_NEWNET as u32) << 32)
        ),
        ALLOW
    );
}

#[test]
fn sockets_only_for_unix_and_inet() {
    let program = filter();
    let arch = this_audit_arch();
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        for family in ALLOWED_SOCKET_FAMILIES {
            assert_eq!(evaluate(&program, nr as u32, arch, family as u64), ALLOW);
        }
        for family in [libc::AF_NETLINK, libc::AF_PACKET, libc::AF_VSOCK, libc::AF_ALG, 0, 255] {
            assert_eq!(evaluate(&program, nr as u32, arch, family as u64), EPERM, "{family}");
        }
    }
}

#[test]
fn another_arch_and_x32_numbers_are_killed() {
    let program = filter();
    let getpid = libc::SYS_getpid as u32;
    assert_eq!(evaluate(&program, getpid, this_audit_arch(), 0), ALLOW);
    for foreign in [0x4000_0003, 0x4000_0028, AUDIT_ARCH_X86_64 ^ AUDIT_ARCH_AARCH64 ^ this_audit_arch()] {
        assert_eq!(evaluate(&program, getpid, foreign, 0), KILL, "{foreign:#x}");
        assert_eq!(evaluate(&program, libc::SYS_clone3 as u32, foreign, 0), KILL, "clone3 of {foreign:#x}");
    }
    if cfg!(target_arch = "x86_64") {
        assert_eq!(evaluate(&program, X32_SYSCALL_BIT | getpid, AUDIT_ARCH_X86_64, 0), KILL);
        assert_eq!(evaluate(&program, u32::MAX, AUDIT_ARCH_X86_64, 0), KILL);
    }
}

#[test]
fn names_are_unique_and_the_jail_subset_spares_what_the_zygote_needs() {
    let list = refused();
    let mut names: Vec<&str> = list.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), list.len(), "no duplicates");
    let jail: Vec<&str> = list.iter().filter(|c| c.scope == Scope::Jail).map(|c| c.name).collect();
    for name in ["mount", "umount2", "unshare", "setns", "pivot_root", "chroot"] {
        assert!(
            names.contains(&name) && !jail.contains(&name),
            "{name}: refused to runs, allowed to the zygote"
        );
    }
    for name in
        ["ptrace", "bpf", "io_uring_setup", "userfaultfd", "keyctl", "kexec_load", "open_by_handle_at"]
    {
        assert!(jail.contains(&name), "{name} refused jail-wide");
    }
    assert_eq!(list.iter().find(|c| c.name == "open_tree_attr").map(|c| c.number), Some(467));
}

#[test]
fn the_kafel_policy_lists_exactly_the_jail_subset() {
    let policy = jail_kafel_policy();
    let body = policy
        .strip_prefix("POLICY pyexec_jail { ERRNO(1) { ")
        .and_then(|rest| rest.strip_suffix(" } } USE pyexec_jail DEFAULT ALLOW"))
        .expect("one ERRNO(1) rule, default allow");
    let listed: Vec<&str> = body.split(", ").collect();
    let jail: Vec<&str> = refused().iter().filter(|c| c.scope == Scope::Jail).map(|c| c.name).collect();
    assert_eq!(listed, jail);
    assert_eq!(listed.contains(&"modify_ldt"), cfg!(target_arch = "x86_64"));
}
