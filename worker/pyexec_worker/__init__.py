"""pyexec worker: the zygote and the per-run sandbox logic that live inside nsjail.

Layout (data flows one way, top to bottom):

- ``serve``       the zygote's main loop: control socket, one run at a time.
- ``forkserver``  a pristine child of the zygote that forks every spare, so no
                  run ever inherits memory that held an earlier run's data.
- ``spare``       one pre-forked, isolated run: run-init (pid 1) + runner (pid 2).
- ``isolation``   namespace, mount, rlimit and capability steps (via ``libc``).
- ``seccomp``     installs the run's syscall filter (BPF compiled by the
                  service from src/worker/seccomp_policy.rs) on the run init.
- ``runner``      inside the run: compile, exec, call ``main()``, report.
- ``session``     zygote side of one run: hand-off, capture, deadline, verdict.
- ``notebook``    zygote side of a notebook session: a spare kept alive, fed cells.
- ``cells``       inside a session's runner: the cell loop (globals persist).
- ``protocol``    supervisor <-> zygote frames (u32 BE length + msgpack).
- ``outcome``     ``Outcome``, the run verdicts (the Rust side's ``protocol::Outcome``).
- ``inputs``      the request's input files, written into the run's /tmp.
- ``figures``     matplotlib: imported in the zygote, open figures rendered to PNG.
- ``usage``       wall/CPU/peak-RSS of a run, from the runner or its init.
- ``capture``, ``jsonify``, ``tracebacks``, ``config``: helpers.

Nothing here imports service (Rust) code or reads the service's environment.
"""

PROTOCOL_VERSION = 2
