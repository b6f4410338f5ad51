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
//! A node that does not produce a repository hosts it when its node key is one of the
//! repository's nodes in the directory (`aergo repo nodes NAME add NODEKEY`). It cannot read
//! a private directory before it is a member, so it asks a producer ([`Repos::candidates_due`];
//! the network task sends the `Member` request, which carries its proven node key) and hosts
//! the repository on a yes; until then the registration is a candidate, asked again with
//! backoff. A member node runs no producer thread for it: it follows what the producers send.
//! A node that hosted a repository as a member opens it again at start (its data is its
//! own); whether it still receives anything is its peers' decision.
//!
//! An idle repository costs its index and, on its producers, one parked producer thread per
//! part: with nothing pending it produces no block.

use crate::node::Node;
use aergo_chain::Chain;
use aergo_os::config::MempoolConfig;
use aergo_types::repo::Registration;
use aergo_types::{Block, TxKind};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The node keys that may replicate a repository.
pub type Readers = Arc<HashSet<[u8; 32]>>;

/// A hosted repository.
pub struct Hosted {
    /// Its registration on the root chain.
    pub registration: Registration,
    /// The ledger's node (chain, mempool, producer).
    pub node: Arc<Node>,
    /// The directory's node.
    pub directory: Arc<Node>,
    /// Whether this node produces it (else it follows as one of its nodes).
    pub producer: bool,
    producers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// [`Hosted::readers`] at one directory tip (every push and answer asks).
    readers: Mutex<Option<(aergo_types::Hash, Readers)>>,
}

impl Hosted {
    /// Whether anyone may read it.
    pub fn public(&self) -> bool {
        self.registration.create.visibility == aergo_types::repo::Visibility::Public
    }

    /// The node keys that may replicate it: its directory's nodes at the directory's tip
    /// (a removal takes effect from the directory block that holds it).
    pub fn readers(&self) -> anyhow::Result<Readers> {
        let dd = &self.directory.chain;
        let tip = dd.tip();
        if let Some((at, r)) = self.readers.lock().as_ref() {
            if *at == tip.hash {
                return Ok(r.clone());
            }
        }
        let view = dd.view_at(tip.header.height)?;
        let r: Readers = Arc::new(
            aergo_chain::directory::nodes(&view)?
                .into_iter()
                .map(|k| k.0)
                .collect(),
        );
        *self.readers.lock() = Some((tip.hash, r.clone()));
        Ok(r)
    }

    /// Whether a peer with proven node key `key` may read it (and push to it).
    pub fn may_read(&self, key: Option<&[u8; 32]>) -> bool {
        self.public() || key.is_some_and(|k| self.readers().map(|r| r.contains(k)).unwrap_or(false))
    }

    /// The ledger's or the directory's node, by chain id.
    pub fn part(&self, chain: &[u8; 32]) -> Option<&Arc<Node>> {
        [&self.node, &self.directory]
            .into_iter()
            .find(|n| n.chain.chain_id().0 == *chain)
    }
}

/// A registration this node does not produce: it asks a producer whether it is one of the
/// repository's nodes.
struct Candidate {
    registration: Registration,
    next: Instant,
    backoff: Duration,
}

