//! Local resource sampling on a dedicated thread (procfs reads and `statvfs` are blocking).

use std::time::Duration;

use aergo_os::sample::Sampler;
use tokio::sync::mpsc;

use super::Update;

/// Samples every `interval` until the channel closes.
pub fn spawn(sink: mpsc::Sender<Update>, interval: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("aergo-top-sample".into())
        .spawn(move || {
            let mut s = Sampler::new();
            loop {
                let r = s.sample().map_err(|e| e.to_string());
                if sink.blocking_send(Update::Resources(r)).is_err() {
                    return;
                }
                std::thread::sleep(interval);
            }
        })
        .map(|_| ())
}
