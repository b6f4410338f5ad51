//! `aergo-top`: the operator console dashboard. Parses the command line, sets up the
//! terminal (restored on exit and on panic) and runs [`aergo_top::run::run`].

use anyhow::Context;
use clap::Parser;

use aergo_top::app::{App, Endpoints};
use aergo_top::theme::{Theme, ThemeKind};

/// Operator console dashboard for an AERGO node.
#[derive(Debug, Parser)]
#[command(name = "aergo-top", version, about)]
struct Args {
    /// Node JSON-RPC URL.
    #[arg(
        long,
        env = "AERGO_RPC",
        hide_env_values = true,
        default_value = "http://127.0.0.1:7845"
    )]
    rpc: String,
    /// Init control endpoint: a Unix socket path or host:port (TCP, needs --init-token).
    #[arg(
        long,
        env = "AERGO_INIT_ADDR",
        hide_env_values = true,
        default_value = "/run/aergo/init.sock"
    )]
    init: String,
    /// Token for init's TCP control endpoint.
    #[arg(long, env = "AERGO_INIT_TOKEN", hide_env_values = true)]
    init_token: Option<String>,
    /// AergoFS HTTP URL.
    #[arg(
        long,
        env = "AERGO_FS",
        hide_env_values = true,
        default_value = "http://127.0.0.1:7848"
    )]
    fs: String,
    /// Disable `q` and Ctrl-C (the appliance console).
    #[arg(long)]
    no_quit: bool,
    /// A host, not the appliance: no alerts for a missing init or AergoFS. Detected when the
    /// init endpoint is a socket path that does not exist.
    #[arg(long)]
    host_mode: bool,
    /// Colour theme: auto, 16, 256 or truecolor.
    #[arg(long, default_value = "auto", value_parser = ["auto", "16", "256", "truecolor"])]
    theme: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kind = ThemeKind::from_flag(
        &args.theme,
        std::env::var("TERM").ok().as_deref(),
        std::env::var("COLORTERM").ok().as_deref(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let endpoints = Endpoints {
        rpc: args.rpc.clone(),
        init: args.init.clone(),
        fs: args.fs.clone(),
    };
    let mut app = App::new(
        Theme::new(kind),
        args.no_quit,
        endpoints,
        aergo_top::source::now_ms(),
    );
    app.host_mode = args.host_mode
        || (args.init.starts_with('/') && !std::path::Path::new(&args.init).exists());
    let cfg = aergo_top::run::Config {
        rpc: args.rpc,
        init: args.init,
        init_token: args.init_token,
        fs: args.fs,
    };
    // try_init enters raw mode and the alternate screen and installs a panic hook that
    // restores the terminal before the panic message is printed.
    let mut terminal = ratatui::try_init().context("terminal setup")?;
    if std::env::var_os("AERGO_TOP_TEST_PANIC").is_some() {
        // Lets the end-to-end test check that a panic restores the terminal.
        terminal.draw(|f| aergo_top::ui::draw(f, &app))?;
        panic!("AERGO_TOP_TEST_PANIC is set: panicking on purpose");
    }
    let result = rt.block_on(aergo_top::run::run(&mut terminal, app, cfg));
    ratatui::restore();
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    result.context("aergo-top")
}
