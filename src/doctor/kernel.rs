//! Kernel settings and the doctor's own privileges: may user namespaces be
//! created (including Debian's and Ubuntu's switches), and does this
//! process hold what nsjail needs (a privileged container or root).

use std::path::Path;

use super::Check;

/// Capabilities nsjail needs to build a jail (capabilities(7) numbers):
/// CAP_SETGID, CAP_SETUID (uid maps), CAP_NET_ADMIN (the jail's loopback),
/// CAP_SYS_CHROOT, CAP_SYS_ADMIN (mounts, namespaces, pivot_root).
const NEEDED_CAPS: &[(u32, &str)] = &[
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (12, "CAP_NET_ADMIN"),
    (18, "CAP_SYS_CHROOT"),
    (21, "CAP_SYS_ADMIN"),
];

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|text| text.trim().to_string())
}

fn read_number(path: &str) -> Option<u64> {
    read_trimmed(path).and_then(|text| text.parse().ok())
}

/// User namespaces one worker holds at once: the jail's own, one per ready
/// spare and per run (isolation.py), with room for a plotting spare.
fn namespaces_needed(workers: usize) -> u64 {
    (workers as u64).saturating_mul(6)
}

/// `userns`: may this kernel create the namespaces nsjail and the zygote use?
pub fn user_namespaces(workers: usize) -> Check {
    const NAME: &str = "userns";
    if !Path::new("/proc/self/ns/user").exists() {
        return Check::fail(
            NAME,
            "the kernel has no user namespaces",
            "use a kernel built with CONFIG_USER_NS=y",
        );
    }
    let mut found = Vec::new();
    let max = read_number("/proc/sys/user/max_user_namespaces");
    if let Some(max) = max {
        found.push(format!("user.max_user_namespaces={max}"));
        let needed = namespaces_needed(workers);
        if max == 0 {
            return Check::fail(
                NAME,
                "user.max_user_namespaces=0: no user namespace can be created",
                format!("sysctl -w user.max_user_namespaces=15000 (at least {needed} for {workers} workers)"),
            );
        }
        if max < needed {
            return Check::fail(
                NAME,
                format!("user.max_user_namespaces={max} is below the {needed} that {workers} workers hold"),
                format!("sysctl -w user.max_user_namespaces={}", needed.max(15000)),
            );
        }
    }
    // Debian's (and older Ubuntu's) switch: 0 refuses user namespaces to
    // processes without CAP_SYS_ADMIN in the initial namespace, which is
    // what the zygote is when it builds each run's namespaces.
    if let Some(clone) = read_number("/proc/sys/kernel/unprivileged_userns_clone") {
        found.push(format!("kernel.unprivileged_userns_clone={clone}"));
        if clone == 0 {
            return Check::fail(
                NAME,
                "kernel.unprivileged_userns_clone=0: the zygote cannot build a run's user namespace",
                "sysctl -w kernel.unprivileged_userns_clone=1",
            );
        }
    }
    // Ubuntu 23.10+: 1 gives an unprivileged process's new user namespace no
    // capabilities unless an AppArmor profile allows it, so the zygote could
    // not mount the run's /tmp and /proc.
    if let Some(restrict) = read_number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") {
        found.push(format!("kernel.apparmor_restrict_unprivileged_userns={restrict}"));
        if restrict != 0 {
            return Check::fail(
                NAME,
                "kernel.apparmor_restrict_unprivileged_userns=1: runs' user namespaces get no capabilities",
                "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile granting `userns` to nsjail)",
            );
        }
    } else {
        found.push("no AppArmor user-namespace restriction".into());
    }
    Check::ok(NAME, found.join(", "))
}

/// Parses the `CapEff:` hex mask of /proc/self/status.
fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|line| line.strip_prefix(field)).map(str::trim)
}

/// `privileges`: root with the capabilities nsjail needs, and no seccomp
/// filter of a container runtime that refuses mount and unshare.
pub fn privileges() -> Check {
    const NAME: &str = "privileges";
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(caps) = effective_caps(&status) else {
        return Check::fail(NAME, "cannot read CapEff from /proc/self/status", "mount /proc (run on Linux)");
    };
    let uid = nix::unistd::geteuid().as_raw();
    let last_cap = read_number("/proc/sys/kernel/cap_last_cap").unwrap_or(40).min(63) as u32;
    let all = (0..=last_cap).filter(|bit| caps & (1 << bit) != 0).count();
    let missing: Vec<&str> =
        NEEDED_CAPS.iter().filter(|(bit, _)| caps & (1 << bit) == 0).map(|(_, name)| *name).collect();
    let seccomp = match status_field(&status, "Seccomp:") {
        Some("0") => "no seccomp filter",
        Some("2") => "a seccomp filter (the container runtime's profile)",
        Some(_) => "seccomp strict mode",
        None => "seccomp unknown",
    };
    let detail = format!("uid {uid}, {all} of {} capabilities, {seccomp}", last_cap + 1);
    if uid != 0 || !missing.is_empty() {
        let what = if missing.is_empty() {
            String::from("not root")
        } else {
            format!("missing {}", missing.join(", "))
        };
        return Check::fail(
            NAME,
            format!("{detail}: {what}"),
            "run as root in a privileged container (docker run --privileged; securityContext.privileged: true)",
        );
    }
    if status_field(&status, "Seccomp:") == Some("2") {
        return Check::warn(
            NAME,
            detail,
            "run the container privileged (or seccomp unconfined): a runtime profile can refuse nsjail's mount and unshare calls",
        );
    }
    Check::ok(NAME, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_capability_mask() {
        let status = "Name:\tx\nCapPrm:\t0000000000000000\nCapEff:\t000001fffeffffff\nSeccomp:\t0\n";
        assert_eq!(effective_caps(status), Some(0x1fffeffffff));
        assert_eq!(status_field(status, "Seccomp:"), Some("0"));
        assert_eq!(effective_caps("Name:\tx\n"), None);
    }

    #[test]
    fn a_worker_holds_several_namespaces() {
        assert!(namespaces_needed(2) >= 2 * 4, "jail + spares + run + plotting spare per worker");
    }
}
