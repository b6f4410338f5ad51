//! The Overview screen: node identity and sync progress, chain head, system, alerts.

use aergo_os::control::ServiceState;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::{banners, boxed, kv, to_cells};
use crate::app::App;
use crate::fmt;
use crate::model::NodeView;

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something is broken.
    Error,
    /// Needs attention.
    Warn,
    /// For information.
    Info,
}

/// Current alerts: stalled chain, full disks, restarting services, unreachable sources.
pub fn alerts(app: &App) -> Vec<(Level, String)> {
    let m = &app.model;
    let now = app.now_ms;
    let mut out = Vec::new();
    if m.chain.down.is_some() {
        out.push((Level::Error, "node RPC unreachable".to_string()));
    }
    if let Some(c) = m.chain.get() {
        let limit = (c.block_interval_ms * 10).max(30_000);
        // A chain that skips empty slots (a repository's, a PoA chain's) makes no block while
        // nothing is pending: a long gap is a stall only while transactions wait, or on a chain
        // seen making empty blocks (one that fills its slots: DPoS, the dev chain).
        let pending = m.mempool.get().is_none_or(|p| p.count > 0);
        let fills_slots = c.consensus == "dpos"
            || m.blocks
                .get()
                .is_some_and(|b| b.iter().any(|r| r.height > 0 && r.tx_count == 0));
        if (pending || fills_slots)
            && c.best_time_ms > 0
            && now.saturating_sub(c.best_time_ms) > limit
        {
            out.push((
                Level::Error,
                format!(
                    "chain stalled: no block for {}",
                    fmt::duration(now.saturating_sub(c.best_time_ms) / 1000)
                ),
            ));
        }
    }
    if let Some(n) = m.node.get() {
        if n.syncing {
            out.push((Level::Info, sync_text(n)));
        }
        if n.disk_low {
            out.push((
                Level::Error,
                "data disk nearly full: block production paused".to_string(),
            ));
        }
    }
    if let Some(s) = &m.resources.last {
        for fs in &s.filesystems {
            if fs.used_pct() > 90.0 {
                out.push((
                    Level::Warn,
                    format!("disk {} {:.0}% full", fs.mount, fs.used_pct()),
                ));
            }
        }
    }
    if let Some(st) = m.storage.get() {
        if let Some(p) = st.free_pct() {
            if p < 10.0 {
                out.push((Level::Warn, format!("AergoFS disk only {p:.0}% free")));
            }
        }
        for v in &st.volumes {
            if v.read_only == Some(true) {
                out.push((Level::Warn, format!("volume {} read-only", v.id)));
            }
        }
    }
    if let Some(i) = m.init.get() {
        let sys = &i.system;
        if sys.data_total_bytes > 0 && sys.data_free_bytes * 10 < sys.data_total_bytes {
            out.push((Level::Warn, "/data less than 10% free".to_string()));
        }
        for s in &i.services {
            match s.state {
                ServiceState::Backoff => out.push((
                    Level::Warn,
                    format!("{} restarting ({} restarts)", s.name, s.restarts),
                )),
                ServiceState::Missing => {
                    out.push((Level::Warn, format!("{} missing from image", s.name)))
                }
                _ => {}
            }
        }
    }
    if m.init.down.is_some() && !app.host_mode {
        out.push((Level::Warn, "init control unreachable".to_string()));
    }
    if m.storage.down.is_some() && !app.host_mode {
        out.push((Level::Warn, "AergoFS unreachable".to_string()));
    }
    out
}