/// First and longest wait between two membership questions about one repository.
const ASK_FIRST: Duration = Duration::from_millis(500);
const ASK_MAX: Duration = Duration::from_secs(8);

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
    candidates: Mutex<BTreeMap<String, Candidate>>,
    /// The network's outbound queues (set once networking runs).
    outbox: Mutex<Option<crate::node::Outbox>>,
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

    /// The hosted repository one of whose chains (ledger or directory) has id `chain`.
    pub fn by_chain(&self, chain: &[u8; 32]) -> Option<(Arc<Hosted>, Arc<Node>)> {
        self.hosted
            .read()
            .values()
            .find_map(|h| h.part(chain).map(|n| (h.clone(), n.clone())))
    }

    /// Routes every hosted (and later hosted) repository's gossip into the network's queues.
    pub fn set_outbox(&self, out: crate::node::Outbox) {
        // Set before the walk: a repository hosted meanwhile installs it itself (`host`
        // installs after inserting), so none is left without one.
        *self.outbox.lock() = Some(out);
        for h in self.all() {
            self.install_outbox(&[&h.node, &h.directory]);
        }
    }

    /// The registrations whose membership question is due (each is asked again later, with
    /// backoff, unless [`Repos::host_member`] hosts it).
    pub fn candidates_due(&self) -> Vec<Registration> {
        let now = Instant::now();
        let mut c = self.candidates.lock();
        c.values_mut()
            .filter(|c| c.next <= now)
            .map(|c| {
                c.next = now + c.backoff;
                c.backoff = (c.backoff * 2).min(ASK_MAX);
                c.registration.clone()
            })
            .collect()
    }

    /// A producer said this node is one of `name`'s nodes: host it (no producer thread).
    pub fn host_member(&self, root: &Node, name: &str) -> anyhow::Result<()> {
        let Some(c) = self.candidates.lock().remove(name) else {
            return Ok(());
        };
        if self.get(name).is_some() {
            return Ok(());
        }
        if let Err(e) = self.host(root, c.registration.clone()) {
            // Asked again later.
            self.candidates.lock().insert(name.to_string(), c);
            return Err(e);
        }
        Ok(())
    }

    fn add_candidate(&self, reg: Registration) {
        self.candidates
            .lock()
            .entry(reg.create.name.clone())
            .or_insert(Candidate {
                registration: reg,
                next: Instant::now(),
                backoff: ASK_FIRST,
            });
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
            let name = reg.create.name.clone();
            let replicated = data_dir.join("repos").join(&name).join("ledger").exists();
            if reg.is_producer(&root.key.public()) || replicated {
                // One repository that cannot open must not keep the root chain (and the
                // others) from running: it is reported and left unhosted.
                if let Err(e) = self.host(root, reg) {
                    tracing::error!(repo = %name, error = %format!("{e:#}"), "cannot open repository; not hosting it");
                }
            } else {
                self.add_candidate(reg);
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
            if self.get(&name).is_some() {
                continue;
            }
            if reg.is_producer(&root.key.public()) {
                if let Err(e) = self.host(root, reg) {
                    tracing::error!(repo = %name, error = %format!("{e:#}"), "cannot open repository; not hosting it");
                }
            } else {
                self.add_candidate(reg);
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
        *directory.ledger_node.write() = Some(Arc::downgrade(&node));
        node.branches.configure(dir.join("branches"))?;
        node.branches.sync(&node)?;
        // Before the producers start (their first block is gossiped), and again once hosted
        // (a `set_outbox` that walked the hosted set meanwhile did not see this one).
        self.install_outbox(&[&node, &directory]);
        let producer = reg.is_producer(&root.key.public());
        let mut producers = Vec::new();
        if producer {
            for (n, label) in [(node.clone(), "producer"), (directory.clone(), "dd")] {
                producers.push(
                    std::thread::Builder::new()
                        .name(format!("{label}-{name}"))
                        .spawn(move || crate::producer::run(n))?,
                );
            }
        }
        tracing::info!(
            repo = %name,
            id = %node.chain.chain_id(),
            height = node.chain.tip().header.height,
            engine = node.chain.engine().name(),
            role = if producer { "producer" } else { "member" },
            "hosting repository"
        );
        let parts = [node.clone(), directory.clone()];
        self.hosted.write().insert(
            name,
            Arc::new(Hosted {
                registration: reg,
                node,
                directory,
                producer,
                producers: Mutex::new(producers),
                readers: Mutex::new(None),
            }),
        );
        self.install_outbox(&[&parts[0], &parts[1]]);
        Ok(())
    }

    /// Gives `nodes` the network's outbound queues, if networking runs.
    fn install_outbox(&self, nodes: &[&Arc<Node>]) {
        let Some(out) = self.outbox.lock().clone() else {
            return;
        };
        for n in nodes {
            let mine = crate::node::Outbox {
                chain: n.chain.chain_id().0,
                ..out.clone()
            };
            *n.net.outbound.lock() = Some(mine.clone());
            // Its branches hosted before this (at start) get theirs too.
            n.branches.set_outbox(&mine);
        }
    }

    /// Stops every repository's producer (each finishes its block in progress).
    pub fn shutdown(&self) {
        let all = self.all();
        for h in &all {
            h.node.branches.shutdown();
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
