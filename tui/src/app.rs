//! Application state and key handling.
//!
//! [`App::key`] turns a key press into a state change and, when data must be fetched or an
//! operator action carried out, an [`Action`] for the event loop. It never does I/O, so every
//! key path is unit-testable. [`App::apply`] merges data arriving from the background sources.

use std::cell::Cell;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::model::{BlockRow, MempoolTx, Model};
use crate::source::Update;
use crate::theme::Theme;
use aergo_os::control::{LogLine, ServiceInfo};

/// The ten screens, in tab order (keys 1–9, then 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Node identity, chain head, alerts.
    Overview,
    /// Live blocks and the block → tx → receipt drill-down.
    Blocks,
    /// Pending transactions.
    Mempool,
    /// Peers and producers.
    Peers,
    /// CPU, memory, disks, network.
    Resources,
    /// AergoFS volumes and disk space.
    Storage,
    /// Init's services.
    Services,
    /// Service logs.
    Logs,
    /// The root chain and the repositories; Enter selects the ledger the node screens read.
    Repos,
    /// The selected ledger's branches; Enter makes the node screens read one.
    Branches,
}

impl Screen {
    /// All screens in order.
    pub const ALL: [Screen; 10] = [
        Screen::Overview,
        Screen::Blocks,
        Screen::Mempool,
        Screen::Peers,
        Screen::Resources,
        Screen::Storage,
        Screen::Services,
        Screen::Logs,
        Screen::Repos,
        Screen::Branches,
    ];

    /// Position (0-based).
    pub fn index(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    /// Tab title.
    pub fn title(self) -> &'static str {
        match self {
            Screen::Overview => "Overview",
            Screen::Blocks => "Blocks",
            Screen::Mempool => "Mempool",
            Screen::Peers => "Peers",
            Screen::Resources => "Resources",
            Screen::Storage => "Storage",
            Screen::Services => "Services",
            Screen::Logs => "Logs",
            Screen::Repos => "Repos",
            Screen::Branches => "Branches",
        }
    }

    /// The digit key that shows it (`1`–`9`, then `0`).
    pub fn key(self) -> char {
        const KEYS: [char; 10] = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '0'];
        KEYS.get(self.index()).copied().unwrap_or('0')
    }

    /// Tab title where the tab line is narrow (under 110 columns).
    pub fn short_title(self) -> &'static str {
        match self {
            Screen::Overview => "Over",
            Screen::Services => "Svc",
            Screen::Resources => "Res",
            Screen::Branches => "Br",
            s => s.title(),
        }
    }

    fn offset(self, by: isize) -> Screen {
        let n = Screen::ALL.len() as isize;
        let i = (self.index() as isize + by).rem_euclid(n) as usize;
        Screen::ALL[i]
    }

    fn filterable(self) -> bool {
        matches!(
            self,
            Screen::Blocks
                | Screen::Mempool
                | Screen::Services
                | Screen::Logs
                | Screen::Repos
                | Screen::Branches
        )
    }
}

/// A drill-down view pushed on top of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// A block by height.
    Block(u64),
    /// A transaction by hash.
    Tx(String),
    /// The receipt (and events) of a transaction.
    Receipt(String),
    /// A search of the chain for a block or transaction hash, in flight or found nothing.
    Search(String),
}

/// What the event loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave the program.
    Quit,
    /// Fetch a block with its transactions.
    OpenBlock(u64),
    /// Fetch a transaction and its receipt.
    OpenTx(String),
    /// Search the chain for a block or transaction with this hash.
    Search(String),
    /// Restart a service (confirmed).
    Restart(String),
    /// Show logs of this service.
    Logs(String),
    /// Read this repository from now on (`None`: the root chain).
    SelectRepo(Option<String>),
    /// Read this branch of the selected ledger from now on (`None`: `main`).
    SelectBranch(Option<String>),
}

/// Where the data comes from, shown in the status line and outage banners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// Node RPC URL.
    pub rpc: String,
    /// Init control endpoint.
    pub init: String,
    /// AergoFS URL.
    pub fs: String,
}

/// The whole UI state.
#[derive(Debug)]
pub struct App {
    /// Data.
    pub model: Model,
    /// Current screen.
    pub screen: Screen,
    /// Selected row per screen (index into the filtered rows).
    pub sel: [usize; 10],
    /// Filter text per screen.
    pub filters: [String; 10],
    /// Whether the filter of the current screen is being typed.
    pub editing_filter: bool,
    /// Drill-down stacks of the Blocks and Mempool screens.
    pub details: [Vec<Detail>; 10],
    /// Selected transaction inside an open block.
    pub detail_sel: usize,
    /// Help overlay shown.
    pub help: bool,
    /// Service awaiting a y/n restart confirmation.
    pub confirm: Option<String>,
    /// `q` and Ctrl-C disabled (appliance console).
    pub no_quit: bool,
    /// Colours and glyphs.
    pub theme: Theme,
    /// Current time (ms since the epoch), advanced by the event loop.
    pub now_ms: u64,
    /// Service whose logs are shown.
    pub log_service: Option<String>,
    /// Logs follow the tail.
    pub follow: bool,
    /// Long log lines wrap.
    pub wrap: bool,
    /// First shown log line when not following.
    pub log_top: usize,
    /// Data sources, for display.
    pub endpoints: Endpoints,
    /// Rows of the last drawn table (for PgUp/PgDn), set while drawing.
    pub page: Cell<usize>,
    /// A dev node on a host, not the appliance: no init and no AergoFS are expected, so their
    /// absence is no alert (`--host-mode`, or detected when init's socket does not exist).
    pub host_mode: bool,
    /// The height being typed after `g` on the Blocks screen.
    pub goto: Option<String>,
    /// The repository the node screens read (`None`: the root chain, `aergo`).
    pub repo: Option<String>,
    /// The branch of that ledger they read (`None`: `main`; `a/b`: branch `b` of `a`).
    pub branch: Option<String>,
}

