//! The `aergo.toml` schema shared by init, the node, AergoFS and the dashboard.
//!
//! Every section is optional and every field has a default, so an empty file is a valid
//! single-node dev configuration. Unknown fields are rejected so a typo is an error, not a
//! silently ignored setting. Relative paths are resolved against the config file's folder.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors reading or validating a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column from the TOML parser.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config value `{field}`: {message}")]
    Invalid {
        /// Dotted field name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The whole `aergo.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The chain node.
    pub node: NodeConfig,
    /// AergoFS.
    pub fs: FsConfig,
    /// The appliance (init): hostname, network, clock, console.
    pub system: SystemConfig,
}

/// `[node]`: the chain node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Use the built-in dev genesis (solo consensus, funded dev account).
    pub dev: bool,
    /// Chain data folder (RocksDB, block log, node key).
    pub data_dir: Option<PathBuf>,
    /// Genesis file (JSON). Required unless `dev`.
    pub genesis: Option<PathBuf>,
    /// The node's producer/identity key file; default `<data_dir>/node.key`, created when absent.
    pub key: Option<PathBuf>,
    /// Public JSON-RPC listen address (HTTP + WebSocket + /metrics).
    pub rpc_addr: String,
    /// libp2p listen address.
    pub p2p_addr: String,
    /// Bootnodes (multiaddrs).
    pub peers: Vec<String>,
    /// Discover peers with mDNS on the LAN.
    pub mdns: bool,
    /// Produce empty blocks when the mempool is empty.
    pub empty_blocks: bool,
    /// Pre-confirm: as the producer of the next slot, execute each admitted transaction
    /// at once and sign its result (`send_tx` with `wait: "preconfirmed"`).
    pub preconfirm: bool,
    /// Validation workers for blocks that carry a DTT (parallel execution); 0: one per core.
    pub exec_workers: usize,
    /// Mempool limits.
    pub mempool: MempoolConfig,
    /// Maximum RPC requests per second per client address (0 = unlimited); WebSocket
    /// messages count too.
    pub rpc_rate_limit: u32,
    /// `[node.rpc_http]`: connection caps, timeouts and the Origin allow-list of the RPC
    /// listener.
    pub rpc_http: HttpServerConfig,
    /// Most WebSocket connections served at once.
    pub rpc_ws_connections: usize,
    /// Most WebSocket connections from one client address (IPv6: its /64); loopback is exempt
    /// unless `rpc_http.limit_loopback`.
    pub rpc_ws_connections_per_ip: usize,
    /// Most subscriptions on one WebSocket connection.
    pub rpc_ws_subscriptions: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            dev: false,
            data_dir: None,
            genesis: None,
            key: None,
            rpc_addr: format!("127.0.0.1:{}", crate::paths::RPC_PORT),
            p2p_addr: format!("0.0.0.0:{}", crate::paths::P2P_PORT),
            peers: Vec::new(),
            mdns: false,
            empty_blocks: true,
            preconfirm: true,
            exec_workers: 0,
            mempool: MempoolConfig::default(),
            rpc_rate_limit: 2000,
            rpc_http: HttpServerConfig::default(),
            rpc_ws_connections: 256,
            rpc_ws_connections_per_ip: 16,
            rpc_ws_subscriptions: 64,
        }
    }
}

/// `[node.mempool]`: mempool limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolConfig {
    /// Maximum pending transactions in total.
    pub max_txs: usize,
    /// Maximum pending bytes in total.
    pub max_bytes: usize,
    /// Maximum pending transactions per sender.
    pub max_per_account: usize,
    /// Seconds after which a transaction that cannot be included is evicted.
    pub ttl_secs: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        Self {
            max_txs: 200_000,
            max_bytes: 256 * 1024 * 1024,
            max_per_account: 10_000,
            ttl_secs: 3600,
        }
    }
}

/// `[fs]`: AergoFS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FsConfig {
    /// Run AergoFS (on the appliance).
    pub enabled: bool,
    /// Data folder.
    pub dir: Option<PathBuf>,
    /// HTTP listen address.
    pub addr: String,
    /// `[fs.http]`: connection caps, timeouts and the Origin allow-list of the listener.
    pub http: HttpServerConfig,
}

