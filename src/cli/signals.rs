//! SIGINT and SIGTERM: the first asks the run to stop at the next record boundary (it takes
//! a final checkpoint, flushes its outputs, prints its summary and exits 0); a second one
//! exits at once.

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
