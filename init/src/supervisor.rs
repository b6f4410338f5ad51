//! The service supervisor: a pure state machine over a table of services.
//!
//! Time is injected (every call takes `now`, a `Duration` since an arbitrary origin) and all
//! process actions go through the [`Runner`] trait, so the state machine and its backoff are
//! unit-tested without processes or sleeping. States (see [`ServiceState`]):
//! `waiting → starting → running`, on an unexpected exit `→ backoff → starting …`,
//! on stop `→ stopping → stopped`, and `missing` when the binary is not in the image.

use aergo_os::control::{ExitInfo, ServiceInfo, ServiceState};
use std::time::Duration;

/// How the supervisor decides a started service is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready as soon as it is running.
    Immediate,
    /// Ready when a TCP connection to this address succeeds.
    Tcp(String),
    /// Ready when `GET path` on this address answers 200.
    Http(String, String),
}

/// One entry of the service table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Name (`node`).
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Names of services that must be ready first.
    pub deps: Vec<String>,
    /// Soft start order: names of services to let start first. Unlike `deps`, this never
    /// holds a service for long: it starts once each of them is ready, cannot start
    /// (missing, stopped, disabled, in backoff), or `after_wait` has passed since it could
    /// have started. Used to give the node the boot's CPU before AergoFS.
    pub after: Vec<String>,
    /// Longest wait for `after`.
    pub after_wait: Duration,
    /// Readiness check.
    pub ready: Readiness,
    /// Liveness: once running, the readiness check is repeated; this many failures in a row
    /// restart the service (as a crash: with backoff). `None`: exits are the only failures.
    pub liveness: Option<Liveness>,
    /// SIGTERM → SIGKILL grace period.
    pub stop_timeout: Duration,
    /// Console device the service owns (stdin/stdout), e.g. `/dev/ttyS0`.
    pub console: Option<String>,
    /// Disabled by config: never started.
    pub enabled: bool,
}

/// How often a running service's health is checked, and how many failures in a row make
/// init restart it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Time between checks.
    pub every: Duration,
    /// Failures in a row that restart the service.
    pub failures: u32,
}

/// Exponential restart backoff: `initial` doubling to `max`, reset after `stable` uptime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// A run at least this long resets the delay.
    pub stable: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(
            Duration::from_millis(200),
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
    }
}

impl Backoff {
    /// A backoff policy.
    pub fn new(initial: Duration, max: Duration, stable: Duration) -> Self {
        Self {
            initial,
            max,
            stable,
            next: initial,
        }
    }

    /// The delay before restarting a process that ran for `ran_for`.
    pub fn on_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.stable {
            self.next = self.initial;
        }
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Forget past failures.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// What the supervisor asks of the outside world.
pub trait Runner {
    /// Whether the program can be run at all (binary present).
    fn available(&mut self, spec: &Spec) -> Result<(), String>;
    /// Starts the process; returns its pid.
    fn spawn(&mut self, spec: &Spec) -> Result<u32, String>;
    /// Sends a signal.
    fn kill(&mut self, pid: u32, signal: i32);
    /// Whether the service answers its readiness check.
    fn ready(&mut self, spec: &Spec) -> bool;
    /// Whether a running service still answers its check (liveness; may wait longer than
    /// `ready`, a loaded service is slow, not dead).
    fn alive(&mut self, spec: &Spec) -> bool {
        self.ready(spec)
    }
}

#[derive(Debug, Clone)]
struct Svc {
    spec: Spec,
    state: ServiceState,
    pid: Option<u32>,
    started: u32,
    started_at: Option<Duration>,
    last_exit: Option<ExitInfo>,
    backoff: Backoff,
    next_start: Option<Duration>,
    stop_deadline: Option<Duration>,
    killed: bool,
    held: bool,
    restart_after_stop: bool,
    message: Option<String>,
    /// When the service first waited on `after` (soft order).
    after_since: Option<Duration>,
    /// Liveness: when it was last checked, failures in a row, and whether the current stop
    /// was init's own restart of an unhealthy service (its exit then counts as a crash).
    last_probe: Option<Duration>,
    live_failures: u32,
    unhealthy: bool,
}

/// Which shutdown was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Power off.
    Poweroff,
    /// Reboot.
    Reboot,
}