impl Default for FsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            addr: format!("127.0.0.1:{}", crate::paths::FS_PORT),
            http: HttpServerConfig::default(),
        }
    }
}

/// `[node.rpc_http]`, `[fs.http]`: limits of one HTTP listener (served by `aergo_os::http`
/// with the `http` feature). Every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Most connections open at once; more are closed at once (and counted).
    pub max_connections: usize,
    /// Most connections open at once from one client address (an IPv6 client: its /64).
    pub max_connections_per_ip: usize,
    /// Apply the per-address cap to loopback clients too (they are exempt by default).
    pub limit_loopback: bool,
    /// Seconds a client has to send a request's headers.
    pub header_timeout_secs: u64,
    /// Seconds a connection may go without reading or writing a byte before it is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a request body may take, plus one second per `body_min_bytes_per_sec` bytes
    /// received (a large upload at a reasonable rate is not cut off, a trickle is).
    pub body_timeout_secs: u64,
    /// See `body_timeout_secs`.
    pub body_min_bytes_per_sec: u64,
    /// Web origins (`scheme://host[:port]`) whose browser requests are served; a request
    /// carrying any other `Origin` is refused with 403. Empty: every request with an
    /// `Origin` header is refused.
    pub allowed_origins: Vec<String>,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_connections_per_ip: 64,
            limit_loopback: false,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            body_timeout_secs: 30,
            body_min_bytes_per_sec: 64 * 1024,
            allowed_origins: Vec::new(),
        }
    }
}

impl HttpServerConfig {
    /// Checks the values; `field` names the section in errors.
    pub fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { field, message };
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err(invalid("connection caps must be positive".into()));
        }
        if self.header_timeout_secs == 0
            || self.idle_timeout_secs == 0
            || self.body_timeout_secs == 0
            || self.body_min_bytes_per_sec == 0
        {
            return Err(invalid(
                "timeouts and the body rate must be positive".into(),
            ));
        }
        for o in &self.allowed_origins {
            let ok = o.split_once("://").is_some_and(|(scheme, rest)| {
                !scheme.is_empty()
                    && !rest.is_empty()
                    && !rest.contains('/')
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            });
            if !ok {
                return Err(invalid(format!(
                    "allowed origin `{o}` is not of the form scheme://host[:port]"
                )));
            }
        }
        Ok(())
    }
}

/// `[system]`: appliance settings read by init.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SystemConfig {
    /// Hostname; default derived from the machine id or MAC.
    pub hostname: Option<String>,
    /// SNTP servers (host:port or host).
    pub ntp_servers: Vec<String>,
    /// Format the data partition when it is blank (never when it has data).
    pub format_blank_data: bool,
    /// Network interfaces; empty means DHCPv4 on the first NIC with link. When listed, only
    /// the listed NICs are configured (the others stay down).
    pub interfaces: Vec<InterfaceConfig>,
    /// `[system.upgrade]`: when a newly installed system slot is committed or given up.
    pub upgrade: UpgradeConfig,
}

/// `[system.upgrade]`: the trial of a newly installed system slot (A/B upgrades).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UpgradeConfig {
    /// Seconds the node must run healthy (and the chain grow) on a new slot before init
    /// makes it permanent.
    pub commit_after_secs: u64,
    /// Seconds a new slot has to get the node healthy; past them init reboots into the
    /// previous slot itself.
    pub trial_timeout_secs: u64,
}

impl Default for UpgradeConfig {
    fn default() -> Self {
        Self {
            commit_after_secs: 60,
            trial_timeout_secs: 300,
        }
    }
}

/// `[[system.interfaces]]`: one NIC.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InterfaceConfig {
    /// Interface name (e.g. `eth0`) or MAC address (`52:54:00:12:34:56`, any case).
    pub name: String,
    /// `dhcp` (also when empty) or a static IPv4 address with its prefix, `10.0.0.2/24`.
    pub address: String,
    /// Default gateway, only with a static address; at most one interface may set one. With
    /// no gateway anywhere, the first DHCP interface's router becomes the default route.
    pub gateway: Option<String>,
}

