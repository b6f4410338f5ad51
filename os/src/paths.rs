//! Well-known ports, paths and names shared by every binary.

/// Node JSON-RPC (HTTP + WebSocket) and `/metrics`.
pub const RPC_PORT: u16 = 7845;
/// libp2p.
pub const P2P_PORT: u16 = 7846;
/// AergoFS HTTP API.
pub const FS_PORT: u16 = 7848;
/// Default node RPC URL used by the CLI and the dashboard.
pub const DEFAULT_RPC_URL: &str = "http://127.0.0.1:7845";
/// Default AergoFS URL.
pub const DEFAULT_FS_URL: &str = "http://127.0.0.1:7848";
/// init's control socket.
pub const INIT_SOCKET: &str = "/run/aergo/init.sock";
/// GPT partition label of the appliance's data partition.
pub const DATA_LABEL: &str = "AERGO-DATA";
/// GPT partition label of the appliance's read-only system partition (squashfs holding the
/// service binaries and their shared libraries).
pub const SYSTEM_LABEL: &str = "AERGO-SYSTEM";
/// Mount point of the system partition on the appliance (`/bin` and `/sbin` link into it).
pub const SYSTEM_MOUNT: &str = "/usr";
/// Mount point of the data partition on the appliance.
pub const DATA_MOUNT: &str = "/data";
/// Chain data on the appliance.
pub const APPLIANCE_CHAIN_DIR: &str = "/data/chain";
/// AergoFS data on the appliance.
pub const APPLIANCE_FS_DIR: &str = "/data/fs";
/// The appliance's config file.
pub const APPLIANCE_CONFIG: &str = "/data/etc/aergo.toml";
/// The appliance's log directory.
pub const APPLIANCE_LOG_DIR: &str = "/data/log";