impl App {
    /// A fresh app.
    pub fn new(theme: Theme, no_quit: bool, endpoints: Endpoints, now_ms: u64) -> Self {
        Self {
            model: Model::default(),
            screen: Screen::Overview,
            sel: [0; 10],
            filters: Default::default(),
            editing_filter: false,
            details: Default::default(),
            detail_sel: 0,
            help: false,
            confirm: None,
            no_quit,
            theme,
            now_ms,
            log_service: None,
            follow: true,
            wrap: false,
            log_top: 0,
            endpoints,
            page: Cell::new(10),
            host_mode: false,
            goto: None,
            repo: None,
            branch: None,
        }
    }

    /// The name of the ledger the node screens read (`aergo` for the root chain).
    pub fn ledger(&self) -> &str {
        self.repo.as_deref().unwrap_or(crate::model::ROOT)
    }

    /// The ledger and branch the node screens read, as the status line shows it: `aergo`,
    /// `team-a`, `aergo:feat`.
    pub fn ledger_label(&self) -> String {
        match &self.branch {
            Some(b) => format!("{}:{b}", self.ledger()),
            None => self.ledger().to_string(),
        }
    }

    /// The branch the node screens read (`main` when none is selected).
    pub fn branch_name(&self) -> &str {
        self.branch.as_deref().unwrap_or("main")
    }

