//! Time as the control plane needs it: wall-clock seconds for what is stored or shown
//! (statistics minutes, Docker's event `since`), and waiting for a thread with a deadline
//! (a drain, a successor's output relay). Not for the request path: the cores keep their own
//! coarse clock for timeouts.

use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often `finished_by` looks at the thread.
const THREAD_POLL: Duration = Duration::from_millis(10);

/// Unix time in whole seconds (0 for a clock set before 1970).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Waits until `thread` has finished or `deadline` has passed; true when it finished.
/// (`JoinHandle::join` has no timeout, and a thread past its deadline is left running.)
pub(crate) fn finished_by<T>(thread: &JoinHandle<T>, deadline: Instant) -> bool {
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(THREAD_POLL);
    }
    thread.is_finished()
}
