//! The node's crash policy: vital tasks, their heartbeats, and fault injection.
//!
//! - A **vital** task is one the node cannot work without: the producer thread and the network
//!   task (which imports peers' blocks and gossips ours). A panic in one logs and aborts the
//!   process ([`run_vital_thread`], [`spawn_vital`]), so the supervisor (init on the appliance)
//!   restarts it with backoff; a half-dead node that still answers `/health` is worse than a
//!   restart.
//! - Each vital task **beats** at least once a second while it is alive, busy or idle alike
//!   (an idle dev node is healthy). `/health` answers 503 when a registered task's last beat is
//!   older than [`LATE_AFTER_MS`]; init restarts a node whose `/health` fails 3 times in a row.
//! - A panic while serving one request (an RPC handler, a contract call or query) is not
//!   vital: it becomes that request's error.
//! - **Fault injection** (a producer panic, a producer stall) exists only when the node was
//!   started with `--allow-fault-injection`; it is how the tests prove the policy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// By default a vital task is late (and the node unhealthy) once its last beat is this old.
/// Generous: the longest legitimate gap is one block's execution and commit, bounded by the
/// block gas limit to well under a slot (`--health-late-ms` changes it).
pub const LATE_AFTER_MS: u64 = 15_000;

/// The shortest `--health-late-ms` accepted: tasks beat once a second.
pub const MIN_LATE_AFTER_MS: u64 = 2_000;

/// The vital tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// The block producer thread.
    Producer,
    /// The network task (imports, gossip, sync).
    Network,
}

impl Task {
    /// Name in logs and `/health`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Producer => "producer",
            Task::Network => "network",
        }
    }
    fn index(self) -> usize {
        match self {
            Task::Producer => 0,
            Task::Network => 1,
        }
    }
}

const TASKS: [Task; 2] = [Task::Producer, Task::Network];

/// Heartbeats of the vital tasks (ms since the epoch of the last beat; 0 = not running).
#[derive(Debug)]
pub struct Heartbeats {
    last: [AtomicU64; 2],
    late_after_ms: AtomicU64,
}

impl Default for Heartbeats {
    fn default() -> Self {
        Self {
            last: Default::default(),
            late_after_ms: AtomicU64::new(LATE_AFTER_MS),
        }
    }
}

impl Heartbeats {
    /// Sets how old a beat may get before its task is late (at least [`MIN_LATE_AFTER_MS`]).
    pub fn set_late_after(&self, ms: u64) {
        self.late_after_ms
            .store(ms.max(MIN_LATE_AFTER_MS), Ordering::Relaxed);
    }

    /// Records that `task` is alive at `now_ms`. The first beat registers it: the node beats
    /// each vital task once when it spawns it, so a task that never got to run is watched too.
    pub fn beat(&self, task: Task, now_ms: u64) {
        if let Some(a) = self.last.get(task.index()) {
            a.store(now_ms.max(1), Ordering::Relaxed);
        }
    }

    /// Registered tasks whose last beat is older than the limit, with its age in ms.
    pub fn late(&self, now_ms: u64) -> Vec<(&'static str, u64)> {
        let limit = self.late_after_ms.load(Ordering::Relaxed);
        TASKS
            .iter()
            .filter_map(|t| {
                let last = self.last.get(t.index())?.load(Ordering::Relaxed);
                let age = now_ms.saturating_sub(last);
                (last != 0 && age > limit).then_some((t.name(), age))
            })
            .collect()
    }
}

/// Faults a test may inject (only with `--allow-fault-injection`).
#[derive(Debug, Default)]
pub struct Faults {
    allowed: AtomicBool,
    producer_panic: AtomicBool,
    producer_stall: AtomicBool,
}

/// The faults [`Faults::inject`] knows.
pub const FAULTS: &[&str] = &["producer_panic", "producer_stall"];

impl Faults {
    /// Turns injection on (the `--allow-fault-injection` flag).
    pub fn allow(&self) {
        self.allowed.store(true, Ordering::SeqCst);
    }

    /// Arms a fault by name; refused unless allowed.
    pub fn inject(&self, name: &str) -> Result<(), String> {
        if !self.allowed.load(Ordering::SeqCst) {
            return Err(
                "fault injection is off: start the node with --allow-fault-injection".into(),
            );
        }
        let flag = match name {
            "producer_panic" => &self.producer_panic,
            "producer_stall" => &self.producer_stall,
            other => {
                return Err(format!(
                    "unknown fault `{other}` (known: {})",
                    FAULTS.join(", ")
                ))
            }
        };
        flag.store(true, Ordering::SeqCst);
        tracing::warn!(fault = name, "fault injected");
        Ok(())
    }

    /// Producer: panics when a panic was injected (consumed), and reports a stall.
    pub fn producer_check(&self) -> bool {
        if self.producer_panic.swap(false, Ordering::SeqCst) {
            #[allow(clippy::panic)]
            {
                panic!("injected producer panic (--allow-fault-injection)");
            }
        }
        self.producer_stall.load(Ordering::SeqCst)
    }
}

pub use aergo_os::task::die;
use aergo_os::task::panic_message;

/// Runs a vital thread's body; a panic aborts the process.
pub fn run_vital_thread(task: Task, f: impl FnOnce()) {
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        die(task.name(), &panic_message(p.as_ref()));
    }
}

/// Spawns a vital tokio task; a panic in it aborts the process.
pub fn spawn_vital<F>(task: Task, fut: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    aergo_os::task::spawn_vital(task.name(), fut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_only_when_registered_and_old() {
        let h = Heartbeats::default();
        assert!(
            h.late(1_000_000).is_empty(),
            "unregistered tasks are never late"
        );
        h.beat(Task::Producer, 1_000);
        assert!(h.late(1_000 + LATE_AFTER_MS).is_empty());
        assert_eq!(
            h.late(1_001 + LATE_AFTER_MS),
            vec![("producer", LATE_AFTER_MS + 1)]
        );
        h.beat(Task::Producer, 1_001 + LATE_AFTER_MS);
        assert!(h.late(1_001 + LATE_AFTER_MS).is_empty());
        h.set_late_after(10);
        assert_eq!(
            h.late(1_001 + LATE_AFTER_MS + MIN_LATE_AFTER_MS + 1).len(),
            1,
            "clamped to the minimum"
        );
    }

    #[test]
    fn faults_need_the_flag_and_a_known_name() {
        let f = Faults::default();
        assert!(f
            .inject("producer_stall")
            .unwrap_err()
            .contains("--allow-fault-injection"));
        assert!(!f.producer_check());
        f.allow();
        assert!(f.inject("disk_fire").unwrap_err().contains("unknown fault"));
        f.inject("producer_stall").unwrap();
        assert!(f.producer_check());
        f.inject("producer_panic").unwrap();
        let r = std::panic::catch_unwind(|| f.producer_check());
        assert!(r.is_err(), "an injected panic panics");
        // Consumed: the next check only reports the stall.
        assert!(f.producer_check());
    }
}
