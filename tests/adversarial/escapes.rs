//! Escapes and spying: each attack probes one way out of the run or into
//! someone else's, and every probe must be refused.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{self, value, Service};
use crate::{run_all, Attack, Expect};

fn escape_attacks() -> Vec<Attack> {
    vec![
        Attack::new(
            "ptrace the run's init and its own child",
            "import time\ndef main():\n    pid = os.fork()\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    out = {'attach_init': syscall('ptrace', 16, 1, 0, 0), 'attach_child': syscall('ptrace', 16, pid, 0, 0), 'seize_child': syscall('ptrace', 0x4206, pid, 0, 0)}\n    os.kill(pid, 9)\n    os.waitpid(pid, 0)\n    return out",
            Expect::Result(json!({"attach_init": "EPERM", "attach_child": "EPERM", "seize_child": "EPERM"})),
        ),
        Attack::new(
            "read or write the zygote's memory through /proc",
            "def main():\n    pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n    return {'only_own_pids': pids == [1, 2], 'mem_of_init_rw': refused(lambda: open('/proc/1/mem', 'r+b')), 'mem_of_init_r': refused(lambda: open('/proc/1/mem', 'rb').read(1)), 'environ_of_init': refused(lambda: open('/proc/1/environ', 'rb').read()), 'fds_of_init': refused(os.listdir, '/proc/1/fd'), 'process_vm_readv': syscall('process_vm_readv', 1, 0, 1, 0, 1, 0)}",
            Expect::Answer("only pids 1 and 2; every /proc/1 probe and process_vm_readv refused", |answer| {
                let r = &answer["result"];
                r["only_own_pids"] == true
                    && r["process_vm_readv"] == "EPERM"
                    && ["mem_of_init_rw", "mem_of_init_r", "environ_of_init", "fds_of_init"]
                        .iter()
                        .all(|probe| r[probe].as_str().is_some_and(|v| v != "ALLOWED"))
            }),
        ),
        Attack::new(
            "write under /usr, /etc, the venv, the worker code, /proc",
            "import numpy, pyexec_worker\ndef main():\n    worker = os.path.dirname(pyexec_worker.__file__)\n    out = {}\n    for path in [sys.executable, numpy.__file__, os.path.join(sys.prefix, 'pyvenv.cfg'), os.path.join(worker, 'runner.py'), '/usr/bin/env', '/bin/sh']:\n        out['append ' + path] = refused(lambda: open(path, 'ab'))\n    for path in ['/usr/evil', '/evil', '/etc', os.path.join(worker, 'evil.py'), os.path.join(sys.prefix, 'evil.pth')]:\n        out['create ' + path] = refused(lambda: open(path, 'xb'))\n    out['mkdir /etc'] = refused(os.mkdir, '/etc')\n    out['unlink numpy'] = refused(os.unlink, numpy.__file__)\n    out['rename worker'] = refused(os.rename, os.path.join(worker, 'runner.py'), '/tmp/r.py')\n    out['chmod python'] = refused(os.chmod, sys.executable, 0o777)\n    out['utime python'] = refused(os.utime, sys.executable)\n    out['write sysctl'] = refused(lambda: open('/proc/sys/kernel/hostname', 'w').write('x'))\n    out['write oom_score_adj'] = refused(lambda: open('/proc/self/oom_score_adj', 'w').write('-1000'))\n    return out",
            Expect::AllRefused,
        ),
        Attack::new(
            "read the service's environment and files",
            &format!(
                "def main():\n    secret = 'adversarial-secret-value'\n    return {{'env_leak': any(secret in v for v in os.environ.values()), 'own_environ_leak': secret.encode() in open('/proc/self/environ', 'rb').read(), 'environ_of_init': refused(lambda: open('/proc/1/environ', 'rb').read()), 'service_binary': os.path.exists({binary:?}), 'service_checkout': os.path.exists({checkout:?}), 'cmdline_of_init_names_nsjail': b'nsjail' in open('/proc/1/cmdline', 'rb').read()}}",
                binary = common::binary(),
                checkout = env!("CARGO_MANIFEST_DIR"),
            ),
            Expect::AllRefused,
        ),
        Attack::new(
            "plant symlinks in /tmp to host paths",
            "def main():\n    os.symlink('/proc/1/environ', '/tmp/environ')\n    os.symlink('/etc/shadow', '/tmp/shadow')\n    os.symlink('/proc/1/root', '/tmp/root1')\n    return {'through_environ': refused(lambda: open('/tmp/environ', 'rb').read()), 'through_shadow': refused(lambda: open('/tmp/shadow', 'rb').read()), 'through_root1': refused(os.listdir, '/tmp/root1/')}",
            Expect::AllRefused,
        ),
        Attack::new(
            "raw, packet and netlink sockets",
            "import socket\ndef main():\n    return {'packet': refused(socket.socket, socket.AF_PACKET, socket.SOCK_RAW), 'raw_icmp': refused(socket.socket, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), 'raw_ipv6': refused(socket.socket, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW), 'netlink_route': refused(socket.socket, socket.AF_NETLINK, socket.SOCK_RAW, 0), 'netlink_audit': refused(socket.socket, socket.AF_NETLINK, socket.SOCK_RAW, 9)}",
            Expect::Result(json!({"packet": "EPERM", "raw_icmp": "EPERM", "raw_ipv6": "EPERM", "netlink_route": "EPERM", "netlink_audit": "EPERM"})),
        ),
        Attack::new(
            "mount, unmount, chroot, pivot_root",
            "def main():\n    os.mkdir('/tmp/m')\n    return {'mount_tmpfs': syscall('mount', 0, 0, 0, 0, 0), 'umount_proc': syscall('umount2', 0, 2), 'chroot': refused(os.chroot, '/tmp'), 'pivot_root': syscall('pivot_root', 0, 0)}",
            Expect::Result(json!({"mount_tmpfs": "EPERM", "umount_proc": "EPERM", "chroot": "EPERM", "pivot_root": "EPERM"})),
        ),
        Attack::new(
            "create user and other namespaces",
            "def main():\n    net = os.open('/proc/self/ns/net', os.O_RDONLY)\n    return {'unshare_user': syscall('unshare', 0x10000000), 'unshare_net_mnt': syscall('unshare', 0x40020000), 'clone_newuser': syscall('clone', 0x10000000 | 17, 0, 0, 0, 0), 'setns_net': syscall('setns', net, 0)}",
            Expect::Result(json!({"unshare_user": "EPERM", "unshare_net_mnt": "EPERM", "clone_newuser": "EPERM", "setns_net": "EPERM"})),
        ),
        Attack::new(
            "read host secrets",
            "def main():\n    out = {}\n    for path in ['/etc/shadow', '/etc/passwd', '/root/.ssh/id_rsa', '/var/run/secrets/kubernetes.io/serviceaccount/token', '/proc/kcore', '/proc/1/root/etc/shadow', '/dev/mem', '/dev/sda', '/sys/firmware/efi/efivars', '/home', '/boot']:\n        out[path] = refused(lambda: open(path, 'rb').read(1))\n    out['block devices'] = any(os.path.exists('/dev/' + d) for d in ['sda', 'vda', 'nvme0n1', 'xvda'])\n    return out",
            Expect::AllRefused,
        ),
        Attack::new(
            "call refused syscalls through ctypes",
            "def main():\n    names = ['bpf', 'perf_event_open', 'keyctl', 'add_key', 'userfaultfd', 'io_uring_setup', 'open_by_handle_at', 'init_module', 'kexec_load', 'reboot']\n    return {name: syscall(name, 0, 0, 0, 0, 0) for name in names}",
            Expect::Result(json!({
                "bpf": "EPERM", "perf_event_open": "EPERM", "keyctl": "EPERM", "add_key": "EPERM",
                "userfaultfd": "EPERM", "io_uring_setup": "EPERM", "open_by_handle_at": "EPERM",
                "init_module": "EPERM", "kexec_load": "EPERM", "reboot": "EPERM"
            })),
        ),
    ]
}

