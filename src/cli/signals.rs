//! SIGINT and SIGTERM: the first asks the run to stop at the next record boundary (it takes
//! a final checkpoint, flushes its outputs, prints its summary and exits 0); a second one
//! exits at once. SIGPIPE: a write to a closed pipe ends the process at once, quietly, as
//! for other Unix tools.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only async-signal-safe operations here: an atomic swap and `_exit`.
    if STOP.swap(true, Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe and takes any status.
        unsafe { libc::_exit(130) };
    }
}

/// Installs the handlers; the flag they set.
pub fn install() -> &'static AtomicBool {
    #[cfg(unix)]
    // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that does only async-signal-safe
    // work; `signal` replaces the default disposition of these two signals.
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    &STOP
}

/// Restores SIGPIPE's default action (end the process), which the Rust runtime sets to
/// "ignore" before `main`: then `motif … | head -1` ends motif at its next write to the closed
/// pipe, quietly, with the conventional status (141 in a shell), instead of a panic in
/// `println!` or an error message on a standard error that may be the closed pipe itself.
/// What a run with `--checkpoint` wrote after its last checkpoint is then treated as after a
/// crash: a restart writes it again to files exactly once.
pub fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: `signal` with `SIG_DFL` installs no handler of ours; it runs before any thread
    // is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