/// Errors of operator requests.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SupError {
    /// No such service.
    #[error("no service named `{0}` (services: {1})")]
    Unknown(String, String),
    /// The service cannot be started.
    #[error("service `{0}` cannot run: {1}")]
    Unavailable(String, String),
    /// The system is shutting down.
    #[error("the system is shutting down")]
    ShuttingDown,
    /// The service has no process.
    #[error("service `{0}` is not running")]
    NotRunning(String),
}

/// The supervisor.
#[derive(Debug, Clone)]
pub struct Supervisor {
    svcs: Vec<Svc>,
    shutdown: Option<Shutdown>,
}

impl Supervisor {
    /// A supervisor for `specs` (in start order) with the given backoff policy.
    pub fn new(specs: Vec<Spec>, backoff: Backoff) -> Self {
        let svcs = specs
            .into_iter()
            .map(|spec| Svc {
                held: !spec.enabled,
                state: if spec.enabled {
                    ServiceState::Waiting
                } else {
                    ServiceState::Stopped
                },
                message: (!spec.enabled).then(|| "disabled in config".to_string()),
                spec,
                pid: None,
                started: 0,
                started_at: None,
                last_exit: None,
                backoff: backoff.clone(),
                next_start: None,
                stop_deadline: None,
                killed: false,
                after_since: None,
                restart_after_stop: false,
                last_probe: None,
                live_failures: 0,
                unhealthy: false,
            })
            .collect();
        Self {
            svcs,
            shutdown: None,
        }
    }

