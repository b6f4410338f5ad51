//! The event loop: owns the terminal, starts the data sources, merges their updates and key
//! presses into the [`App`], and redraws. Input is read on its own thread and everything
//! else arrives through one channel, so a dead node never delays a key press. The screen is
//! redrawn on input, on data, and once a second (for "N ago" texts), nothing more: that keeps
//! idle CPU low.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::app::{Action, App};
use crate::source::init::InitRequest;
use crate::source::node::NodeRequest;
use crate::source::{self, now_ms, Update};

/// Errors of the event loop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Terminal I/O failed.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    /// The init control endpoint could not be parsed.
    #[error("init endpoint: {0}")]
    Endpoint(String),
}

/// Where to find everything.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node RPC URL.
    pub rpc: String,
    /// Init control endpoint (socket path or host:port).
    pub init: String,
    /// Token for init's TCP endpoint.
    pub init_token: Option<String>,
    /// AergoFS URL.
    pub fs: String,
}

/// The node's poller, subscription and request server for one ledger. Their updates are
/// tagged with the ledger ([`Update::ForRepo`]) so that answers still in flight after a switch
/// are dropped.
struct NodeTasks {
    requests: mpsc::Sender<NodeRequest>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl NodeTasks {
    fn start(
        url: &str,
        repo: Option<String>,
        branch: Option<String>,
        data_tx: &mpsc::Sender<Update>,
    ) -> Self {
        let node = Arc::new(
            source::rpc::RpcNode::new(url, source::node::CALL_TIMEOUT)
                .with_repo(repo.clone())
                .with_branch(branch.clone()),
        );
        let (tx, mut rx) = mpsc::channel::<Update>(256);
        let live = Arc::new(AtomicBool::new(false));
        let (requests, req_rx) = mpsc::channel::<NodeRequest>(16);
        let mut tasks = vec![tokio::spawn(source::node::poll(
            node.clone(),
            tx.clone(),
            live.clone(),
            Duration::from_secs(1),
            Duration::from_secs(10),
        ))];
        // The new-blocks subscription is the root chain's `main`: a repository's or a
        // branch's blocks are polled.
        if repo.is_none() && branch.is_none() {
            tasks.push(tokio::spawn(source::node::subscribe(
                node.clone(),
                tx.clone(),
                live,
                Duration::from_secs(10),
            )));
        }
        tasks.push(tokio::spawn(source::node::serve(node, req_rx, tx.clone())));
        // The ledger's branches, always read from its `main` (not tagged with the branch).
        let (btx, mut brx) = mpsc::channel::<Update>(4);
        match aergo_rpc::RpcClient::new(url, source::node::CALL_TIMEOUT) {
            Ok(c) => tasks.push(tokio::spawn(source::branches::poll(
                c.with_repo(repo.clone()),
                btx,
                Duration::from_secs(2),
                Duration::from_secs(10),
            ))),
            Err(e) => {
                let _ = btx.try_send(Update::Branches(Err(format!("{url}: {e}"))));
            }
        }
        let out = data_tx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let u = tokio::select! {
                    Some(u) = rx.recv() => Update::ForBranch(branch.clone(), Box::new(u)),
                    Some(u) = brx.recv() => u,
                    else => return,
                };
                if out
                    .send(Update::ForRepo(repo.clone(), Box::new(u)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }));
        Self { requests, tasks }
    }

    fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[allow(clippy::large_enum_variant)] // short-lived messages; boxing buys nothing
enum Event {
    Input(TermEvent),
    Data(Update),
    Tick,
}

fn spawn_input(tx: mpsc::Sender<Event>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("aergo-top-input".into())
        .spawn(move || loop {
            match event::read() {
                Ok(e) => {
                    if tx.blocking_send(Event::Input(e)).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        })
        .map(|_| ())
}

/// Runs the dashboard until the user quits. Must be called inside a tokio runtime.
pub async fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    mut app: App,
    cfg: Config,
) -> Result<(), RunError> {
    let (data_tx, mut data_rx) = mpsc::channel::<Update>(1024);
    let (ev_tx, mut ev_rx) = mpsc::channel::<Event>(256);

    // Node (restarted on another ledger when the operator selects a repository)
    let mut node = NodeTasks::start(&cfg.rpc, app.repo.clone(), app.branch.clone(), &data_tx);
    match aergo_rpc::RpcClient::new(&cfg.rpc, source::node::CALL_TIMEOUT) {
        Ok(client) => {
            tokio::spawn(source::repos::poll(
                client,
                data_tx.clone(),
                Duration::from_secs(2),
                Duration::from_secs(10),
            ));
        }
        Err(e) => {
            let _ = data_tx.try_send(Update::Repos(Err(format!("{}: {e}", cfg.rpc))));
        }
    }

    // Init
    let endpoint = aergo_os::control::Endpoint::parse(&cfg.init)
        .map_err(|e| RunError::Endpoint(e.to_string()))?;
    let client = aergo_os::control::Client::new(endpoint, cfg.init_token.clone());
    let (init_req_tx, init_req_rx) = mpsc::channel::<InitRequest>(16);
    source::init::spawn(
        client,
        data_tx.clone(),
        init_req_rx,
        Duration::from_secs(2),
        Duration::from_secs(15),
    );

    // AergoFS, resources
    tokio::spawn(source::fs::poll(
        cfg.fs.clone(),
        data_tx.clone(),
        Duration::from_secs(5),
        Duration::from_secs(30),
    ));
    source::resources::spawn(data_tx.clone(), Duration::from_secs(1))?;

    // Forward data and ticks into the event channel.
    let node_data_tx = data_tx.clone();
    drop(data_tx);
    {
        let ev_tx = ev_tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                let e = tokio::select! {
                    u = data_rx.recv() => match u {
                        Some(u) => Event::Data(u),
                        None => return,
                    },
                    _ = tick.tick() => Event::Tick,
                };
                if ev_tx.send(e).await.is_err() {
                    return;
                }
            }
        });
    }
    spawn_input(ev_tx)?;

    app.now_ms = now_ms();
    terminal.draw(|f| crate::ui::draw(f, &app))?;
    while let Some(first) = ev_rx.recv().await {
        let mut next = Some(first);
        // Apply everything queued before drawing once.
        while let Some(e) = next {
            app.now_ms = now_ms();
            match e {
                Event::Tick => {}
                Event::Data(u) => app.apply(u),
                Event::Input(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => {
                    match app.key(k) {
                        Action::None => {}
                        Action::Quit => return Ok(()),
                        Action::OpenBlock(h) => {
                            let _ = node.requests.try_send(NodeRequest::Block(h));
                        }
                        Action::OpenTx(hash) => {
                            let _ = node.requests.try_send(NodeRequest::Tx(hash));
                        }
                        Action::Search(hash) => {
                            let _ = node.requests.try_send(NodeRequest::Search(hash));
                        }
                        Action::Restart(name) => {
                            let _ = init_req_tx.try_send(InitRequest::Restart(name));
                        }
                        Action::Logs(name) => {
                            let _ = init_req_tx.try_send(InitRequest::Logs(name));
                        }
                        Action::SelectRepo(repo) => {
                            node.stop();
                            node = NodeTasks::start(&cfg.rpc, repo, None, &node_data_tx);
                        }
                        Action::SelectBranch(branch) => {
                            node.stop();
                            node =
                                NodeTasks::start(&cfg.rpc, app.repo.clone(), branch, &node_data_tx);
                        }
                    }
                }
                Event::Input(_) => {}
            }
            next = ev_rx.try_recv().ok();
        }
        terminal.draw(|f| crate::ui::draw(f, &app))?;
    }
    Ok(())
}
