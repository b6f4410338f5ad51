//! Rendering: [`draw`] paints the whole frame from an [`App`] (pure: no I/O, time comes from
//! `App::now_ms`), so every screen can be snapshot-tested with ratatui's `TestBackend`.
//!
//! Layout: a tab line, the screen body, and a status line with source health and key hints.
//! Overlays: help (`?`) and the restart confirmation.

mod blocks;
mod branches;
mod overview;
mod peers;
mod repos;
mod resources;
mod services;
mod storage;

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use crate::app::{App, Screen};
use crate::fmt;
use crate::model::Down;

pub use overview::alerts;

/// Paints the frame.
pub fn draw(f: &mut Frame, app: &App) {
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_tabs(f, tabs, app);
    let reads_node = matches!(
        app.screen,
        Screen::Overview | Screen::Blocks | Screen::Mempool | Screen::Peers
    );
    if reads_node && app.private_denied() {
        let block = boxed(
            app,
            format!("{} — {}", app.screen.title(), app.ledger_label()),
        );
        let inner = block.inner(body);
        f.render_widget(block, body);
        note(
            f,
            inner,
            app,
            &format!(
                "{}: {} (select another ledger on screen 9)",
                app.ledger(),
                crate::model::PRIVATE_MSG
            ),
        );
    } else {
        draw_body(f, body, app);
    }
    draw_status(f, status, app);
    if let Some(name) = &app.confirm {
        draw_confirm(f, app, name);
    }
    if app.help {
        draw_help(f, app);
    }
    if app.theme.console_safe() {
        console_glyphs(f);
    }
}

fn draw_body(f: &mut Frame, body: Rect, app: &App) {
    match app.screen {
        Screen::Overview => overview::draw(f, body, app),
        Screen::Blocks => blocks::draw(f, body, app),
        Screen::Mempool => blocks::draw_mempool(f, body, app),
        Screen::Peers => peers::draw(f, body, app),
        Screen::Resources => resources::draw(f, body, app),
        Screen::Storage => storage::draw(f, body, app),
        Screen::Services => services::draw(f, body, app),
        Screen::Logs => services::draw_logs(f, body, app),
        Screen::Repos => repos::draw(f, body, app),
        Screen::Branches => branches::draw(f, body, app),
    }
}

/// Replaces glyphs that the Linux console's default font lacks with ASCII look-alikes
/// (box drawing and the full/half blocks are kept: the console font has them).
fn console_glyphs(f: &mut Frame) {
    for cell in f.buffer_mut().content.iter_mut() {
        let ascii = match cell.symbol() {
            "…" => "~",
            "—" => "-",
            "↑" => "^",
            "↓" => "v",
            "←" => "<",
            "→" => ">",
            "●" => "*",
            "✖" => "x",
            _ => continue,
        };
        cell.set_symbol(ascii);
    }
}

fn draw_tabs(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let mut spans = Vec::new();
    let wide = area.width >= 110;
    for s in Screen::ALL {
        let label = if wide {
            format!(" {} {} ", s.key(), s.title())
        } else {
            format!("{} {} ", s.key(), s.short_title())
        };
        let style = if s == app.screen {
            Style::new()
                .fg(t.accent)
                .add_modifier(Modifier::BOLD | Modifier::REVERSED)
        } else {
            Style::new()
        };
        spans.push(Span::styled(label, style));
    }
    f.render_widget(Line::from(spans), area);
    let clock = format!("{} UTC", fmt::clock(app.now_ms));
    let used: usize = Screen::ALL
        .iter()
        .map(|s| {
            if wide {
                s.title().len() + 4
            } else {
                s.short_title().len() + 3
            }
        })
        .sum();
    if area.width as usize > used + clock.len() {
        f.render_widget(
            Paragraph::new(Span::styled(clock, t.label())).right_aligned(),
            area,
        );
    }
}

/// Health of one source for the status line: name, ok?
fn health<T>(feed: &crate::model::Feed<T>) -> Option<bool> {
    if feed.down.is_some() {
        Some(false)
    } else if feed.value.is_some() {
        Some(true)
    } else {
        None
    }
}

fn draw_status(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let m = &app.model;
    // The ledger the node screens read, always in view.
    let mut spans = vec![Span::styled(
        format!("[{}] ", app.ledger_label()),
        Style::new().fg(t.accent).add_modifier(Modifier::BOLD),
    )];
    let sources = [
        // A private repository refusing this dashboard's reads: the node itself answers.
        (
            "node",
            if app.private_denied() {
                Some(true)
            } else {
                health(&m.chain)
            },
        ),
        ("init", health(&m.init)),
        ("fs", health(&m.storage)),
    ];
    for (name, h) in sources {
        // On a host, missing init/AergoFS is normal: leave them out of the status line.
        if app.host_mode && name != "node" && h != Some(true) {
            continue;
        }
        let (mark, style) = match h {
            Some(true) => (t.up_mark(), Style::new().fg(t.ok)),
            Some(false) => (t.down_mark(), Style::new().fg(t.err)),
            None => ("?", Style::new().fg(t.dim)),
        };
        spans.push(Span::styled(format!("{mark} {name} "), style));
    }
    if m.ws_live {
        spans.push(Span::styled("live ", Style::new().fg(t.ok)));
    }
    if app.host_mode {
        spans.push(Span::styled("host ", Style::new().fg(t.dim)));
    }
    if let Some(g) = &app.goto {
        spans.push(Span::styled(
            format!("go to height: {g}_ (Enter opens, Esc cancels)"),
            Style::new().fg(t.warn).add_modifier(Modifier::BOLD),
        ));
    } else if app.editing_filter {
        spans.push(Span::styled(
            format!("/{}_", app.filter()),
            Style::new().fg(t.warn).add_modifier(Modifier::BOLD),
        ));
    } else if let Some(msg) = app.current_flash() {
        spans.push(Span::styled(msg.to_string(), Style::new().fg(t.warn)));
    } else if !app.filter().is_empty() {
        spans.push(Span::styled(
            format!("filter: {} (Esc clears)", app.filter()),
            Style::new().fg(t.warn),
        ));
    }
    f.render_widget(Line::from(spans), area);
    let hint = if app.no_quit {
        "?:help"
    } else {
        "?:help q:quit"
    };
    f.render_widget(
        Paragraph::new(Span::styled(hint, t.label())).right_aligned(),
        area,
    );
}