    fn idx(&self, name: &str) -> Result<usize, SupError> {
        self.svcs
            .iter()
            .position(|s| s.spec.name == name)
            .ok_or_else(|| {
                SupError::Unknown(
                    name.to_string(),
                    self.svcs
                        .iter()
                        .map(|s| s.spec.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
    }

    /// Whether `name` is a known service.
    pub fn has(&self, name: &str) -> bool {
        self.idx(name).is_ok()
    }

    /// The shutdown in progress, if any.
    pub fn shutting_down(&self) -> Option<Shutdown> {
        self.shutdown
    }

    /// State of a service.
    #[cfg(test)]
    pub fn state(&self, name: &str) -> Option<ServiceState> {
        self.idx(name)
            .ok()
            .and_then(|i| self.svcs.get(i))
            .map(|s| s.state)
    }

    /// Pid of a service.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.idx(name)
            .ok()
            .and_then(|i| self.svcs.get(i))
            .and_then(|s| s.pid)
    }

    /// Services for `status`.
    pub fn report(&self, now: Duration) -> Vec<ServiceInfo> {
        self.svcs
            .iter()
            .map(|s| ServiceInfo {
                name: s.spec.name.clone(),
                state: s.state,
                pid: s.pid,
                restarts: s.started.saturating_sub(1),
                uptime_ms: match (s.pid, s.started_at) {
                    (Some(_), Some(t)) => {
                        Some(u64::try_from(now.saturating_sub(t).as_millis()).unwrap_or(u64::MAX))
                    }
                    _ => None,
                },
                last_exit: s.last_exit.clone(),
                command: s.spec.argv.clone(),
                message: match (s.state, s.next_start) {
                    (ServiceState::Backoff, Some(t)) => Some(format!(
                        "restarting in {} ms",
                        t.saturating_sub(now).as_millis()
                    )),
                    _ => s.message.clone(),
                },
            })
            .collect()
    }

    /// Records the exit of `pid` (from the reaper). Unknown pids are ignored.
    /// Returns the service name when the pid was one of ours.
    pub fn on_exit(&mut self, pid: u32, exit: ExitInfo, now: Duration) -> Option<String> {
        let shutting = self.shutdown.is_some();
        let s = self.svcs.iter_mut().find(|s| s.pid == Some(pid))?;
        let ran_for = s
            .started_at
            .map(|t| now.saturating_sub(t))
            .unwrap_or_default();
        s.pid = None;
        s.stop_deadline = None;
        s.killed = false;
        s.last_exit = Some(exit.clone());
        let unhealthy = std::mem::take(&mut s.unhealthy) && !shutting && !s.held;
        if !unhealthy && (shutting || s.held || s.state == ServiceState::Stopping) {
            if s.restart_after_stop && !shutting {
                s.restart_after_stop = false;
                s.held = false;
                s.backoff.reset();
                s.state = ServiceState::Waiting;
                s.message = None;
            } else {
                s.state = ServiceState::Stopped;
                s.message = Some(format!("stopped ({exit})"));
            }
        } else {
            let delay = s.backoff.on_exit(ran_for);
            s.state = ServiceState::Backoff;
            s.next_start = Some(now + delay);
            s.message = Some(if unhealthy {
                format!(
                    "restarted: unhealthy ({} health checks failed in a row), then {exit}",
                    s.live_failures
                )
            } else {
                format!("exited ({exit}) after {} ms", ran_for.as_millis())
            });
            s.live_failures = 0;
        }
        Some(s.spec.name.clone())
    }

    /// Operator: start (or un-stop) a service.
    pub fn start(&mut self, name: &str) -> Result<(), SupError> {
        if self.shutdown.is_some() {
            return Err(SupError::ShuttingDown);
        }
        let i = self.idx(name)?;
        if let Some(s) = self.svcs.get_mut(i) {
            s.held = false;
            match s.state {
                ServiceState::Stopped => {
                    s.state = ServiceState::Waiting;
                    s.message = None;
                    s.backoff.reset();
                }
                ServiceState::Backoff => s.next_start = Some(Duration::ZERO),
                ServiceState::Stopping => s.restart_after_stop = true,
                ServiceState::Missing => {
                    return Err(SupError::Unavailable(
                        name.to_string(),
                        s.message.clone().unwrap_or_default(),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn begin_stop(s: &mut Svc, now: Duration, runner: &mut dyn Runner) {
        match s.pid {
            Some(pid) if s.state != ServiceState::Stopping => {
                runner.kill(pid, libc::SIGTERM);
                s.state = ServiceState::Stopping;
                s.stop_deadline = Some(now + s.spec.stop_timeout);
            }
            Some(_) => {}
            None => {
                if s.state != ServiceState::Missing {
                    s.state = ServiceState::Stopped;
                }
            }
        }
    }

    /// Operator: stop a service; it stays stopped.
    pub fn stop(
        &mut self,
        name: &str,
        now: Duration,
        runner: &mut dyn Runner,
    ) -> Result<(), SupError> {
        let i = self.idx(name)?;
        if let Some(s) = self.svcs.get_mut(i) {
            s.held = true;
            s.restart_after_stop = false;
            Self::begin_stop(s, now, runner);
        }
        Ok(())
    }

    /// Operator: stop then start again; counts as a restart.
    pub fn restart(
        &mut self,
        name: &str,
        now: Duration,
        runner: &mut dyn Runner,
    ) -> Result<(), SupError> {
        if self.shutdown.is_some() {
            return Err(SupError::ShuttingDown);
        }
        let i = self.idx(name)?;
        if let Some(s) = self.svcs.get_mut(i) {
            if s.state == ServiceState::Missing {
                return Err(SupError::Unavailable(
                    name.to_string(),
                    s.message.clone().unwrap_or_default(),
                ));
            }
            s.held = false;
            if s.pid.is_some() {
                s.restart_after_stop = true;
                Self::begin_stop(s, now, runner);
            } else {
                s.state = ServiceState::Waiting;
                s.backoff.reset();
                s.message = None;
            }
        }
        Ok(())
    }

    /// Operator/test: signal a service's process; its exit counts as a crash.
    pub fn signal(
        &mut self,
        name: &str,
        sig: i32,
        runner: &mut dyn Runner,
    ) -> Result<u32, SupError> {
        let i = self.idx(name)?;
        let pid = self
            .svcs
            .get(i)
            .and_then(|s| s.pid)
            .ok_or_else(|| SupError::NotRunning(name.to_string()))?;
        runner.kill(pid, sig);
        Ok(pid)
    }

    /// Begins the shutdown: services are stopped one at a time in reverse order.
    pub fn begin_shutdown(&mut self, kind: Shutdown) {
        if self.shutdown.is_none() {
            self.shutdown = Some(kind);
        }
    }

    /// True when a shutdown is in progress and no service process is left.
    pub fn all_stopped(&self) -> bool {
        self.svcs.iter().all(|s| s.pid.is_none())
    }

    fn deps_ready(&self, spec: &Spec) -> Result<bool, String> {
        for d in &spec.deps {
            match self.svcs.iter().find(|s| &s.spec.name == d) {
                Some(s) if s.state == ServiceState::Running => {}
                Some(_) => return Ok(false),
                None => return Err(format!("unknown dependency `{d}`")),
            }
        }
        Ok(true)
    }

    /// Whether the soft order (`after`) lets `spec` start: each named service is ready or
    /// will not become ready soon; unknown names do not hold it.
    fn after_ready(&self, spec: &Spec) -> bool {
        spec.after.iter().all(|a| {
            self.svcs
                .iter()
                .find(|s| &s.spec.name == a)
                .is_none_or(|s| !matches!(s.state, ServiceState::Waiting | ServiceState::Starting))
        })
    }

    /// Advances every service: starts what is due, checks readiness, escalates stops.
    pub fn tick(&mut self, now: Duration, runner: &mut dyn Runner) {
        if self.shutdown.is_some() {
            self.tick_shutdown(now, runner);
            return;
        }
        for i in 0..self.svcs.len() {
            let Some(spec) = self.svcs.get(i).map(|s| s.spec.clone()) else {
                continue;
            };
            let deps = self.deps_ready(&spec);
            let after = self.after_ready(&spec);
            let Some(s) = self.svcs.get_mut(i) else {
                continue;
            };
            match s.state {
                ServiceState::Waiting | ServiceState::Backoff => {
                    if s.held {
                        s.state = ServiceState::Stopped;
                        continue;
                    }
                    if s.state == ServiceState::Backoff && s.next_start.is_some_and(|t| now < t) {
                        continue;
                    }
                    match deps {
                        Err(e) => {
                            s.message = Some(e);
                            continue;
                        }
                        Ok(false) => {
                            s.state = ServiceState::Waiting;
                            s.message = Some(format!("waiting for {}", spec.deps.join(", ")));
                            continue;
                        }
                        Ok(true) => {}
                    }
                    if !after && s.started == 0 {
                        let since = *s.after_since.get_or_insert(now);
                        if now.saturating_sub(since) < spec.after_wait {
                            s.state = ServiceState::Waiting;
                            s.message = Some(format!(
                                "starting after {} (at most {} s)",
                                spec.after.join(", "),
                                spec.after_wait.as_secs()
                            ));
                            continue;
                        }
                    }
                    if let Err(e) = runner.available(&spec) {
                        s.state = ServiceState::Missing;
                        s.message = Some(e);
                        continue;
                    }
                    s.started += 1;
                    match runner.spawn(&spec) {
                        Ok(pid) => {
                            s.pid = Some(pid);
                            s.started_at = Some(now);
                            s.last_probe = None;
                            s.live_failures = 0;
                            s.next_start = None;
                            s.state = ServiceState::Starting;
                            s.message = None;
                        }
                        Err(e) => {
                            let delay = s.backoff.on_exit(Duration::ZERO);
                            s.state = ServiceState::Backoff;
                            s.next_start = Some(now + delay);
                            s.message = Some(format!("spawn failed: {e}"));
                        }
                    }
                }
                ServiceState::Starting => {
                    if runner.ready(&spec) {
                        s.state = ServiceState::Running;
                    }
                }
                ServiceState::Running => Self::check_liveness(s, &spec, now, runner),
                ServiceState::Stopping => Self::escalate(s, now, runner),
                ServiceState::Stopped | ServiceState::Missing => {}
            }
        }
    }

    /// Repeats a running service's health check every `liveness.every`; after
    /// `liveness.failures` failures in a row, stops it so that it restarts with backoff.
    fn check_liveness(s: &mut Svc, spec: &Spec, now: Duration, runner: &mut dyn Runner) {
        let Some(l) = spec.liveness else {
            return;
        };
        let since = s.last_probe.or(s.started_at).unwrap_or(now);
        if now.saturating_sub(since) < l.every {
            return;
        }
        s.last_probe = Some(now);
        if runner.alive(spec) {
            if s.live_failures > 0 {
                s.message = None;
            }
            s.live_failures = 0;
            return;
        }
        s.live_failures = s.live_failures.saturating_add(1);
        s.message = Some(format!(
            "health check failed ({} of {} in a row)",
            s.live_failures, l.failures
        ));
        if s.live_failures >= l.failures {
            s.unhealthy = true;
            Self::begin_stop(s, now, runner);
        }
    }

    fn escalate(s: &mut Svc, now: Duration, runner: &mut dyn Runner) {
        if let (Some(pid), Some(deadline)) = (s.pid, s.stop_deadline) {
            if now >= deadline && !s.killed {
                runner.kill(pid, libc::SIGKILL);
                s.killed = true;
            }
        }
    }

    fn tick_shutdown(&mut self, now: Duration, runner: &mut dyn Runner) {
        for s in self.svcs.iter_mut() {
            if s.pid.is_none() && s.state != ServiceState::Missing {
                s.state = ServiceState::Stopped;
            }
        }
        // Reverse start order, one at a time: dependents stop before their dependencies.
        if let Some(s) = self.svcs.iter_mut().rev().find(|s| s.pid.is_some()) {
            if s.state == ServiceState::Stopping {
                Self::escalate(s, now, runner);
            } else {
                Self::begin_stop(s, now, runner);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        next_pid: u32,
        spawned: Vec<String>,
        killed: Vec<(u32, i32)>,
        ready: bool,
        missing: Vec<String>,
        fail_spawn: bool,
    }

    impl Runner for Fake {
        fn available(&mut self, spec: &Spec) -> Result<(), String> {
            if self.missing.contains(&spec.name) {
                Err("binary not in image".into())
            } else {
                Ok(())
            }
        }
        fn spawn(&mut self, spec: &Spec) -> Result<u32, String> {
            if self.fail_spawn {
                return Err("nope".into());
            }
            self.next_pid += 1;
            self.spawned.push(spec.name.clone());
            Ok(100 + self.next_pid)
        }
        fn kill(&mut self, pid: u32, signal: i32) {
            self.killed.push((pid, signal));
        }
        fn ready(&mut self, _spec: &Spec) -> bool {
            self.ready
        }
    }

    fn spec(name: &str, deps: &[&str]) -> Spec {
        Spec {
            name: name.into(),
            argv: vec![format!("/bin/{name}")],
            deps: deps.iter().map(|d| d.to_string()).collect(),
            after: vec![],
            after_wait: Duration::ZERO,
            ready: Readiness::Immediate,
            liveness: None,
            stop_timeout: Duration::from_secs(10),
            console: None,
            enabled: true,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn crash() -> ExitInfo {
        ExitInfo {
            code: None,
            signal: Some(9),
            at_unix_ms: 1,
        }
    }

    fn table() -> Supervisor {
        Supervisor::new(
            vec![
                spec("node", &[]),
                spec("aergofs", &[]),
                spec("dashboard", &["node"]),
            ],
            Backoff::default(),
        )
    }

    #[test]
    fn backoff_doubles_caps_and_resets_after_stable_run() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..10)
            .map(|_| u64::try_from(b.on_exit(ms(10)).as_millis()).unwrap())
            .collect();
        assert_eq!(
            delays,
            vec![200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        assert_eq!(b.on_exit(Duration::from_secs(61)), ms(200));
        assert_eq!(b.on_exit(ms(5)), ms(400));
    }

    #[test]
    fn starts_in_dependency_order_after_readiness() {
        let mut sup = table();
        let mut r = Fake::default();
        sup.tick(ms(0), &mut r);
        // node and aergofs start; dashboard waits for node to be ready.
        assert_eq!(r.spawned, vec!["node", "aergofs"]);
        assert_eq!(sup.state("dashboard"), Some(ServiceState::Waiting));
        sup.tick(ms(100), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Starting));
        r.ready = true;
        sup.tick(ms(200), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Running));
        sup.tick(ms(300), &mut r);
        assert_eq!(r.spawned, vec!["node", "aergofs", "dashboard"]);
    }

    fn soft_ordered() -> Supervisor {
        let mut fs = spec("aergofs", &[]);
        fs.after = vec!["node".into()];
        fs.after_wait = ms(10_000);
        Supervisor::new(vec![spec("node", &[]), fs], Backoff::default())
    }

    #[test]
    fn soft_order_starts_after_readiness() {
        let mut sup = soft_ordered();
        let mut r = Fake::default();
        sup.tick(ms(0), &mut r);
        assert_eq!(r.spawned, vec!["node"]);
        assert_eq!(sup.state("aergofs"), Some(ServiceState::Waiting));
        sup.tick(ms(500), &mut r);
        assert_eq!(r.spawned, vec!["node"]);
        r.ready = true;
        sup.tick(ms(600), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Running));
        sup.tick(ms(700), &mut r);
        assert_eq!(r.spawned, vec!["node", "aergofs"]);
    }

    #[test]
    fn soft_order_never_holds_past_its_limit() {
        let mut sup = soft_ordered();
        let mut r = Fake::default();
        sup.tick(ms(0), &mut r);
        sup.tick(ms(9_999), &mut r);
        assert_eq!(r.spawned, vec!["node"], "node never ready: still waiting");
        sup.tick(ms(10_000), &mut r);
        assert_eq!(r.spawned, vec!["node", "aergofs"]);
    }

    #[test]
    fn soft_order_does_not_wait_for_a_service_that_cannot_start() {
        let mut sup = soft_ordered();
        let mut r = Fake {
            missing: vec!["node".into()],
            ..Fake::default()
        };
        sup.tick(ms(0), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Missing));
        sup.tick(ms(1), &mut r);
        assert_eq!(r.spawned, vec!["aergofs"]);
        // A disabled node does not hold it either.
        let mut fs = spec("aergofs", &[]);
        fs.after = vec!["node".into()];
        fs.after_wait = ms(10_000);
        let mut node = spec("node", &[]);
        node.enabled = false;
        let mut sup = Supervisor::new(vec![node, fs], Backoff::default());
        let mut r = Fake::default();
        sup.tick(ms(0), &mut r);
        assert_eq!(r.spawned, vec!["aergofs"]);
    }

    #[test]
    fn crash_restarts_with_backoff_and_counts() {
        let mut sup = table();
        let mut r = Fake {
            ready: true,
            ..Default::default()
        };
        sup.tick(ms(0), &mut r);
        let pid = sup.pid("node").unwrap();
        assert_eq!(sup.on_exit(pid, crash(), ms(1000)).as_deref(), Some("node"));
        assert_eq!(sup.state("node"), Some(ServiceState::Backoff));
        sup.tick(ms(1100), &mut r); // 100 ms < 200 ms backoff
        assert_eq!(sup.state("node"), Some(ServiceState::Backoff));
        sup.tick(ms(1200), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Starting));
        let info = sup.report(ms(1300));
        assert_eq!(info[0].restarts, 1);
        assert_eq!(info[0].last_exit.as_ref().unwrap().signal, Some(9));
        assert_eq!(info[0].uptime_ms, Some(100));
        // A second quick crash doubles the delay.
        let pid = sup.pid("node").unwrap();
        sup.on_exit(pid, crash(), ms(1300));
        sup.tick(ms(1600), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Backoff));
        sup.tick(ms(1700), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Starting));
        assert_eq!(sup.report(ms(1700))[0].restarts, 2);
    }

    #[test]
    fn unhealthy_service_is_restarted_with_backoff_after_n_failures() {
        let mut node = spec("node", &[]);
        node.liveness = Some(Liveness {
            every: ms(1000),
            failures: 3,
        });
        let mut sup = Supervisor::new(vec![node], Backoff::default());
        let mut r = Fake {
            ready: true,
            ..Default::default()
        };
        sup.tick(ms(0), &mut r);
        sup.tick(ms(10), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Running));
        let pid = sup.pid("node").unwrap();
        // Healthy checks change nothing; a failure that recovers resets the count.
        sup.tick(ms(1010), &mut r);
        r.ready = false;
        sup.tick(ms(2010), &mut r);
        sup.tick(ms(2500), &mut r); // not due yet: no check
        r.ready = true;
        sup.tick(ms(3010), &mut r);
        assert!(r.killed.is_empty());
        // Three failures in a row: SIGTERM.
        r.ready = false;
        for t in [4010, 5010] {
            sup.tick(ms(t), &mut r);
            assert!(r.killed.is_empty(), "killed after fewer than 3 failures");
        }
        assert!(sup.report(ms(5010))[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("2 of 3")));
        sup.tick(ms(6010), &mut r);
        assert_eq!(r.killed, vec![(pid, libc::SIGTERM)]);
        assert_eq!(sup.state("node"), Some(ServiceState::Stopping));
        // Its exit counts as a crash: backoff, then a new start.
        sup.on_exit(pid, crash(), ms(6100));
        assert_eq!(sup.state("node"), Some(ServiceState::Backoff));
        let msg = sup
            .svcs
            .first()
            .and_then(|s| s.message.clone())
            .unwrap_or_default();
        assert!(msg.contains("unhealthy (3 health checks"), "{msg}");
        r.ready = true;
        sup.tick(ms(6400), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Starting));
        assert_eq!(r.spawned, vec!["node", "node"]);
        // A fresh process gets a fresh count: one failure does not stop it.
        sup.tick(ms(6500), &mut r);
        r.ready = false;
        sup.tick(ms(7500), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Running));
        assert_eq!(r.killed.len(), 1);
    }

    #[test]
    fn operator_stop_of_an_unhealthy_service_keeps_it_stopped() {
        let mut node = spec("node", &[]);
        node.liveness = Some(Liveness {
            every: ms(1000),
            failures: 1,
        });
        let mut sup = Supervisor::new(vec![node], Backoff::default());
        let mut r = Fake {
            ready: true,
            ..Default::default()
        };
        sup.tick(ms(0), &mut r);
        sup.tick(ms(10), &mut r);
        let pid = sup.pid("node").unwrap();
        r.ready = false;
        sup.tick(ms(1010), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Stopping));
        sup.stop("node", ms(1020), &mut r).unwrap();
        sup.on_exit(pid, crash(), ms(1100));
        assert_eq!(sup.state("node"), Some(ServiceState::Stopped));
    }

    #[test]
    fn missing_binary_is_reported_not_retried() {
        let mut sup = table();
        let mut r = Fake {
            missing: vec!["aergofs".into()],
            ..Default::default()
        };
        sup.tick(ms(0), &mut r);
        sup.tick(ms(5000), &mut r);
        assert_eq!(sup.state("aergofs"), Some(ServiceState::Missing));
        assert_eq!(r.spawned, vec!["node"]);
        let info = sup.report(ms(0));
        assert_eq!(info[1].message.as_deref(), Some("binary not in image"));
        assert!(sup.start("aergofs").is_err());
    }

    #[test]
    fn spawn_failure_backs_off() {
        let mut sup = Supervisor::new(vec![spec("node", &[])], Backoff::default());
        let mut r = Fake {
            fail_spawn: true,
            ..Default::default()
        };
        sup.tick(ms(0), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Backoff));
        r.fail_spawn = false;
        sup.tick(ms(250), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Starting));
    }