/// The Overview screen.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let m = &app.model;
    let area = banners(
        f,
        area,
        app,
        &[("node", &app.endpoints.rpc, m.chain.down.as_ref())],
    );
    let [top, bottom] = Layout::vertical([Constraint::Length(11), Constraint::Min(4)]).areas(area);
    let [node_r, chain_r] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let [sys_r, alert_r] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    let t = &app.theme;
    let w = 11;
    let inner = node_r.width.saturating_sub(to_cells(w).saturating_add(2)) as usize;
    let dash = || Span::styled("—", t.label());

    // Node
    let mut node = Vec::new();
    match (m.node.get(), m.chain.get()) {
        (Some(n), c) => {
            node.push(kv(app, "Address", w, fmt::short(&n.node_address, inner)));
            node.push(kv(app, "Version", w, fmt::clip(&n.version, inner)));
            if let Some(c) = c {
                node.push(kv(
                    app,
                    "Chain",
                    w,
                    fmt::clip(
                        &format!("{} {}", c.chain_name, fmt::short(&c.chain_id, 13)),
                        inner,
                    ),
                ));
                node.push(kv(app, "Consensus", w, fmt::clip(&c.consensus, inner)));
            }
            node.push(kv(
                app,
                "Role",
                w,
                if n.producer {
                    Span::styled("block producer", Style::new().fg(t.ok))
                } else {
                    Span::raw("follower")
                },
            ));
            node.push(kv(app, "Uptime", w, fmt::duration(n.uptime_secs)));
            node.push(kv(app, "I/O", w, fmt::clip(&n.io_backend, inner)));
            node.push(kv(app, "Peers", w, n.peers.to_string()));
            let sync = if n.syncing {
                Span::styled(fmt::clip(&sync_text(n), inner), Style::new().fg(t.warn))
            } else {
                Span::styled("in sync", Style::new().fg(t.ok))
            };
            node.push(kv(app, "Sync", w, sync));
        }
        (None, _) => {
            node.push(Line::from(Span::styled(
                if m.node.down.is_some() {
                    "node unreachable"
                } else {
                    "waiting for node…"
                },
                t.label(),
            )));
            if m.node.down.is_some() && app.host_mode {
                // On a host, what a newcomer most likely has to do.
                node.push(Line::from(""));
                node.push(Line::from(Span::raw(
                    "Start one with `aergo-node --dev` (another terminal), or point --rpc (or \
                     AERGO_RPC) at a running node.",
                )));
            }
        }
    }
    f.render_widget(
        Paragraph::new(node)
            .wrap(Wrap { trim: true })
            .block(boxed(app, "Node")),
        node_r,
    );

    // Chain
    let mut chain = Vec::new();
    let inner = chain_r.width.saturating_sub(to_cells(w).saturating_add(2)) as usize;
    if let Some(c) = m.chain.get() {
        chain.push(kv(
            app,
            "Height",
            w,
            Span::styled(fmt::thousands(c.height), t.title()),
        ));
        let lag = c.height.saturating_sub(c.finalized_height);
        chain.push(kv(
            app,
            "Finalized",
            w,
            if lag == 0 {
                format!("{} (the head)", fmt::thousands(c.finalized_height))
            } else {
                format!(
                    "{} ({} behind)",
                    fmt::thousands(c.finalized_height),
                    fmt::thousands(lag)
                )
            },
        ));
        chain.push(kv(app, "Best hash", w, fmt::short(&c.best_hash, inner)));
        let age = app.now_ms.saturating_sub(c.best_time_ms);
        let age_style = if c.best_time_ms == 0 || age > (c.block_interval_ms * 10).max(30_000) {
            Style::new().fg(t.err)
        } else {
            Style::new()
        };
        chain.push(kv(
            app,
            "Last block",
            w,
            Span::styled(
                if c.best_time_ms == 0 {
                    "never".to_string()
                } else {
                    fmt::ago(c.best_time_ms, app.now_ms)
                },
                age_style,
            ),
        ));
        chain.push(kv(
            app,
            "Interval",
            w,
            format!("{} ms", fmt::thousands(c.block_interval_ms)),
        ));
        chain.push(kv(
            app,
            "Tx/s (1m)",
            w,
            m.tx_rate()
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "—".into()),
        ));
        match m.mempool.get() {
            Some(mp) => chain.push(kv(
                app,
                "Mempool",
                w,
                format!(
                    "{} tx{}, {}",
                    fmt::thousands(mp.count),
                    if mp.count == 1 { "" } else { "s" },
                    fmt::bytes(mp.bytes)
                ),
            )),
            None => chain.push(kv(app, "Mempool", w, dash())),
        }
        chain.push(kv(
            app,
            "Genesis",
            w,
            if c.genesis_time_ms > 0 {
                fmt::datetime(c.genesis_time_ms)
            } else {
                "—".into()
            },
        ));
    } else {
        chain.push(Line::from(Span::styled(
            if m.chain.down.is_some() {
                "no chain data (node unreachable)"
            } else {
                "waiting for node…"
            },
            t.label(),
        )));
    }
    f.render_widget(Paragraph::new(chain).block(boxed(app, "Chain")), chain_r);

    // System
    let mut sys = Vec::new();
    let inner = sys_r.width.saturating_sub(to_cells(w).saturating_add(2)) as usize;
    match m.init.get() {
        Some(i) => {
            let running = i
                .services
                .iter()
                .filter(|s| s.state == ServiceState::Running)
                .count();
            let restarting = i
                .services
                .iter()
                .filter(|s| s.state == ServiceState::Backoff)
                .count();
            let mut sv = vec![Span::raw(format!("{running}/{} running", i.services.len()))];
            if restarting > 0 {
                sv.push(Span::styled(
                    format!(", {restarting} restarting"),
                    Style::new().fg(t.warn),
                ));
            }
            sys.push(Line::from(
                std::iter::once(Span::styled(format!("{:<w$}", "Services"), t.label()))
                    .chain(sv)
                    .collect::<Vec<_>>(),
            ));
            if !i.system.hostname.is_empty() {
                sys.push(kv(app, "Host", w, fmt::clip(&i.system.hostname, inner)));
            }
            let addrs = if i.system.addresses.is_empty() {
                "—".to_string()
            } else {
                i.system.addresses.join(" ")
            };
            sys.push(kv(app, "Addresses", w, fmt::clip(&addrs, inner)));
            sys.push(kv(app, "Up", w, fmt::duration(i.system.uptime_ms / 1000)));
            if i.system.data_mounted {
                sys.push(kv(
                    app,
                    "/data",
                    w,
                    format!(
                        "{} free of {}",
                        fmt::bytes(i.system.data_free_bytes),
                        fmt::bytes(i.system.data_total_bytes)
                    ),
                ));
            }
        }
        None => {
            sys.push(kv(
                app,
                "Services",
                w,
                Span::styled(
                    if m.init.down.is_some() && app.host_mode {
                        "none: a host, not the appliance"
                    } else if m.init.down.is_some() {
                        "init unreachable"
                    } else {
                        "waiting for init…"
                    },
                    t.label(),
                ),
            ));
            if let Some(s) = &m.resources.last {
                // No init here (a host, not the appliance): this machine's own view.
                let addrs: Vec<&str> = s
                    .addresses
                    .iter()
                    .map(|a| a.split_once(' ').map(|(_, ip)| ip).unwrap_or(a))
                    .collect();
                let addrs = if addrs.is_empty() {
                    "—".to_string()
                } else {
                    addrs.join(" ")
                };
                sys.push(kv(app, "Addresses", w, fmt::clip(&addrs, inner)));
                sys.push(kv(app, "Up", w, fmt::duration(s.uptime_secs)));
            }
        }
    }
    if let Some(s) = &m.resources.last {
        sys.push(kv(
            app,
            "CPU / mem",
            w,
            format!(
                "{:.0}% / {:.0}% of {}",
                s.cpu_pct,
                s.mem.used_pct(),
                fmt::bytes(s.mem.total)
            ),
        ));
    }
    f.render_widget(Paragraph::new(sys).block(boxed(app, "System")), sys_r);

    // Alerts
    let list = alerts(app);
    let block = boxed(app, format!("Alerts ({})", list.len()));
    if list.is_empty() {
        f.render_widget(
            Paragraph::new(Span::styled("all clear", Style::new().fg(t.ok))).block(block),
            alert_r,
        );
    } else {
        let lines: Vec<Line> = list
            .iter()
            .map(|(lvl, msg)| {
                let (mark, c) = match lvl {
                    Level::Error => ("!!", t.err),
                    Level::Warn => ("! ", t.warn),
                    Level::Info => ("i ", t.accent),
                };
                Line::from(vec![
                    Span::styled(format!("{mark} "), Style::new().fg(c)),
                    Span::styled(msg.clone(), Style::new().fg(c)),
                ])
            })
            .collect();
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: true }).block(block),
            alert_r,
        );
    }
}