/// A bordered box with a title.
/// A count of terminal cells or rows as ratatui's u16, saturating (no terminal is 65,535
/// cells wide, so real counts are unchanged; a larger one is clipped, never wrapped).
pub(crate) fn to_cells(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

pub(crate) fn boxed<'a>(app: &App, title: impl Into<String>) -> Block<'a> {
    Block::new()
        .borders(Borders::ALL)
        .border_style(Style::new().fg(app.theme.dim))
        .title(Span::styled(
            format!(" {} ", title.into()),
            app.theme.title(),
        ))
}

/// A `label  value` line with the label padded to `w`.
pub(crate) fn kv<'a>(app: &App, label: &str, w: usize, value: impl Into<Span<'a>>) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{label:<w$}"), app.theme.label()),
        value.into(),
    ])
}

/// The outage line of a source: what, where, since when, why.
pub(crate) fn outage<'a>(app: &App, what: &str, url: &str, d: &Down) -> Line<'a> {
    Line::from(vec![
        Span::styled(
            format!("{} {what} ", app.theme.down_mark()),
            Style::new().fg(app.theme.err).add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!(
                "{url} unreachable since {} ({}): {}",
                fmt::clock(d.since_ms),
                fmt::ago(d.since_ms, app.now_ms),
                d.error
            ),
            Style::new().fg(app.theme.err),
        ),
    ])
}

/// Draws outage lines for the failing sources at the top of `area`; returns the rest.
pub(crate) fn banners(
    f: &mut Frame,
    area: Rect,
    app: &App,
    sources: &[(&str, &str, Option<&Down>)],
) -> Rect {
    let lines: Vec<Line> = sources
        .iter()
        // On a host, init and AergoFS are not expected: no outage banner for them.
        .filter(|(what, _, _)| !(app.host_mode && matches!(*what, "init" | "AergoFS")))
        .filter_map(|(what, url, d)| d.map(|d| outage(app, what, url, d)))
        .collect();
    if lines.is_empty() {
        return area;
    }
    // Long banners wrap instead of being cut at the screen's edge.
    let width = usize::from(area.width.max(1));
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(width)).sum();
    let n = to_cells(rows).min(area.height.saturating_sub(1));
    let [top, rest] = Layout::vertical([Constraint::Length(n), Constraint::Min(0)]).areas(area);
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), top);
    rest
}

/// A centred note inside `area` (empty states).
pub(crate) fn note(f: &mut Frame, area: Rect, app: &App, text: &str) {
    let [mid] = Layout::vertical([Constraint::Length(3)])
        .flex(Flex::Center)
        .areas(area);
    f.render_widget(
        Paragraph::new(text.to_string())
            .style(Style::new().fg(app.theme.dim))
            .centered()
            .wrap(Wrap { trim: true }),
        mid,
    );
}

fn popup(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    r
}

fn draw_confirm(f: &mut Frame, app: &App, name: &str) {
    let r = popup(f.area(), 44, 5);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(format!("Restart service '{name}'?")),
            Line::from(""),
            Line::from(Span::styled(
                "y: restart   n/Esc: cancel",
                app.theme.label(),
            )),
        ])
        .centered()
        .block(boxed(app, "Confirm")),
        r,
    );
}

/// Every key, as shown by `?`.
pub const HELP: &[(&str, &str)] = &[
    ("Tab / Shift-Tab", "next / previous screen"),
    ("1 - 9, 0", "go to screen (0: Branches)"),
    ("↑↓ / j k", "move selection, scroll"),
    ("PgUp / PgDn", "page up / down"),
    ("g / G", "first / last (G: follow logs)"),
    ("g N Enter", "go to block N (Blocks)"),
    ("Enter / l / →", "open: block → tx → receipt"),
    ("Esc / h / ←", "back; clear filter"),
    ("/", "filter; Enter: height/hash from the chain"),
    ("Enter (Repos)", "read that repository on every screen"),
    ("Enter (Branches)", "read that branch; Esc: back to main"),
    ("r", "restart selected service (Services)"),
    ("h l / ← →", "previous / next service (Logs)"),
    ("f / w", "follow / wrap (Logs)"),
    ("?", "this help"),
    ("q / Ctrl-C", "quit (disabled on the console)"),
];

fn draw_help(f: &mut Frame, app: &App) {
    let r = popup(f.area(), 62, to_cells(HELP.len()).saturating_add(4));
    f.render_widget(Clear, r);
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!(" {k:<17}"), app.theme.header()),
                Span::raw(*v),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        " any key closes this help",
        app.theme.label(),
    )));
    f.render_widget(Paragraph::new(lines).block(boxed(app, "Keys")), r);
}