/// How one interface gets its address (from [`InterfaceConfig::mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceMode {
    /// DHCPv4.
    Dhcp,
    /// A static address.
    Static {
        /// The address.
        addr: std::net::Ipv4Addr,
        /// Prefix length (0–32).
        prefix: u8,
        /// Default gateway through this interface.
        gateway: Option<std::net::Ipv4Addr>,
    },
}

/// Parses `10.0.0.2/24` (the prefix is required).
pub fn parse_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (a, p) = s.trim().split_once('/')?;
    let prefix: u8 = p.parse().ok()?;
    (prefix <= 32).then_some(())?;
    Some((a.parse().ok()?, prefix))
}

impl InterfaceConfig {
    /// The address mode, or why the entry is invalid.
    pub fn mode(&self) -> Result<InterfaceMode, String> {
        let addr = self.address.trim();
        let gateway = match self.gateway.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(g) => Some(
                g.parse::<std::net::Ipv4Addr>()
                    .map_err(|_| format!("gateway `{g}` is not an IPv4 address"))?,
            ),
        };
        if addr.is_empty() || addr.eq_ignore_ascii_case("dhcp") {
            if gateway.is_some() {
                return Err(
                    "a gateway is only for a static address (DHCP supplies its own)".into(),
                );
            }
            return Ok(InterfaceMode::Dhcp);
        }
        let (a, prefix) = parse_cidr(addr).ok_or_else(|| {
            format!("address `{addr}` is neither `dhcp` nor an IPv4 address with a prefix such as 10.0.0.2/24")
        })?;
        Ok(InterfaceMode::Static {
            addr: a,
            prefix,
            gateway,
        })
    }
}

impl Config {
    /// Parses a config from TOML text. `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// `text` with every value whose key names a secret (`token`, `password`, `secret`,
    /// `private`, `passphrase`) replaced by `"<redacted>"`, for support bundles. Text that
    /// is not TOML is withheld whole.
    pub fn redacted(text: &str) -> String {
        fn walk(v: &mut toml::Value) {
            match v {
                toml::Value::Table(t) => {
                    for (k, x) in t.iter_mut() {
                        let k = k.to_ascii_lowercase();
                        if ["token", "password", "secret", "private", "passphrase"]
                            .iter()
                            .any(|s| k.contains(s))
                        {
                            *x = toml::Value::String("<redacted>".into());
                        } else {
                            walk(x);
                        }
                    }
                }
                toml::Value::Array(a) => a.iter_mut().for_each(walk),
                _ => {}
            }
        }
        match text.parse::<toml::Value>() {
            Ok(mut v) => {
                walk(&mut v);
                toml::to_string_pretty(&v).unwrap_or_else(|_| "# (withheld)\n".into())
            }
            Err(_) => "# the config is not valid TOML: withheld\n".into(),
        }
    }