    /// Branches shown under the current filter (`main` first, as a tree).
    pub fn visible_branches(&self) -> Vec<&crate::model::BranchRow> {
        let f = &self.filters[Screen::Branches.index()];
        self.model
            .branches
            .get()
            .map(|v| {
                v.iter()
                    .filter(|r| Self::matches(f, &[&r.name, &r.producer, &r.state]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops what the node screens showed (another ledger or branch is read from now on).
    fn drop_node_feeds(&mut self) {
        let m = &mut self.model;
        m.chain = Default::default();
        m.node = Default::default();
        m.blocks = Default::default();
        m.mempool = Default::default();
        m.peers = Default::default();
        m.consensus = Default::default();
        m.block = Default::default();
        m.tx = Default::default();
        m.merges.clear();
        m.ws_live = false;
        for s in [Screen::Blocks, Screen::Mempool] {
            self.details[s.index()].clear();
            self.sel[s.index()] = 0;
        }
        self.detail_sel = 0;
    }

    /// Makes the node screens read branch `name` of the selected ledger (`main`: the ledger
    /// itself): what they showed belongs to the previous branch and is dropped.
    pub fn select_branch(&mut self, name: &str) -> Action {
        let branch = Some(name.to_string()).filter(|n| n != "main");
        if branch == self.branch {
            return Action::None;
        }
        self.branch = branch.clone();
        self.drop_node_feeds();
        self.flash(format!("reading {}", self.ledger_label()));
        Action::SelectBranch(branch)
    }

    /// The selected repository is private and refuses this dashboard's unsigned reads.
    pub fn private_denied(&self) -> bool {
        self.repo.is_some()
            && self
                .model
                .chain
                .down
                .as_ref()
                .is_some_and(|d| d.error == crate::model::PRIVATE_MSG)
    }

    /// Repositories shown under the current filter (root first).
    pub fn visible_repos(&self) -> Vec<&crate::model::RepoRow> {
        let f = &self.filters[Screen::Repos.index()];
        self.model
            .repos
            .get()
            .map(|v| {
                v.iter()
                    .filter(|r| Self::matches(f, &[&r.name, &r.engine, &r.visibility]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Makes the node screens read `name` (`aergo`: the root chain): what they showed
    /// belongs to the previous ledger and is dropped.
    pub fn select_repo(&mut self, name: &str) -> Action {
        let repo = Some(name.to_string()).filter(|n| n != crate::model::ROOT);
        if repo == self.repo {
            return Action::None;
        }
        self.repo = repo.clone();
        self.branch = None;
        self.model.branches = Default::default();
        self.sel[Screen::Branches.index()] = 0;
        self.drop_node_feeds();
        self.flash(format!("reading {}", self.ledger()));
        Action::SelectRepo(repo)
    }

    /// The filter of the current screen.
    pub fn filter(&self) -> &str {
        &self.filters[self.screen.index()]
    }

    /// The open drill-down view of the current screen, if any.
    pub fn detail(&self) -> Option<&Detail> {
        self.details[self.screen.index()].last()
    }

    fn matches(filter: &str, fields: &[&str]) -> bool {
        if filter.is_empty() {
            return true;
        }
        let f = filter.to_lowercase();
        fields.iter().any(|s| s.to_lowercase().contains(&f))
    }

    /// The Blocks filter as a height, when it is a number.
    pub fn height_filter(&self) -> Option<u64> {
        let digits = self.filters[Screen::Blocks.index()].replace(',', "");
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// Blocks shown under the current filter (an exact height match first).
    pub fn visible_blocks(&self) -> Vec<&BlockRow> {
        let mut v = self.filtered_blocks();
        if let Some(h) = self.height_filter() {
            if let Some(i) = v.iter().position(|b| b.height == h) {
                let exact = v.remove(i);
                v.insert(0, exact);
            }
        }
        v
    }

    fn filtered_blocks(&self) -> Vec<&BlockRow> {
        let f = &self.filters[Screen::Blocks.index()];
        self.model
            .blocks
            .get()
            .map(|v| {
                v.iter()
                    .filter(|b| {
                        // Digits select by height; 8 or more hex digits are a hash prefix;
                        // anything else searches hash and producer.
                        let digits = f.replace(',', "");
                        let prefix = hash_prefix(f);
                        let by_prefix = prefix
                            .as_ref()
                            .is_some_and(|p| b.hash.to_ascii_lowercase().starts_with(p));
                        if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
                            b.height.to_string().contains(&digits) || by_prefix
                        } else if prefix.is_some() {
                            by_prefix
                        } else {
                            Self::matches(f, &[&b.hash, &b.producer])
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pending transactions shown under the current filter.
    pub fn visible_mempool(&self) -> Vec<&MempoolTx> {
        let f = &self.filters[Screen::Mempool.index()];
        self.model
            .mempool
            .get()
            .map(|m| {
                m.txs
                    .iter()
                    .filter(|t| Self::matches(f, &[&t.hash, &t.from]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Services shown under the current filter.
    pub fn visible_services(&self) -> Vec<&ServiceInfo> {
        let f = &self.filters[Screen::Services.index()];
        self.model
            .init
            .get()
            .map(|i| {
                i.services
                    .iter()
                    .filter(|s| Self::matches(f, &[&s.name, s.state.as_str()]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Log lines shown under the current filter.
    pub fn visible_logs(&self) -> Vec<&LogLine> {
        let f = &self.filters[Screen::Logs.index()];
        self.model
            .logs
            .get()
            .map(|v| v.iter().filter(|l| Self::matches(f, &[&l.text])).collect())
            .unwrap_or_default()
    }

    /// Names of the services whose logs can be shown (init's own log first).
    pub fn log_services(&self) -> Vec<String> {
        let mut v = vec!["init".to_string()];
        if let Some(i) = self.model.init.get() {
            v.extend(i.services.iter().map(|s| s.name.clone()));
        }
        v
    }

    fn rows(&self) -> usize {
        match (self.screen, self.detail()) {
            (Screen::Blocks, None) => self.visible_blocks().len(),
            (Screen::Blocks, Some(Detail::Block(h))) => self
                .model
                .block
                .get()
                .filter(|b| b.summary.height == *h)
                .map(|b| b.txs.len())
                .unwrap_or(0),
            (Screen::Mempool, None) => self.visible_mempool().len(),
            (Screen::Services, _) => self.visible_services().len(),
            (Screen::Repos, _) => self.visible_repos().len(),
            (Screen::Branches, _) => self.visible_branches().len(),
            (Screen::Logs, _) => self.visible_logs().len(),
            _ => 0,
        }
    }

    fn in_block_detail(&self) -> bool {
        matches!(self.detail(), Some(Detail::Block(_)))
    }

    fn cursor(&mut self) -> &mut usize {
        if self.in_block_detail() {
            &mut self.detail_sel
        } else if self.screen == Screen::Logs {
            &mut self.log_top
        } else {
            &mut self.sel[self.screen.index()]
        }
    }

    fn move_by(&mut self, by: isize) {
        let rows = self.rows();
        if self.screen == Screen::Logs && !self.in_block_detail() {
            if self.follow {
                self.log_top = rows.saturating_sub(self.page.get());
            }
            self.follow = false;
        }
        let c = self.cursor();
        let max = rows.saturating_sub(1) as isize;
        *c = (*c as isize + by).clamp(0, max.max(0)) as usize;
    }

    fn switch(&mut self, s: Screen) -> Action {
        self.screen = s;
        self.editing_filter = false;
        if s == Screen::Logs && self.log_service.is_none() {
            let name = self
                .model
                .init
                .get()
                .and_then(|i| i.services.iter().find(|s| s.name == "node"))
                .map(|s| s.name.clone())
                .unwrap_or_else(|| "init".to_string());
            self.log_service = Some(name.clone());
            return Action::Logs(name);
        }
        Action::None
    }

    fn cycle_log_service(&mut self, by: isize) -> Action {
        let names = self.log_services();
        let cur = self
            .log_service
            .as_ref()
            .and_then(|n| names.iter().position(|x| x == n))
            .unwrap_or(0) as isize;
        let i = (cur + by).rem_euclid(names.len() as isize) as usize;
        let name = names[i].clone();
        self.log_service = Some(name.clone());
        self.model.logs = Default::default();
        self.follow = true;
        Action::Logs(name)
    }

    /// Handles one key press.
    pub fn key(&mut self, k: KeyEvent) -> Action {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && k.code == KeyCode::Char('c') {
            return self.quit();
        }
        if self.help {
            self.help = false;
            return Action::None;
        }
        if let Some(name) = self.confirm.clone() {
            return match k.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.confirm = None;
                    self.flash(format!("restarting {name}…"));
                    Action::Restart(name)
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    self.confirm = None;
                    Action::None
                }
                _ => Action::None,
            };
        }
        if let Some(typed) = self.goto.as_mut() {
            match k.code {
                KeyCode::Char(c) if c.is_ascii_digit() && typed.len() < 20 => typed.push(c),
                KeyCode::Backspace => {
                    typed.pop();
                }
                KeyCode::Enter => {
                    let h = typed.parse::<u64>().ok();
                    self.goto = None;
                    if let Some(h) = h {
                        let i = Screen::Blocks.index();
                        self.details[i].clear();
                        self.details[i].push(Detail::Block(h));
                        self.detail_sel = 0;
                        return Action::OpenBlock(h);
                    }
                }
                KeyCode::Esc => self.goto = None,
                _ => {}
            }
            return Action::None;
        }
        if self.editing_filter {
            let i = self.screen.index();
            match k.code {
                KeyCode::Enter => {
                    self.editing_filter = false;
                    if self.screen == Screen::Blocks {
                        return self.search_chain();
                    }
                }
                KeyCode::Esc => {
                    self.filters[i].clear();
                    self.editing_filter = false;
                }
                KeyCode::Backspace => {
                    self.filters[i].pop();
                }
                KeyCode::Char(c) if !ctrl => {
                    self.filters[i].push(c);
                    self.sel[i] = 0;
                }
                _ => {}
            }
            return Action::None;
        }
        let page = self.page.get().max(1) as isize;
        match k.code {
            KeyCode::Char('q') => return self.quit(),
            KeyCode::Char('?') => self.help = true,
            KeyCode::Tab => return self.switch(self.screen.offset(1)),
            KeyCode::BackTab => return self.switch(self.screen.offset(-1)),
            KeyCode::Char(c @ '1'..='9') => {
                let i = c as usize - '1' as usize;
                return self.switch(Screen::ALL[i]);
            }
            KeyCode::Char('0') => return self.switch(Screen::Branches),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-page),
            KeyCode::PageDown => self.move_by(page),
            // `g` then a height opens that block (Blocks screen); elsewhere `g` is Home.
            KeyCode::Char('g') if self.screen == Screen::Blocks => self.goto = Some(String::new()),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => {
                if self.screen == Screen::Logs {
                    self.follow = true;
                } else {
                    self.move_by(isize::MAX / 2);
                }
            }
            KeyCode::Left | KeyCode::Char('h') => {
                if self.screen == Screen::Logs {
                    return self.cycle_log_service(-1);
                }
                self.back();
            }
            KeyCode::Right | KeyCode::Char('l') => {
                if self.screen == Screen::Logs {
                    return self.cycle_log_service(1);
                }
                return self.enter();
            }
            KeyCode::Enter => return self.enter(),
            // On Branches, Esc with nothing to clear goes back to `main`.
            KeyCode::Esc | KeyCode::Backspace
                if self.screen == Screen::Branches
                    && self.filter().is_empty()
                    && self.branch.is_some() =>
            {
                return self.select_branch("main");
            }
            KeyCode::Esc | KeyCode::Backspace => self.back(),
            KeyCode::Char('/') if self.screen.filterable() => self.editing_filter = true,
            KeyCode::Char('r') if self.screen == Screen::Services => {
                let name = self
                    .visible_services()
                    .get(self.sel[Screen::Services.index()])
                    .map(|s| s.name.clone());
                self.confirm = name;
            }
            KeyCode::Char('f') if self.screen == Screen::Logs => {
                self.follow = !self.follow;
                if !self.follow {
                    self.log_top = self.rows().saturating_sub(self.page.get());
                }
            }
            KeyCode::Char('w') if self.screen == Screen::Logs => self.wrap = !self.wrap,
            _ => {}
        }
        Action::None
    }

    /// Enter after typing a Blocks filter: what the loaded rows do not hold is looked up on
    /// the chain. A height not loaded opens that block; a full hash (64 hex digits) that is
    /// no loaded block's is searched for as a block, then as a transaction (opening the block
    /// holding it); a shorter hash prefix can only match loaded rows, and says so when none
    /// does. Otherwise the filtered list stays.
    fn search_chain(&mut self) -> Action {
        let i = Screen::Blocks.index();
        if !self.visible_blocks().is_empty() {
            return Action::None;
        }
        if let Some(h) = self.height_filter() {
            self.details[i].push(Detail::Block(h));
            self.detail_sel = 0;
            return Action::OpenBlock(h);
        }
        match hash_prefix(&self.filters[i]) {
            Some(f) if f.len() == 64 => self.start_search(f),
            Some(f) => {
                self.flash(format!(
                    "no loaded block's hash starts with {f}; type the whole hash (64 hex digits) to search the chain"
                ));
                Action::None
            }
            None => Action::None,
        }
    }

    fn start_search(&mut self, hash: String) -> Action {
        self.model.search_miss = None;
        self.details[Screen::Blocks.index()].push(Detail::Search(hash.clone()));
        Action::Search(hash)
    }

    /// The answer to a chain search, applied only while that search is still on screen.
    fn found(&mut self, query: String, r: crate::source::Fetched<crate::model::Found>) {
        use crate::model::Found;
        let i = Screen::Blocks.index();
        if self.details[i].last() != Some(&Detail::Search(query.clone())) {
            return;
        }
        let now = self.now_ms;
        let open = |app: &mut App, d: Detail| {
            app.details[i].pop();
            app.details[i].push(d);
        };
        match r {
            Ok(Found::Block(b)) => {
                open(self, Detail::Block(b.summary.height));
                self.detail_sel = 0;
                self.model.block.ok(b, now);
            }
            Ok(Found::TxInBlock { block, index }) => {
                open(self, Detail::Block(block.summary.height));
                self.detail_sel = index.min(block.txs.len().saturating_sub(1));
                self.model.block.ok(block, now);
                self.flash(format!(
                    "transaction {} is in block {}",
                    crate::fmt::short(&query, 17),
                    crate::fmt::thousands(self.model.block.get().map_or(0, |b| b.summary.height))
                ));
            }
            Ok(Found::PendingTx(t)) => {
                open(self, Detail::Tx(t.tx.hash.clone()));
                self.model.tx.ok(t, now);
            }
            Ok(Found::Nothing) => {
                let msg = format!("no block and no transaction on the chain has hash {query}");
                self.model.search_miss = Some((query, msg));
            }
            Err(e) => {
                let msg = format!("the search for {query} failed: {e}");
                self.model.search_miss = Some((query, msg));
            }
        }
    }

    fn flash(&mut self, msg: String) {
        self.model.flash = Some(msg);
        self.model.flash_ms = self.now_ms;
    }

    /// The flash message, while it is fresh.
    pub fn current_flash(&self) -> Option<&str> {
        let fresh = self.now_ms.saturating_sub(self.model.flash_ms) < crate::model::FLASH_MS;
        self.model.flash.as_deref().filter(|_| fresh)
    }

    fn quit(&mut self) -> Action {
        if self.no_quit {
            self.flash("quitting is disabled on this console".into());
            Action::None
        } else {
            Action::Quit
        }
    }

    fn back(&mut self) {
        let i = self.screen.index();
        if self.details[i].pop().is_some() {
            return;
        }
        if !self.filters[i].is_empty() {
            self.filters[i].clear();
            self.sel[i] = 0;
        }
    }

    fn enter(&mut self) -> Action {
        let i = self.screen.index();
        match (self.screen, self.detail().cloned()) {
            (Screen::Blocks, None) => {
                // A typed block or transaction hash (64 hex digits) that matches no loaded
                // block is looked up on the chain.
                if let Some(f) = hash_prefix(&self.filters[i]).filter(|f| f.len() == 64) {
                    if self.visible_blocks().is_empty() {
                        return self.start_search(f);
                    }
                }
                // A typed height opens that block even when it is not in the loaded list.
                let typed = self.height_filter().filter(|_| self.sel[i] == 0);
                let h = typed.or_else(|| self.visible_blocks().get(self.sel[i]).map(|b| b.height));
                if let Some(h) = h {
                    self.details[i].push(Detail::Block(h));
                    self.detail_sel = 0;
                    return Action::OpenBlock(h);
                }
            }
            (Screen::Blocks, Some(Detail::Block(h))) => {
                let hash = self
                    .model
                    .block
                    .get()
                    .filter(|b| b.summary.height == h)
                    .and_then(|b| b.txs.get(self.detail_sel))
                    .map(|t| t.hash.clone());
                if let Some(hash) = hash {
                    self.details[i].push(Detail::Tx(hash.clone()));
                    return Action::OpenTx(hash);
                }
            }
            (Screen::Mempool, None) => {
                let hash = self
                    .visible_mempool()
                    .get(self.sel[i])
                    .map(|t| t.hash.clone());
                if let Some(hash) = hash {
                    self.details[i].push(Detail::Tx(hash.clone()));
                    return Action::OpenTx(hash);
                }
            }
            (_, Some(Detail::Tx(hash))) => {
                self.details[i].push(Detail::Receipt(hash));
            }
            (Screen::Repos, _) => {
                let name = self
                    .visible_repos()
                    .get(self.sel[i])
                    .map(|r| r.name.clone());
                if let Some(name) = name {
                    let a = self.select_repo(&name);
                    self.screen = Screen::Overview;
                    return a;
                }
            }
            (Screen::Branches, _) => {
                let row = self
                    .visible_branches()
                    .get(self.sel[i])
                    .map(|r| (r.name.clone(), r.readable(), r.state.clone()));
                match row {
                    Some((name, true, _)) => {
                        let a = self.select_branch(&name);
                        self.screen = Screen::Overview;
                        return a;
                    }
                    Some((name, false, state)) => {
                        self.flash(format!(
                            "branch {name} is {state}: this node cannot read it"
                        ));
                    }
                    None => {}
                }
            }
            (Screen::Services, _) => {
                let name = self
                    .visible_services()
                    .get(self.sel[i])
                    .map(|s| s.name.clone());
                if let Some(name) = name {
                    self.screen = Screen::Logs;
                    self.log_service = Some(name.clone());
                    self.model.logs = Default::default();
                    self.follow = true;
                    return Action::Logs(name);
                }
            }
            _ => {}
        }
        Action::None
    }

    /// Merges data from a background source.
    pub fn apply(&mut self, u: Update) {
        let now = self.now_ms;
        let m = &mut self.model;
        match u {
            Update::Chain(r) => match r {
                Ok(v) => {
                    // A different chain, or the same one restarted from scratch: the block
                    // list no longer describes it.
                    let reset = m
                        .chain
                        .get()
                        .is_some_and(|old| old.chain_id != v.chain_id || v.height < old.height);
                    if reset {
                        m.blocks = Default::default();
                    }
                    m.chain.ok(v, now)
                }
                Err(e) => m.chain.fail(e, now),
            },
            Update::Node(r) => match r {
                Ok(v) => m.node.ok(v, now),
                Err(e) => m.node.fail(e, now),
            },
            Update::Blocks(r) => match r {
                Ok(v) => m.merge_blocks(v, now),
                Err(e) => m.blocks.fail(e, now),
            },
            Update::NewBlock(b) => {
                let keep_top = self.sel[Screen::Blocks.index()] == 0;
                m.add_block(b, now);
                if !keep_top {
                    // keep the same block selected as the list grows at the top
                    self.sel[Screen::Blocks.index()] += 1;
                }
            }
            Update::Subscribed(live) => m.ws_live = live,
            Update::Mempool(r) => match r {
                Ok(v) => {
                    if let Some(p) = m.mempool.value.as_ref().and_then(|o| o.pipeline.clone()) {
                        m.pipeline_prev = Some(p);
                    }
                    m.mempool.ok(v, now)
                }
                Err(e) => m.mempool.fail(e, now),
            },
            Update::Peers(r) => match r {
                Ok(v) => m.peers.ok(v, now),
                Err(e) => m.peers.fail(e, now),
            },
            Update::Consensus(r) => match r {
                Ok(v) => m.consensus.ok(v, now),
                Err(e) => m.consensus.fail(e, now),
            },
            Update::Block(h, r) => {
                if self.details[Screen::Blocks.index()].contains(&Detail::Block(h)) {
                    match r {
                        Ok(v) => {
                            if let Some(mg) = &v.merge {
                                m.merges.insert(v.summary.height, mg.label());
                            }
                            m.block.ok(v, now)
                        }
                        Err(e) => {
                            m.block.value = None;
                            m.block.fail(e, now)
                        }
                    }
                }
            }
            Update::Found(query, r) => self.found(query, r),
            Update::Tx(hash, r) => match r {
                Ok(v) => m.tx.ok(v, now),
                Err(e) => {
                    m.tx.value = None;
                    m.tx.fail(format!("{}: {e}", crate::fmt::short(&hash, 17)), now)
                }
            },
            Update::Init(r) => match r {
                Ok(v) => m.init.ok(v, now),
                Err(e) => m.init.fail(e, now),
            },
            Update::Logs(service, r) => {
                if self.log_service.as_deref() == Some(service.as_str()) {
                    match r {
                        Ok(v) => m.logs.ok(v, now),
                        Err(e) => m.logs.fail(e, now),
                    }
                }
            }
            Update::LogLine(line) => {
                if self.log_service.as_deref() == Some(line.service.as_str()) {
                    let mut v = m.logs.value.take().unwrap_or_default();
                    v.push(line);
                    let excess = v.len().saturating_sub(crate::source::MAX_LOG_LINES);
                    v.drain(..excess);
                    m.logs.ok(v, now);
                }
            }
            Update::Storage(r) => match r {
                Ok(v) => m.storage.ok(v, now),
                Err(e) => m.storage.fail(e, now),
            },
            Update::Resources(r) => match r {
                Ok(s) => m.resources.push(s),
                Err(e) => m.resources.error = Some(e),
            },
            Update::Flash(s) => {
                m.flash = Some(s);
                m.flash_ms = now;
            }
            Update::Repos(r) => match r {
                Ok(v) => m.repos.ok(v, now),
                Err(e) => m.repos.fail(e, now),
            },
            Update::ForRepo(repo, u) => {
                if repo == self.repo {
                    self.apply(*u);
                }
            }
            Update::Merge(h, label) => {
                m.merges.insert(h, label);
            }
            Update::Branches(r) => match r {
                Ok(v) => m.branches.ok(v, now),
                Err(e) => m.branches.fail(e, now),
            },
            Update::ForBranch(branch, u) => {
                if branch == self.branch {
                    self.apply(*u);
                }
            }
        }
    }
}

/// A typed filter as a hash prefix: 8 to 64 hex digits (an `0x` in front and case ignored),
/// lower-cased; `None` for anything else.
pub fn hash_prefix(filter: &str) -> Option<String> {
    let f = filter.trim();
    let f = f
        .strip_prefix("0x")
        .or_else(|| f.strip_prefix("0X"))
        .unwrap_or(f);
    (f.len() >= 8 && f.len() <= 64 && f.bytes().all(|c| c.is_ascii_hexdigit()))
        .then(|| f.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BlockDetail, TxRow};
    use crate::theme::ThemeKind;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn app() -> App {
        let mut a = App::new(
            Theme::new(ThemeKind::Ansi16),
            false,
            Endpoints::default(),
            1_000,
        );
        let blocks = (1..=5)
            .rev()
            .map(|h| BlockRow {
                height: h,
                hash: format!("{h:064x}"),
                ..Default::default()
            })
            .collect();
        a.model.merge_blocks(blocks, 0);
        a
    }

    #[test]
    fn tabs_digits_and_wraparound() {
        let mut a = app();
        a.key(key(KeyCode::BackTab));
        assert_eq!(a.screen, Screen::Branches);
        a.key(key(KeyCode::BackTab));
        assert_eq!(a.screen, Screen::Repos);
        a.key(key(KeyCode::Tab));
        a.key(key(KeyCode::Tab));
        assert_eq!(a.screen, Screen::Overview);
        a.key(key(KeyCode::Char('0')));
        assert_eq!((a.screen, a.screen.key()), (Screen::Branches, '0'));
        a.key(key(KeyCode::Char('5')));
        assert_eq!(a.screen, Screen::Resources);
    }

    #[test]
    fn drill_down_block_tx_receipt_and_back() {
        let mut a = app();
        a.key(key(KeyCode::Char('2')));
        a.key(key(KeyCode::Down));
        assert_eq!(a.key(key(KeyCode::Enter)), Action::OpenBlock(4));
        a.apply(Update::Block(
            4,
            Ok(BlockDetail {
                summary: BlockRow {
                    height: 4,
                    ..Default::default()
                },
                txs: vec![
                    TxRow {
                        hash: "aa".into(),
                        ..Default::default()
                    },
                    TxRow {
                        hash: "bb".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        ));
        a.key(key(KeyCode::Char('j')));
        assert_eq!(a.key(key(KeyCode::Enter)), Action::OpenTx("bb".into()));
        assert_eq!(a.key(key(KeyCode::Enter)), Action::None);
        assert_eq!(a.detail(), Some(&Detail::Receipt("bb".into())));
        a.key(key(KeyCode::Esc));
        a.key(key(KeyCode::Esc));
        assert_eq!(a.detail(), Some(&Detail::Block(4)));
        a.key(key(KeyCode::Esc));
        assert_eq!(a.detail(), None);
        assert_eq!(a.sel[1], 1);
    }

    #[test]
    fn filter_narrows_and_esc_clears() {
        let mut a = app();
        a.key(key(KeyCode::Char('2')));
        a.key(key(KeyCode::Char('/')));
        a.key(key(KeyCode::Char('3')));
        a.key(key(KeyCode::Enter));
        assert_eq!(a.visible_blocks().len(), 1);
        assert_eq!(a.key(key(KeyCode::Enter)), Action::OpenBlock(3));
        a.key(key(KeyCode::Esc));
        a.key(key(KeyCode::Esc));
        assert_eq!(a.filter(), "");
        assert_eq!(a.visible_blocks().len(), 5);
    }

    #[test]
    fn a_typed_height_opens_that_block_even_when_not_loaded() {
        let mut a = app();
        a.key(key(KeyCode::Char('2')));
        a.key(key(KeyCode::Char('/')));
        a.key(key(KeyCode::Char('4')));
        a.key(key(KeyCode::Enter));
        assert_eq!(a.visible_blocks()[0].height, 4);
        assert_eq!(a.key(key(KeyCode::Enter)), Action::OpenBlock(4));
        a.key(key(KeyCode::Esc));
        a.key(key(KeyCode::Esc));
        a.key(key(KeyCode::Char('/')));
        for c in "1234".chars() {
            a.key(key(KeyCode::Char(c)));
        }
        // Not loaded: the Enter that ends the filter fetches it from the chain.
        assert_eq!(a.key(key(KeyCode::Enter)), Action::OpenBlock(1234));
        assert_eq!(a.detail(), Some(&Detail::Block(1234)));
    }

    #[test]
    fn quit_respects_no_quit_and_selection_clamps() {
        let mut a = app();
        assert_eq!(a.key(key(KeyCode::Char('q'))), Action::Quit);
        a.no_quit = true;
        assert_eq!(a.key(key(KeyCode::Char('q'))), Action::None);
        assert_eq!(
            a.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::None
        );
        assert!(a.current_flash().is_some());
        a.now_ms += crate::model::FLASH_MS;
        assert!(a.current_flash().is_none(), "flash messages expire");
        a.key(key(KeyCode::Char('2')));
        a.key(key(KeyCode::Char('G')));
        assert_eq!(a.sel[1], 4);
        a.key(key(KeyCode::PageDown));
        assert_eq!(a.sel[1], 4);
        a.key(key(KeyCode::Home));
        assert_eq!(a.sel[1], 0);
    }

    #[test]
    fn restart_needs_confirmation() {
        let mut a = app();
        a.model.init.ok(
            crate::model::InitView {
                services: vec![ServiceInfo {
                    name: "node".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            0,
        );
        a.key(key(KeyCode::Char('7')));
        a.key(key(KeyCode::Char('r')));
        assert_eq!(a.confirm.as_deref(), Some("node"));
        assert_eq!(a.key(key(KeyCode::Char('x'))), Action::None);
        assert_eq!(a.key(key(KeyCode::Char('n'))), Action::None);
        assert!(a.confirm.is_none());
        a.key(key(KeyCode::Char('r')));
        assert_eq!(
            a.key(key(KeyCode::Char('y'))),
            Action::Restart("node".into())
        );
    }

    #[test]
    fn new_blocks_keep_selection_on_the_same_block() {
        let mut a = app();
        a.key(key(KeyCode::Char('2')));
        a.key(key(KeyCode::Down));
        a.apply(Update::NewBlock(BlockRow {
            height: 6,
            ..Default::default()
        }));
        assert_eq!(a.visible_blocks()[a.sel[1]].height, 4);
    }

    #[test]
    fn a_restarted_chain_drops_the_old_block_list() {
        let mut a = app();
        let chain = |h| crate::model::ChainView {
            height: h,
            chain_id: "c".into(),
            ..Default::default()
        };
        a.apply(Update::Chain(Ok(chain(5))));
        a.apply(Update::Chain(Ok(chain(6))));
        assert_eq!(a.visible_blocks().len(), 5);
        a.apply(Update::Chain(Ok(chain(2))));
        assert!(a.model.blocks.get().is_none());
    }

    #[test]
    fn logs_screen_picks_a_service_and_cycles() {
        let mut a = app();
        assert_eq!(a.key(key(KeyCode::Char('8'))), Action::Logs("init".into()));
        assert_eq!(a.key(key(KeyCode::Char('l'))), Action::Logs("init".into()));
        a.key(key(KeyCode::Char('f')));
        assert!(!a.follow);
        a.key(key(KeyCode::Char('G')));
        assert!(a.follow);
    }

    #[test]
    fn g_then_a_height_opens_that_block() {
        let mut a = app();
        a.screen = Screen::Blocks;
        assert_eq!(a.key(key(KeyCode::Char('g'))), Action::None);
        assert_eq!(a.goto.as_deref(), Some(""));
        a.key(key(KeyCode::Char('1')));
        a.key(key(KeyCode::Char('x')));
        a.key(key(KeyCode::Char('2')));
        assert_eq!(a.key(key(KeyCode::Enter)), Action::OpenBlock(12));
        assert_eq!(a.goto, None);
        assert_eq!(a.detail(), Some(&Detail::Block(12)));
        // Esc cancels; an empty height opens nothing.
        a.key(key(KeyCode::Char('g')));
        a.key(key(KeyCode::Esc));
        assert_eq!(a.goto, None);
        a.key(key(KeyCode::Char('g')));
        assert_eq!(a.key(key(KeyCode::Enter)), Action::None);
        // Elsewhere `g` is still Home.
        a.screen = Screen::Overview;
        a.key(key(KeyCode::Char('g')));
        assert_eq!(a.goto, None);
    }

    fn type_filter(a: &mut App, text: &str) -> Action {
        a.key(key(KeyCode::Char('/')));
        for c in text.chars() {
            a.key(key(KeyCode::Char(c)));
        }
        a.key(key(KeyCode::Enter))
    }

    fn found_block(h: u64, txs: usize) -> BlockDetail {
        BlockDetail {
            summary: BlockRow {
                height: h,
                hash: format!("{:064x}", h * 1000),
                ..Default::default()
            },
            txs: (0..txs)
                .map(|i| TxRow {
                    hash: format!("{i:064x}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_full_hash_not_loaded_is_searched_on_the_chain() {
        use crate::model::Found;
        // A block hash from before the dashboard started.
        let mut a = app();
        a.screen = Screen::Blocks;
        let hash = "AB".repeat(32);
        let q = "ab".repeat(32);
        assert_eq!(
            type_filter(&mut a, &format!("0x{hash}")),
            Action::Search(q.clone())
        );
        assert_eq!(a.detail(), Some(&Detail::Search(q.clone())));
        // An answer to another search is ignored.
        a.apply(Update::Found(
            "cd".repeat(32),
            Ok(Found::Block(found_block(9, 0))),
        ));
        assert_eq!(a.detail(), Some(&Detail::Search(q.clone())));
        a.apply(Update::Found(
            q.clone(),
            Ok(Found::Block(found_block(2, 0))),
        ));
        assert_eq!(a.detail(), Some(&Detail::Block(2)));
        assert_eq!(a.model.block.get().map(|b| b.summary.height), Some(2));
        a.key(key(KeyCode::Esc));
        assert_eq!(
            a.detail(),
            None,
            "Esc goes back to the list, not to the search"
        );

        // A transaction hash: the block holding it opens with the transaction selected.
        a.key(key(KeyCode::Esc));
        assert_eq!(type_filter(&mut a, &q), Action::Search(q.clone()));
        a.apply(Update::Found(
            q.clone(),
            Ok(Found::TxInBlock {
                block: found_block(40, 3),
                index: 2,
            }),
        ));
        assert_eq!((a.detail(), a.detail_sel), (Some(&Detail::Block(40)), 2));
        assert_eq!(
            a.key(key(KeyCode::Enter)),
            Action::OpenTx(format!("{:064x}", 2))
        );

        // Nothing: the search stays on screen with a message.
        a.details[1].clear();
        a.key(key(KeyCode::Esc));
        assert_eq!(type_filter(&mut a, &q), Action::Search(q.clone()));
        a.apply(Update::Found(q.clone(), Ok(Found::Nothing)));
        assert_eq!(a.detail(), Some(&Detail::Search(q.clone())));
        let (for_q, msg) = a.model.search_miss.clone().unwrap();
        assert_eq!(for_q, q);
        assert!(msg.contains("no block and no transaction"), "{msg}");
        // The same, with Enter on the empty list after the filter was typed.
        a.details[1].clear();
        assert_eq!(a.key(key(KeyCode::Enter)), Action::Search(q.clone()));
        assert!(
            a.model.search_miss.is_none(),
            "a new search clears the old message"
        );
    }

    #[test]
    fn a_hash_prefix_matches_loaded_rows_only() {
        let mut a = app();
        a.screen = Screen::Blocks;
        // Loaded block 3's hash is 0…03: a prefix of 8+ hex digits selects it, no search.
        let prefix = "00000000000000";
        assert_eq!(type_filter(&mut a, prefix), Action::None);
        assert_eq!(
            a.visible_blocks().len(),
            5,
            "all five hashes start with zeros"
        );
        a.key(key(KeyCode::Esc));
        assert_eq!(type_filter(&mut a, "0xabcdef12"), Action::None);
        assert!(a.visible_blocks().is_empty());
        assert!(
            a.detail().is_none(),
            "a prefix is never searched on the chain"
        );
        assert!(a.current_flash().unwrap().contains("64 hex digits"));
        assert_eq!(hash_prefix("0XABCDEF12").as_deref(), Some("abcdef12"));
        assert_eq!(
            hash_prefix("abcdef1"),
            None,
            "under 8 digits is a plain filter"
        );
        assert_eq!(hash_prefix(&"a".repeat(65)), None);
        assert_eq!(hash_prefix("abcdefgh"), None);
    }

    #[test]
    fn enter_on_a_repository_selects_it_and_stale_answers_are_dropped() {
        let mut a = app();
        let row = |name: &str| crate::model::RepoRow {
            name: name.into(),
            ..Default::default()
        };
        a.apply(Update::Repos(Ok(vec![row("aergo"), row("team-a")])));
        assert_eq!(a.key(key(KeyCode::Char('9'))), Action::None);
        assert_eq!(a.screen, Screen::Repos);
        a.key(key(KeyCode::Down));
        assert_eq!(
            a.key(key(KeyCode::Enter)),
            Action::SelectRepo(Some("team-a".into()))
        );
        assert_eq!((a.screen, a.ledger()), (Screen::Overview, "team-a"));
        assert!(
            a.model.blocks.get().is_none(),
            "the root's blocks are dropped"
        );
        let chain = |h| {
            Box::new(Update::Chain(Ok(crate::model::ChainView {
                height: h,
                ..Default::default()
            })))
        };
        // An answer from the root that was in flight is not shown as team-a's.
        a.apply(Update::ForRepo(None, chain(50)));
        assert!(a.model.chain.get().is_none());
        a.apply(Update::ForRepo(Some("team-a".into()), chain(3)));
        assert_eq!(a.model.chain.get().map(|c| c.height), Some(3));
        // A private repository's refusal is recognised.
        a.apply(Update::ForRepo(
            Some("team-a".into()),
            Box::new(Update::Chain(Err(crate::model::PRIVATE_MSG.into()))),
        ));
        assert!(a.private_denied());
        // Selecting the root again returns to it; selecting the same one does nothing.
        a.key(key(KeyCode::Char('9')));
        a.key(key(KeyCode::Home));
        assert_eq!(a.key(key(KeyCode::Enter)), Action::SelectRepo(None));
        assert_eq!(a.ledger(), "aergo");
        assert!(!a.private_denied());
        assert_eq!(a.select_repo("aergo"), Action::None);
    }

    fn branch(name: &str, depth: usize, state: &str) -> crate::model::BranchRow {
        crate::model::BranchRow {
            name: name.into(),
            depth,
            state: state.into(),
            ..Default::default()
        }
    }

    #[test]
    fn enter_on_a_branch_reads_it_esc_returns_to_main_and_stale_answers_are_dropped() {
        let mut a = app();
        a.apply(Update::ForRepo(
            None,
            Box::new(Update::Branches(Ok(vec![
                branch("main", 0, "chain"),
                branch("feat", 1, "produced here"),
                branch("far", 1, "not here"),
            ]))),
        ));
        assert_eq!(a.key(key(KeyCode::Char('0'))), Action::None);
        assert_eq!(a.screen, Screen::Branches);
        a.key(key(KeyCode::Down));
        assert_eq!(
            a.key(key(KeyCode::Enter)),
            Action::SelectBranch(Some("feat".into()))
        );
        assert_eq!(
            (a.screen, a.ledger_label()),
            (Screen::Overview, "aergo:feat".into())
        );
        assert!(a.model.blocks.get().is_none(), "main's blocks are dropped");
        assert!(a.model.branches.get().is_some(), "the branch list stays");
        let chain = |h| {
            Box::new(Update::Chain(Ok(crate::model::ChainView {
                height: h,
                ..Default::default()
            })))
        };
        // An answer about main that was in flight is not shown as feat's.
        a.apply(Update::ForRepo(
            None,
            Box::new(Update::ForBranch(None, chain(50))),
        ));
        assert!(a.model.chain.get().is_none());
        a.apply(Update::ForRepo(
            None,
            Box::new(Update::ForBranch(Some("feat".into()), chain(9))),
        ));
        assert_eq!(a.model.chain.get().map(|c| c.height), Some(9));
        // A branch this node does not host cannot be read: Enter says so.
        a.key(key(KeyCode::Char('0')));
        a.key(key(KeyCode::End));
        assert_eq!(a.key(key(KeyCode::Enter)), Action::None);
        assert_eq!(a.screen, Screen::Branches);
        assert!(a.current_flash().is_some_and(|f| f.contains("not here")));
        // Esc goes back to main; a second Esc does nothing more.
        assert_eq!(a.key(key(KeyCode::Esc)), Action::SelectBranch(None));
        assert_eq!(a.ledger_label(), "aergo");
        assert_eq!(a.key(key(KeyCode::Esc)), Action::None);
        // Another repository starts on its main with its own branch list.
        a.select_branch("feat");
        a.select_repo("team-a");
        assert_eq!((a.branch.as_deref(), a.model.branches.get()), (None, None));
    }

    #[test]
    fn an_opened_merge_block_is_marked_in_the_list() {
        let mut a = app();
        a.key(key(KeyCode::Char('2')));
        assert_eq!(a.key(key(KeyCode::Enter)), Action::OpenBlock(5));
        a.apply(Update::Block(
            5,
            Ok(BlockDetail {
                summary: BlockRow {
                    height: 5,
                    ..Default::default()
                },
                merge: Some(crate::model::MergeView {
                    source: "feat".into(),
                    source_height: 7,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ));
        assert_eq!(a.model.merges.get(&5).map(String::as_str), Some("feat@7"));
        // The poller's marks, for blocks never opened.
        a.apply(Update::Merge(3, "fix@2".into()));
        assert_eq!(a.model.merges.get(&3).map(String::as_str), Some("fix@2"));
        a.select_branch("feat");
        assert!(a.model.merges.is_empty(), "marks belong to the branch read");
    }
}
