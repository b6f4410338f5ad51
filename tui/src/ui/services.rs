//! The Services screen (init's supervised services, `r` to restart, and the A/B system
//! slots with the last upgrade's outcome) and the Logs screen (tail of one service's log
//! with follow, filter and wrap).

use aergo_os::control::ServiceState;
use aergo_os::slots::SlotState;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::{banners, boxed, note};
use crate::app::{App, Screen};
use crate::fmt;

/// The Services screen.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let m = &app.model;
    let area = banners(
        f,
        area,
        app,
        &[("init", &app.endpoints.init, m.init.down.as_ref())],
    );
    let slots_h = slots_height(app);
    let [area, slots_r] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(slots_h)]).areas(area);
    if slots_h > 0 {
        draw_slots(f, slots_r, app);
    }
    let services = app.visible_services();
    let total = m.init.get().map(|i| i.services.len()).unwrap_or(0);
    let block = boxed(
        app,
        if app.filter().is_empty() {
            format!("Services ({total})  Enter: logs  r: restart")
        } else {
            format!("Services ({} of {total})", services.len())
        },
    );
    if services.is_empty() {
        let inner = block.inner(area);
        f.render_widget(block, area);
        let msg = if m.init.get().is_none() {
            if m.init.down.is_some() && app.host_mode {
                "host mode: no init here (services and logs are the appliance's)"
            } else if m.init.down.is_some() {
                "no services: init unreachable"
            } else {
                "waiting for init…"
            }
        } else if total == 0 {
            "init supervises no services"
        } else {
            "no service matches the filter"
        };
        note(f, inner, app, msg);
        return;
    }
    let rows: Vec<Row> = services
        .iter()
        .map(|s| {
            let color = match s.state {
                ServiceState::Running => t.ok,
                ServiceState::Starting | ServiceState::Waiting | ServiceState::Stopping => t.warn,
                ServiceState::Backoff | ServiceState::Missing => t.err,
                ServiceState::Stopped => t.dim,
            };
            Row::new(vec![
                Span::raw(fmt::clip(&s.name, 12)),
                Span::styled(s.state.as_str(), Style::new().fg(color)),
                Span::raw(s.pid.map(|p| p.to_string()).unwrap_or_else(|| "—".into())),
                Span::raw(s.restarts.to_string()),
                Span::raw(
                    s.uptime_ms
                        .map(|u| fmt::duration(u / 1000))
                        .unwrap_or_else(|| "—".into()),
                ),
                Span::raw(
                    s.last_exit
                        .as_ref()
                        .map(|e| format!("{e} {}", fmt::ago(e.at_unix_ms, app.now_ms)))
                        .unwrap_or_else(|| "—".into()),
                ),
                Span::styled(s.message.clone().unwrap_or_default(), t.label()),
            ])
        })
        .collect();
    let n = rows.len();
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(20),
            Constraint::Min(4),
        ],
    )
    .header(
        Row::new([
            "Service",
            "State",
            "PID",
            "Restarts",
            "Uptime",
            "Last exit",
            "Note",
        ])
        .style(t.header()),
    )
    .row_highlight_style(t.selected())
    .block(block);
    let sel = app.sel[Screen::Services.index()].min(n - 1);
    let [list_r, foot_r] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(area);
    app.page.set(list_r.height.saturating_sub(4) as usize);
    let mut st = TableState::default();
    st.select(Some(sel));
    f.render_stateful_widget(table, list_r, &mut st);
    if let Some(s) = services.get(sel) {
        let mut text = vec![Span::styled(format!("{}: ", s.name), t.header())];
        if let Some(msg) = &s.message {
            text.push(Span::styled(format!("{msg}  "), Style::new().fg(t.warn)));
        }
        text.push(Span::styled(s.command.join(" "), t.label()));
        f.render_widget(
            Paragraph::new(Line::from(text)).wrap(Wrap { trim: true }),
            foot_r,
        );
    }
}

/// Lines the last upgrade's outcome may take in the slots panel.
const OUTCOME_LINES: u16 = 2;

/// Height of the slots panel (borders, header, one row per slot, the last upgrade's
/// outcome); 0 when init reports no slots (a disk without A/B slots, or no init).
fn slots_height(app: &App) -> u16 {
    match app.model.init.get() {
        Some(i) if !i.slots.is_empty() => {
            let rows = u16::try_from(i.slots.len()).unwrap_or(u16::MAX).min(4);
            2 + 1 + rows + OUTCOME_LINES
        }
        _ => 0,
    }
}

