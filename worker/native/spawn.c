/*
 * pyexec_spawn_run: make one run's process pair with a single copy of the
 * warm interpreter.
 *
 * Called (through ctypes) by the fork server, a pristine copy of the warm
 * zygote. One clone(2) with CLONE_VM | CLONE_VFORK creates the run init in
 * fresh namespaces: it shares the caller's memory (no page tables are
 * copied) while the caller waits. The init forks once: that child, pid 2 of
 * the new pid namespace, is the runner, a copy of the caller's memory taken
 * while the caller sits in clone(2), so it longjmps back into this function's
 * frame and returns 0 into Python. The init then closes every fd but the
 * status pipe and execs the small run-init program, which releases the
 * caller.
 *
 * Before: the init was a clone of the warm interpreter and the runner a fork
 * of the init: two copies of its page tables per run, and two teardowns.
 *
 * seccomp_fprog (a struct sock_fprog, or NULL) is installed on the init
 * before its exec.
 *
 * Returns the init's pid in the caller, 0 in the runner, -errno on failure.
 * The caller must run CPython's before/after-fork hooks around it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <unistd.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

/* glibc >= 2.34: fork(2) without the atfork handlers, which must not run in
 * the init (it shares the caller's memory) and which the caller's CPython
 * hooks replace. It also sets the child's cached tid. */
extern pid_t _Fork(void);

/* The fd number the run-init program reads its status pipe from. */
#define RUN_INIT_STATUS_FD 3
/* The runner's pid in the run's pid namespace: the init's first child. */
#define RUNNER_PID 2

struct spawn {
    jmp_buf back;
    const char *init_path;
    char *const *init_argv;
    int status_fd;
    const void *seccomp_fprog;
    int error;
};

/* The init's stack until it execs (the caller is single-threaded and waits:
 * one spawn at a time). */
static char init_stack[64 * 1024] __attribute__((aligned(16)));

static void close_from(unsigned int low) {
    if (syscall(SYS_close_range, low, ~0U, 0U) == 0)
        return;
    for (int fd = (int)low; fd < 4096; fd++)
        close(fd);
}

static int init_main(void *arg) {
    struct spawn *s = arg;
    pid_t runner = _Fork();
    if (runner == 0)
        longjmp(s->back, 1); /* the runner: back into the caller's frame */
    if (runner != RUNNER_PID) {
        s->error = runner < 0 ? errno : EPROTO;
        _exit(127);
    }
    if (s->status_fd != RUN_INIT_STATUS_FD && dup2(s->status_fd, RUN_INIT_STATUS_FD) < 0) {
        s->error = errno;
        _exit(127);
    }
    /* SECURITY: the init keeps only the status pipe (and 0-2): not the
     * fork server's socket, the cgroup directory fds, or the run's output
     * pipes, so EOF on those means every run process is gone. */
    close_from(RUN_INIT_STATUS_FD + 1);
    /* SECURITY: the init carries the run's syscall filter too (installed
     * here, after the runner exists, which installs its own once isolated),
     * so every process in the run's namespaces is filtered. */
    if (s->seccomp_fprog != NULL &&
        (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
         prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, s->seccomp_fprog, 0, 0) != 0)) {
        s->error = errno;
        _exit(127);
    }
    char *envp[] = {NULL};
    execve(s->init_path, s->init_argv, envp);
    s->error = errno; /* written into the caller's memory: CLONE_VM */
    _exit(127);
}

long pyexec_spawn_run(unsigned long flags, const char *init_path, char *const *init_argv, int status_fd,
                      const void *seccomp_fprog) {
    struct spawn s = {
        .init_path = init_path,
        .init_argv = init_argv,
        .status_fd = status_fd,
        .seccomp_fprog = seccomp_fprog,
        .error = 0,
    };
    if (setjmp(s.back))
        return 0;
    pid_t init = clone(init_main, init_stack + sizeof init_stack, (int)(flags | CLONE_VM | CLONE_VFORK | SIGCHLD), &s);
    if (init < 0)
        return -errno;
    if (s.error)
        return -s.error; /* the init has exited; the runner dies with its pid namespace */
    return init;
}
