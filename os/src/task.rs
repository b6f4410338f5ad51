//! Vital tasks: a tokio task the process cannot work without (the node's network loop, the
//! libp2p swarm, AergoFS's volume committer and index flusher). A panic in one logs and aborts
//! the process, so its supervisor restarts it with backoff, instead of leaving a process that
//! answers its health checks while writes or imports hang forever.

/// The message of a panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Logs a vital task's death and aborts the process.
pub fn die(task: &str, why: &str) -> ! {
    tracing::error!(
        task,
        reason = why,
        "vital task died: aborting so the supervisor restarts the process"
    );
    eprintln!("vital task {task} died ({why}); aborting");
    std::process::abort()
}

/// Spawns a vital task on the current tokio runtime; a panic in it aborts the process. A task
/// that returns (or is cancelled at runtime shutdown) ends quietly.
pub fn spawn_vital<F>(task: &'static str, fut: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let h = tokio::spawn(fut);
    tokio::spawn(async move {
        if let Err(e) = h.await {
            if e.is_panic() {
                die(task, &panic_message(e.into_panic().as_ref()));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages() {
        let p = std::panic::catch_unwind(|| std::panic::panic_any("static")).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "static");
        let p =
            std::panic::catch_unwind(|| std::panic::panic_any(String::from("owned"))).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "owned");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(p.as_ref()), "a panic without a message");
    }

    #[test]
    fn a_vital_task_that_returns_ends_quietly() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            spawn_vital("test", async move {
                let _ = tx.send(());
            });
            rx.await.unwrap();
        });
    }
}