    /// Reads a config file; relative paths inside it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, |_| {})
    }

    /// [`Config::load`] with command-line overrides applied before the values are checked
    /// (`aergo-node --dev --config FILE` with a file that names no genesis).
    pub fn load_with(path: &Path, overrides: impl FnOnce(&mut Self)) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(base) = path.parent() {
            cfg.resolve_relative(base);
        }
        overrides(&mut cfg);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid {
            field: "config",
            message: e.to_string(),
        })
    }

    fn resolve_relative(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        };
        fix(&mut self.node.data_dir);
        fix(&mut self.node.genesis);
        fix(&mut self.node.key);
        fix(&mut self.fs.dir);
    }

    /// Checks values that the type system does not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_addr("node.rpc_addr", &self.node.rpc_addr)?;
        check_addr("node.p2p_addr", &self.node.p2p_addr)?;
        check_addr("fs.addr", &self.fs.addr)?;
        self.node.rpc_http.validate("node.rpc_http")?;
        self.fs.http.validate("fs.http")?;
        if self.node.rpc_ws_connections == 0
            || self.node.rpc_ws_connections_per_ip == 0
            || self.node.rpc_ws_subscriptions == 0
        {
            return Err(ConfigError::Invalid {
                field: "node.rpc_ws_connections",
                message: "WebSocket caps must be positive".into(),
            });
        }
        if self.node.mempool.max_txs == 0 || self.node.mempool.max_per_account == 0 {
            return Err(ConfigError::Invalid {
                field: "node.mempool",
                message: "limits must be positive".into(),
            });
        }
        let mut names = std::collections::BTreeSet::new();
        let mut gateways = 0;
        for ic in &self.system.interfaces {
            let invalid = |message: String| ConfigError::Invalid {
                field: "system.interfaces",
                message,
            };
            let name = ic.name.trim().to_ascii_lowercase();
            if name.is_empty() {
                return Err(invalid(
                    "every interface needs a `name` (e.g. eth0 or a MAC address)".into(),
                ));
            }
            if !names.insert(name) {
                return Err(invalid(format!("interface `{}` is listed twice", ic.name)));
            }
            match ic
                .mode()
                .map_err(|m| invalid(format!("{}: {m}", ic.name)))?
            {
                InterfaceMode::Static {
                    gateway: Some(_), ..
                } => gateways += 1,
                InterfaceMode::Static { .. } | InterfaceMode::Dhcp => {}
            }
        }
        if gateways > 1 {
            return Err(ConfigError::Invalid {
                field: "system.interfaces",
                message: "only one interface may set a gateway (the default route)".into(),
            });
        }
        if self.system.upgrade.trial_timeout_secs < 10 {
            return Err(ConfigError::Invalid {
                field: "system.upgrade.trial_timeout_secs",
                message: "at least 10 seconds (a new slot needs time to start the node)".into(),
            });
        }
        if !self.node.dev && self.node.genesis.is_none() {
            return Err(ConfigError::Invalid {
                field: "node.genesis",
                message: "a genesis file is required unless node.dev = true".into(),
            });
        }
        Ok(())
    }
}

