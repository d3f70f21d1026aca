/*
 * run-init: pid 1 of one run's namespaces, exec'd by pyexec_spawn_run.
 *
 * Reaps whatever the run leaves to it, and when the runner (pid 2) ends,
 * writes "exit WAITSTATUS CPU_US MAX_RSS_KIB\n" to fd 3 (the status pipe
 * to the zygote) and exits: the kernel then SIGKILLs every process left in
 * the namespace (pid_namespaces(7)). No signal handler is installed, so
 * nothing inside the run can signal it (pid 1 gets only the signals it
 * handles from inside its namespace); the zygote's SIGKILL from outside
 * ends the run at its deadline.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define STATUS_FD 3
#define RUNNER_PID 2

int main(void) {
    /* SECURITY: not dumpable: the run (same uid) cannot open /proc/1/mem or
     * /proc/1/fd, so it cannot reach the status pipe or forge exit lines. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return 1;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
    }
    for (;;) {
        int status;
        struct rusage ru;
        pid_t pid = wait4(-1, &status, 0, &ru);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (pid != RUNNER_PID)
            continue; /* an orphan of the run, reparented here */
        long cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
        char line[96];
        int n = snprintf(line, sizeof line, "exit %d %ld %ld\n", status, cpu_us, ru.ru_maxrss);
        if (n > 0 && (size_t)n < sizeof line && write(STATUS_FD, line, (size_t)n) != n)
            return 1;
        return 0;
    }
}