/// A slot state as `aergo os status` prints it.
pub fn slot_state(s: SlotState) -> &'static str {
    match s {
        SlotState::Active => "active",
        SlotState::Trying => "trying",
        SlotState::Good => "good",
        SlotState::Bad => "bad",
        SlotState::Empty => "empty",
    }
}

/// The A/B system slots (version and state of each) and the last upgrade's outcome, as
/// init's `status` reports them.
fn draw_slots(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let Some(view) = app.model.init.get() else {
        return;
    };
    let block = boxed(app, "System slots");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows: Vec<Row> = view
        .slots
        .iter()
        .map(|s| {
            let color = match s.state {
                SlotState::Active => t.ok,
                SlotState::Trying => t.warn,
                SlotState::Bad => t.err,
                SlotState::Good | SlotState::Empty => t.dim,
            };
            let version = if s.version.is_empty() {
                "—".to_string()
            } else {
                fmt::clip(&s.version, 24)
            };
            Row::new(vec![
                Span::raw(fmt::clip(&s.name, 6)),
                Span::raw(version),
                Span::styled(slot_state(s.state), Style::new().fg(color)),
            ])
        })
        .collect();
    let n = u16::try_from(rows.len()).unwrap_or(u16::MAX);
    let [table_r, last_r] =
        Layout::vertical([Constraint::Length(1 + n), Constraint::Min(1)]).areas(inner);
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(25),
            Constraint::Min(8),
        ],
    )
    .header(Row::new(["Slot", "Version", "State"]).style(t.header()));
    f.render_widget(table, table_r);
    let outcome = view
        .last_upgrade
        .clone()
        .unwrap_or_else(|| "none since this disk was flashed".into());
    let mut spans = vec![
        Span::styled("Last upgrade: ", t.label()),
        Span::raw(outcome),
    ];
    if let Some(at) = view.reboot_at {
        let hm: String = fmt::clock(at.saturating_mul(1000))
            .chars()
            .take(5)
            .collect();
        spans.push(Span::styled(
            format!("  reboot scheduled at {hm} UTC"),
            Style::new().fg(t.warn),
        ));
    }
    f.render_widget(
        Paragraph::new(Line::from(spans)).wrap(Wrap { trim: true }),
        last_r,
    );
}

/// The Logs screen.
pub fn draw_logs(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let m = &app.model;
    let area = banners(
        f,
        area,
        app,
        &[("init", &app.endpoints.init, m.logs.down.as_ref())],
    );
    let service = app.log_service.clone().unwrap_or_else(|| "init".into());
    let lines = app.visible_logs();
    let mut title = format!("Logs: {service}  h/l: service");
    title.push_str(if app.follow {
        "  [follow]"
    } else {
        "  [paused]"
    });
    if app.wrap {
        title.push_str(" [wrap]");
    }
    if !app.filter().is_empty() {
        title.push_str(&format!(" [/{}: {} lines]", app.filter(), lines.len()));
    }
    let block = boxed(app, title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if lines.is_empty() {
        let msg = if app.host_mode && m.init.get().is_none() {
            "host mode: no init here, so no service logs (a host's node logs to its terminal)"
                .to_string()
        } else if m.logs.get().is_none() {
            if m.logs.down.is_some() {
                "no logs: init unreachable".to_string()
            } else {
                format!("waiting for {service}'s log…")
            }
        } else if m.logs.get().map(|v| v.is_empty()).unwrap_or(true) {
            format!("{service} has not logged anything yet")
        } else {
            "no line matches the filter".to_string()
        };
        note(f, inner, app, &msg);
        return;
    }
    let h = inner.height as usize;
    app.page.set(h.max(1));
    let top = if app.follow {
        lines.len().saturating_sub(h)
    } else {
        app.log_top.min(lines.len().saturating_sub(1))
    };
    let shown: Vec<Line> = lines
        .iter()
        .skip(top)
        .take(h)
        .map(|l| {
            let style = if l.stream == "stderr" {
                Style::new().fg(t.warn)
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::styled(format!("{} ", fmt::clock(l.ts_ms)), t.label()),
                Span::styled(l.text.clone(), style),
            ])
        })
        .collect();
    let mut p = Paragraph::new(shown);
    if app.wrap {
        p = p.wrap(Wrap { trim: false });
    }
    f.render_widget(p, inner);
}