#[tokio::test]
async fn escapes_are_refused() {
    let service =
        Service::start_with_env(&["--workers", "1"], &[("ADVERSARIAL_SECRET", "adversarial-secret-value")])
            .await;
    run_all(&service, "escapes", escape_attacks()).await;
}

/// Run A plants what another run could find (a file in /tmp, an abstract
/// Unix socket listener, SysV shared memory, a loopback listener) and stays
/// alive; run B, on the other worker at the same time, looks for each.
const PLANTER: &str = "import os, socket, time, ctypes, errno\ndef attempt(f):\n    try:\n        f()\n        return 'ALLOWED'\n    except OSError as e:\n        return errno.errorcode[e.errno]\ndef main():\n    keep = []\n    def listen(family, address):\n        s = socket.socket(family)\n        s.bind(address)\n        s.listen()\n        keep.append(s)\n    libc = ctypes.CDLL(None, use_errno=True)\n    out = {'tmp': attempt(lambda: open('/tmp/planted', 'w').write('secret')), 'unix': attempt(lambda: listen(socket.AF_UNIX, '\\0pyexec-spy')), 'tcp': attempt(lambda: listen(socket.AF_INET, ('127.0.0.1', 45678))), 'shm': libc.shmget(0x5eed, 4096, 0o1666) >= 0}\n    time.sleep(8)\n    return out";