fn check_addr(field: &'static str, value: &str) -> Result<(), ConfigError> {
    value
        .parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|e| ConfigError::Invalid {
            field,
            message: format!("`{value}` is not an IP:port address: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_config_parses_with_defaults() {
        let cfg = Config::from_toml("[node]\ndev = true\n", Path::new("x.toml")).unwrap();
        assert!(cfg.node.dev);
        assert_eq!(cfg.node.rpc_addr, "127.0.0.1:7845");
        assert!(cfg.node.empty_blocks);
    }

    #[test]
    fn unknown_field_is_an_error_with_location() {
        let err = Config::from_toml("[node]\ndve = true\n", Path::new("x.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("dve"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn missing_genesis_without_dev_is_an_error() {
        let err = Config::from_toml("", Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("node.genesis"));
    }

    #[test]
    fn bad_address_is_an_error() {
        let err = Config::from_toml("[node]\ndev=true\nrpc_addr = \"nope\"\n", Path::new("x"))
            .unwrap_err();
        assert!(err.to_string().contains("node.rpc_addr"));
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("aergo.toml");
        std::fs::write(&p, "[node]\ngenesis = \"genesis.json\"\n").unwrap();
        let cfg = Config::load(&p).unwrap();
        assert_eq!(cfg.node.genesis.unwrap(), dir.path().join("genesis.json"));
    }

    #[test]
    fn redaction_hides_secrets_and_keeps_the_rest() {
        let r = Config::redacted(
            "[node]\nrpc_addr = \"0.0.0.0:7845\"\nadmin_token = \"s3cr3t\"\n[x]\nlist = [{password = \"hunter2\"}]\n",
        );
        assert!(!r.contains("s3cr3t") && !r.contains("hunter2"), "{r}");
        assert!(
            r.contains("0.0.0.0:7845") && r.contains("<redacted>"),
            "{r}"
        );
        assert!(!Config::redacted("token = \"abc").contains("abc"));
        let upgrade = Config::from_toml(
            "[node]\ndev = true\n[system.upgrade]\ncommit_after_secs = 5\ntrial_timeout_secs = 30\n",
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(upgrade.system.upgrade.commit_after_secs, 5);
        assert!(Config::from_toml(
            "[node]\ndev = true\n[system.upgrade]\ntrial_timeout_secs = 1\n",
            Path::new("t")
        )
        .is_err());
    }

    #[test]
    fn interfaces_parse_and_validate() {
        let text = r#"
[node]
dev = true
[[system.interfaces]]
name = "52:54:00:77:00:02"
address = "10.77.0.2/24"
[[system.interfaces]]
name = "eth1"
address = "dhcp"
"#;
        let cfg = Config::from_toml(text, Path::new("x")).unwrap();
        let modes: Vec<InterfaceMode> = cfg
            .system
            .interfaces
            .iter()
            .map(|i| i.mode().unwrap())
            .collect();
        assert_eq!(
            modes,
            vec![
                InterfaceMode::Static {
                    addr: "10.77.0.2".parse().unwrap(),
                    prefix: 24,
                    gateway: None
                },
                InterfaceMode::Dhcp
            ]
        );
        let bad = |ifaces: &str| {
            let t = format!("[node]\ndev = true\n{ifaces}");
            Config::from_toml(&t, Path::new("x"))
                .unwrap_err()
                .to_string()
        };
        let e = bad("[[system.interfaces]]\nname = \"eth0\"\naddress = \"10.0.0.2\"\n");
        assert!(
            e.contains("system.interfaces") && e.contains("prefix"),
            "{e}"
        );
        let e = bad(
            "[[system.interfaces]]\nname = \"eth0\"\naddress = \"dhcp\"\ngateway = \"10.0.0.1\"\n",
        );
        assert!(e.contains("only for a static"), "{e}");
        let e = bad(
            "[[system.interfaces]]\nname = \"eth0\"\naddress = \"10.0.0.2/24\"\ngateway = \"x\"\n",
        );
        assert!(e.contains("gateway `x`"), "{e}");
        let e =
            bad("[[system.interfaces]]\nname = \"eth0\"\n[[system.interfaces]]\nname = \"ETH0\"\n");
        assert!(e.contains("twice"), "{e}");
        let e = bad("[[system.interfaces]]\naddress = \"dhcp\"\n");
        assert!(e.contains("needs a `name`"), "{e}");
        let e = bad(
            "[[system.interfaces]]\nname = \"eth0\"\naddress = \"10.0.0.2/24\"\ngateway = \"10.0.0.1\"\n\
             [[system.interfaces]]\nname = \"eth1\"\naddress = \"10.1.0.2/24\"\ngateway = \"10.1.0.1\"\n",
        );
        assert!(e.contains("only one interface"), "{e}");
        assert_eq!(parse_cidr("10.0.0.2/33"), None);
        assert_eq!(
            parse_cidr(" 10.0.0.2/8 "),
            Some(("10.0.0.2".parse().unwrap(), 8))
        );
    }

    #[test]
    fn http_limits_parse_and_validate() {
        let cfg = Config::from_toml(
            "[node]\ndev = true\n[node.rpc_http]\nheader_timeout_secs = 2\nallowed_origins = [\"https://wallet.example\"]\n[fs.http]\nmax_connections_per_ip = 4\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(cfg.node.rpc_http.header_timeout_secs, 2);
        assert_eq!(cfg.node.rpc_http.max_connections, 512);
        assert_eq!(
            cfg.node.rpc_http.allowed_origins,
            vec!["https://wallet.example"]
        );
        assert_eq!(cfg.fs.http.max_connections_per_ip, 4);
        assert_eq!(cfg.node.rpc_ws_subscriptions, 64);
        let bad = |t: &str| {
            Config::from_toml(&format!("[node]\ndev = true\n{t}"), Path::new("x"))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("[node.rpc_http]\nmax_connections = 0\n").contains("node.rpc_http"));
        assert!(bad("[fs.http]\nallowed_origins = [\"evil\"]\n").contains("fs.http"));
        assert!(bad("[fs.http]\nheader_timeout = 3\n").contains("header_timeout"));
        assert!(bad("rpc_ws_subscriptions = 0\n").contains("rpc_ws"));
    }

    #[test]
    fn round_trips_through_toml() {
        let mut cfg = Config::default();
        cfg.node.dev = true;
        cfg.node.peers.push("/ip4/127.0.0.1/tcp/7846".into());
        let text = cfg.to_toml().unwrap();
        assert_eq!(Config::from_toml(&text, Path::new("x")).unwrap(), cfg);
    }
}