    #[test]
    fn operator_stop_holds_and_start_resumes() {
        let mut sup = table();
        let mut r = Fake {
            ready: true,
            ..Default::default()
        };
        sup.tick(ms(0), &mut r);
        let pid = sup.pid("aergofs").unwrap();
        sup.stop("aergofs", ms(10), &mut r).unwrap();
        assert_eq!(r.killed, vec![(pid, libc::SIGTERM)]);
        assert_eq!(sup.state("aergofs"), Some(ServiceState::Stopping));
        // Ignores SIGTERM: SIGKILL after the timeout.
        sup.tick(ms(5000), &mut r);
        assert_eq!(r.killed.len(), 1);
        sup.tick(ms(10_010), &mut r);
        assert_eq!(r.killed.last(), Some(&(pid, libc::SIGKILL)));
        sup.on_exit(pid, crash(), ms(10_020));
        assert_eq!(sup.state("aergofs"), Some(ServiceState::Stopped));
        sup.tick(ms(20_000), &mut r);
        assert_eq!(sup.state("aergofs"), Some(ServiceState::Stopped));
        sup.start("aergofs").unwrap();
        sup.tick(ms(20_100), &mut r);
        assert_eq!(sup.state("aergofs"), Some(ServiceState::Starting));
        assert!(matches!(sup.start("nope"), Err(SupError::Unknown(..))));
    }