const SPY: &str = "import os, socket, ctypes, errno\ndef attempt(f):\n    try:\n        f()\n        return 'ALLOWED'\n    except OSError as e:\n        return errno.errorcode[e.errno]\ndef main():\n    libc = ctypes.CDLL(None, use_errno=True)\n    return {'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()), 'tmp': os.listdir('/tmp'), 'tcp': attempt(lambda: socket.create_connection(('127.0.0.1', 45678), timeout=1)), 'unix': attempt(lambda: socket.socket(socket.AF_UNIX).connect('\\0pyexec-spy')), 'shm': libc.shmget(0x5eed, 4096, 0o666) >= 0}";

#[tokio::test]
async fn a_run_cannot_spy_on_a_concurrent_run() {
    let service = Service::start(&["--workers", "2"]).await;
    let planter = {
        let client = service.client.clone();
        let url = service.url("/execute");
        tokio::spawn(async move {
            let response = client.post(url).json(&json!({"script": PLANTER, "timeout": 20})).send().await;
            response.expect("planter answered").json::<Value>().await.expect("json")
        })
    };
    // Wait until the planter's run is in progress, then give it a moment
    // to plant everything (it needs milliseconds; it then sleeps 8 s).
    let mut busy = false;
    for _ in 0..100 {
        if value(&service.metrics().await, "pyexec_workers{state=\"busy\"}") >= 1.0 {
            busy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(busy, "the planter's run never started");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let spy = service.ok(SPY).await;
    let planted = planter.await.expect("planter task");
    let planted = &planted["result"];
    // The loopback of a run is down, so its TCP listener may fail to bind;
    // the rest must have been planted for the spy's findings to mean anything.
    assert_eq!(
        (&planted["tmp"], &planted["unix"], &planted["shm"]),
        (&json!("ALLOWED"), &json!("ALLOWED"), &json!(true)),
        "{planted}"
    );
    let found = &spy["result"];
    assert_eq!(found["pids"], json!([1, 2]), "the spy sees only itself: {found}");
    assert_eq!(found["tmp"], json!([]), "{found}");
    assert_eq!(found["unix"], "ECONNREFUSED", "{found}");
    assert_eq!(found["shm"], false, "{found}");
    assert!(found["tcp"].as_str().is_some_and(|v| v != "ALLOWED"), "{found}");
    crate::follow_up(&service).await.expect("service answers normally");
}