/// `syncing 120/500 (24.0%)`; the percentage is left out while the target is unknown.
pub fn sync_text(n: &NodeView) -> String {
    let mut s = format!(
        "syncing {}/{}",
        fmt::thousands(n.sync_current),
        fmt::thousands(n.sync_target)
    );
    if n.sync_target > 0 {
        let pct = (n.sync_current as f64 * 100.0 / n.sync_target as f64).min(100.0);
        s.push_str(&format!(" ({})", fmt::pct(pct)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_progress_text() {
        let mut n = NodeView {
            syncing: true,
            sync_current: 120,
            sync_target: 500,
            ..Default::default()
        };
        assert_eq!(sync_text(&n), "syncing 120/500 (24.0%)");
        n.sync_target = 0;
        assert_eq!(sync_text(&n), "syncing 120/0");
        n.sync_current = 2_000;
        n.sync_target = 1_000;
        assert_eq!(sync_text(&n), "syncing 2,000/1,000 (100.0%)");
    }

    #[test]
    fn a_nearly_full_disk_is_an_error_alert() {
        let mut app = App::new(
            crate::theme::Theme::new(crate::theme::ThemeKind::Ansi16),
            false,
            crate::app::Endpoints::default(),
            1_000,
        );
        app.model.node.ok(
            NodeView {
                disk_low: true,
                ..Default::default()
            },
            1,
        );
        let a = alerts(&app);
        assert!(
            a.iter()
                .any(|(l, t)| *l == Level::Error && t.contains("disk nearly full")),
            "{a:?}"
        );
    }
}
