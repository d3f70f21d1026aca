//! The outcome vocabulary is one list in each language and they agree: the
//! Python worker's `Outcome` (`worker/pyexec_worker/outcome.py`) has exactly
//! the values of the Rust `protocol::Outcome` (its msgpack wire names), in
//! the same order. Runs the sandbox's Python (`PYEXEC_SANDBOX_PYTHON`, else
//! `python3`) over the worker package; the module needs only the standard
//! library.

use std::path::PathBuf;
use std::process::Command;

use pyexec::protocol::Outcome;

#[test]
fn python_outcome_is_the_rust_outcome() {
    let python = std::env::var("PYEXEC_SANDBOX_PYTHON").unwrap_or_else(|_| "python3".into());
    let worker = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("worker");
    let output = Command::new(&python)
        .args(["-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); from pyexec_worker.outcome import Outcome; print(' '.join(Outcome))"])
        .arg(&worker)
        .output()
        .unwrap_or_else(|e| panic!("run {python}: {e} (set PYEXEC_SANDBOX_PYTHON to a Python 3.11+)"));
    assert!(output.status.success(), "{python} failed: {}", String::from_utf8_lossy(&output.stderr));
    let python_names = String::from_utf8(output.stdout).expect("utf-8");
    let rust_names: Vec<&str> = Outcome::ALL.iter().map(|outcome| outcome.as_str()).collect();
    assert_eq!(
        python_names.split_whitespace().collect::<Vec<_>>(),
        rust_names,
        "worker/pyexec_worker/outcome.py's Outcome vs src/protocol.rs's Outcome"
    );
}
