//! The repositories this node hosts beside the root chain.
//!
//! A repository is registered by a `repo_create` transaction on the root chain. Once the
//! block holding it is final (irreversible), every node whose key is among the repository's
//! producers opens its ledger — a [`Chain`] of its own in the root's database (its own
//! keyspace) and I/O service, its block log under `DATA_DIR/repos/NAME/` — and runs it as a
//! [`Node`] of its own: mempool, producer thread, metrics and subscribers. Its Distributed
//! Directory is opened the same way, before it (`DATA_DIR/repos/NAME/directory`), and runs as
//! a node of its own too (address it with `repo: "NAME/dd"`). Nothing but the
//! root chain's registration is needed: on start, the registrations final at the root's LIB
//! are opened again, so a crash between the registration and the opening loses nothing
//! (the repository's genesis is derived from the registration, never stored alone).
//!
//! An idle repository costs its index and one parked producer thread: with nothing pending
//! it produces no block.

use crate::node::Node;
use aergo_chain::Chain;
use aergo_os::config::MempoolConfig;
use aergo_types::repo::Registration;
use aergo_types::{Block, TxKind};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A hosted repository.
pub struct Hosted {
    /// Its registration on the root chain.
    pub registration: Registration,
    /// The ledger's node (chain, mempool, producer).
    pub node: Arc<Node>,
    /// The directory's node.
    pub directory: Arc<Node>,
    producers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// Where and how repositories are opened (set once the root node runs).
struct HostCfg {
    dir: PathBuf,
    mempool: MempoolConfig,
}

/// The repositories a node hosts, and the registrations waiting for finality.
#[derive(Default)]
pub struct Repos {
    hosted: RwLock<BTreeMap<String, Arc<Hosted>>>,
    /// Names registered in committed root blocks, with the block height, not yet final.
    pending: Mutex<Vec<(String, u64)>>,
    cfg: Mutex<Option<HostCfg>>,
}

impl Repos {
    /// A hosted repository by name.
    pub fn get(&self, name: &str) -> Option<Arc<Hosted>> {
        self.hosted.read().get(name).cloned()
    }

    /// Every hosted repository, by name.
    pub fn all(&self) -> Vec<Arc<Hosted>> {
        self.hosted.read().values().cloned().collect()
    }

    /// Starts hosting: opens every repository registered at the root's LIB that this node
    /// produces. `root` is the root chain's node; repositories live under `data_dir/repos`.
    pub fn start(
        &self,
        root: &Node,
        data_dir: PathBuf,
        mempool: MempoolConfig,
    ) -> anyhow::Result<()> {
        *self.cfg.lock() = Some(HostCfg {
            dir: data_dir.join("repos"),
            mempool,
        });
        let lib = root.chain.finalized_height();
        let regs = aergo_chain::repos::registrations(&root.chain.view_at(lib)?)?;
        for reg in regs {
            if reg.is_producer(&root.key.public()) {
                // One repository that cannot open must not keep the root chain (and the
                // others) from running: it is reported and left unhosted.
                let name = reg.create.name.clone();
                if let Err(e) = self.host(root, reg) {
                    tracing::error!(repo = %name, error = %format!("{e:#}"), "cannot open repository; not hosting it");
                }
            }
        }
        Ok(())
    }

    /// After root blocks committed: notes their registrations and hosts those now final.
    pub fn on_root_committed<'a>(&self, root: &Node, blocks: impl Iterator<Item = &'a Block>) {
        {
            let mut p = self.pending.lock();
            for b in blocks {
                for t in &b.txs {
                    if t.tx.kind == TxKind::RepoCreate {
                        if let Ok(c) = aergo_types::repo::RepoCreate::decode(&t.tx.payload) {
                            p.push((c.name, b.header.height));
                        }
                    }
                }
            }
            if p.is_empty() {
                return;
            }
        }
        if let Err(e) = self.poll(root) {
            tracing::error!(error = %e, "cannot open a new repository");
        }
    }

    /// Hosts the pending registrations that became final.
    fn poll(&self, root: &Node) -> anyhow::Result<()> {
        if self.cfg.lock().is_none() {
            return Ok(());
        }
        let lib = root.chain.finalized_height();
        let ready: Vec<(String, u64)> = {
            let mut p = self.pending.lock();
            let (ready, wait) = p.drain(..).partition(|(_, h)| *h <= lib);
            *p = wait;
            ready
        };
        if ready.is_empty() {
            return Ok(());
        }
        let view = root.chain.view_at(lib)?;
        for (name, _) in ready {
            // A failed create (name taken) or a reverted block leaves no registration, or
            // another one: host what the final state says.
            let Some(reg) = aergo_chain::repos::registration(&view, &name)? else {
                continue;
            };
            if reg.is_producer(&root.key.public()) && self.get(&name).is_none() {
                if let Err(e) = self.host(root, reg) {
                    tracing::error!(repo = %name, error = %format!("{e:#}"), "cannot open repository; not hosting it");
                }
            }
        }
        Ok(())
    }

    fn host(&self, root: &Node, reg: Registration) -> anyhow::Result<()> {
        let (dir, mempool) = {
            let cfg = self.cfg.lock();
            let Some(c) = cfg.as_ref() else {
                anyhow::bail!("repository hosting is not configured");
            };
            (c.dir.join(&reg.create.name), c.mempool.clone())
        };
        let name = reg.create.name.clone();
        let genesis = reg.genesis(root.chain.genesis());
        // The directory first: a ledger is never hosted without it.
        let dd_genesis = reg.directory_genesis(root.chain.genesis());
        let dd: Arc<Chain> = Arc::new(root.chain.open_sibling(
            dd_genesis,
            &dir.join("directory"),
            None,
        )?);
        let chain: Arc<Chain> = Arc::new(root.chain.open_sibling(
            genesis,
            &dir.join("ledger"),
            Some(dd.clone()),
        )?);
        let directory = Arc::new(Node::new(dd, root.key.clone(), mempool.clone(), false));
        *directory.ledger.write() = Some(chain.clone());
        let node = Arc::new(Node::new(chain, root.key.clone(), mempool, false));
        let mut producers = Vec::new();
        for (n, label) in [(node.clone(), "producer"), (directory.clone(), "dd")] {
            producers.push(
                std::thread::Builder::new()
                    .name(format!("{label}-{name}"))
                    .spawn(move || crate::producer::run(n))?,
            );
        }
        tracing::info!(
            repo = %name,
            id = %node.chain.chain_id(),
            height = node.chain.tip().header.height,
            engine = node.chain.engine().name(),
            "hosting repository"
        );
        self.hosted.write().insert(
            name,
            Arc::new(Hosted {
                registration: reg,
                node,
                directory,
                producers: Mutex::new(producers),
            }),
        );
        Ok(())
    }

    /// Stops every repository's producer (each finishes its block in progress).
    pub fn shutdown(&self) {
        let all = self.all();
        for h in &all {
            for n in [&h.node, &h.directory] {
                n.shutdown.store(true, Ordering::SeqCst);
                n.wake();
            }
        }
        for h in &all {
            for t in h.producers.lock().drain(..) {
                if t.join().is_err() {
                    tracing::error!(repo = %h.registration.create.name, "producer thread panicked");
                }
            }
        }
    }
}