    #[test]
    fn restart_stops_then_starts_immediately() {
        let mut sup = Supervisor::new(vec![spec("node", &[])], Backoff::default());
        let mut r = Fake::default();
        sup.tick(ms(0), &mut r);
        let pid = sup.pid("node").unwrap();
        sup.restart("node", ms(10), &mut r).unwrap();
        sup.on_exit(pid, ExitInfo::default(), ms(20));
        sup.tick(ms(30), &mut r);
        assert_eq!(sup.state("node"), Some(ServiceState::Starting));
        assert_ne!(sup.pid("node"), Some(pid));
        assert_eq!(sup.report(ms(30))[0].restarts, 1);
    }

    #[test]
    fn shutdown_stops_in_reverse_order_one_at_a_time() {
        let mut sup = table();
        let mut r = Fake {
            ready: true,
            ..Default::default()
        };
        sup.tick(ms(0), &mut r);
        sup.tick(ms(10), &mut r);
        sup.tick(ms(20), &mut r);
        let (n, f, d) = (
            sup.pid("node").unwrap(),
            sup.pid("aergofs").unwrap(),
            sup.pid("dashboard").unwrap(),
        );
        sup.begin_shutdown(Shutdown::Poweroff);
        assert!(sup.start("node").is_err());
        sup.tick(ms(30), &mut r);
        assert_eq!(r.killed, vec![(d, libc::SIGTERM)]);
        sup.tick(ms(40), &mut r);
        assert_eq!(r.killed.len(), 1);
        sup.on_exit(d, ExitInfo::default(), ms(50));
        sup.tick(ms(60), &mut r);
        assert_eq!(r.killed.last(), Some(&(f, libc::SIGTERM)));
        sup.on_exit(f, ExitInfo::default(), ms(70));
        sup.tick(ms(80), &mut r);
        assert_eq!(r.killed.last(), Some(&(n, libc::SIGTERM)));
        assert!(!sup.all_stopped());
        // The node exits during shutdown: it is not restarted.
        sup.on_exit(n, ExitInfo::default(), ms(90));
        sup.tick(ms(100), &mut r);
        assert!(sup.all_stopped());
        assert_eq!(sup.state("node"), Some(ServiceState::Stopped));
        assert_eq!(r.spawned.len(), 3);
    }

    #[test]
    fn signal_counts_as_crash() {
        let mut sup = Supervisor::new(vec![spec("node", &[])], Backoff::default());
        let mut r = Fake::default();
        sup.tick(ms(0), &mut r);
        let pid = sup.signal("node", 9, &mut r).unwrap();
        assert_eq!(r.killed, vec![(pid, 9)]);
        sup.on_exit(pid, crash(), ms(10));
        assert_eq!(sup.state("node"), Some(ServiceState::Backoff));
        assert!(sup.signal("node", 9, &mut r).is_err());
    }

    #[test]
    fn disabled_service_stays_stopped() {
        let mut s = spec("aergofs", &[]);
        s.enabled = false;
        let mut sup = Supervisor::new(vec![s], Backoff::default());
        let mut r = Fake::default();
        sup.tick(ms(0), &mut r);
        assert_eq!(sup.state("aergofs"), Some(ServiceState::Stopped));
        assert!(r.spawned.is_empty());
    }
}
