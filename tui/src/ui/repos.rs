//! The Repositories screen: the root chain `aergo` and every registered repository, one row
//! each (engine, height, finalized height, directory height, members, visibility, hosted),
//! an RPC error about one repository in its own row. Enter makes the node screens read the
//! selected one; `*` marks the ledger they read now.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::{banners, boxed, note};
use crate::app::{App, Screen};
use crate::fmt;

fn num(v: Option<u64>) -> String {
    v.map(fmt::thousands).unwrap_or_else(|| "-".into())
}

/// The Repositories screen.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let m = &app.model;
    let area = banners(
        f,
        area,
        app,
        &[("repo_list", &app.endpoints.rpc, m.repos.down.as_ref())],
    );
    let repos = app.visible_repos();
    let total = m.repos.get().map(Vec::len).unwrap_or(0);
    let block = boxed(
        app,
        if app.filter().is_empty() {
            format!("Repositories ({total})  Enter: read this ledger")
        } else {
            format!("Repositories ({} of {total})", repos.len())
        },
    );
    if repos.is_empty() {
        let inner = block.inner(area);
        f.render_widget(block, area);
        let msg = if m.repos.get().is_none() {
            if m.repos.down.is_some() {
                "no repositories: the node is unreachable"
            } else {
                "waiting for the node…"
            }
        } else {
            "no repository matches the filter"
        };
        note(f, inner, app, msg);
        return;
    }
    let rows: Vec<Row> = repos
        .iter()
        .map(|r| {
            let current = r.name == app.ledger();
            // A private repository's figures are known only through the operator's socket;
            // otherwise they are absent (`-`).
            let (dd, members) = (num(r.dd_height), num(r.members));
            let vis_style = if r.private() {
                Style::new().fg(t.warn)
            } else {
                Style::new()
            };
            let hosted = if r.hosted {
                Span::styled("yes", Style::new().fg(t.ok))
            } else {
                Span::styled("no", Style::new().fg(t.dim))
            };
            let note = match &r.error {
                Some(e) => Span::styled(e.clone(), Style::new().fg(t.err)),
                None => Span::raw(""),
            };
            Row::new(vec![
                Span::styled(if current { "*" } else { " " }, Style::new().fg(t.accent)),
                Span::raw(fmt::clip(&r.name, 16)),
                Span::raw(if r.engine.is_empty() {
                    "?".to_string()
                } else {
                    r.engine.clone()
                }),
                Span::raw(num(r.height)),
                Span::raw(num(r.finalized_height)),
                Span::raw(dd),
                Span::raw(members),
                Span::styled(r.visibility.clone(), vis_style),
                hosted,
                note,
            ])
        })
        .collect();
    let n = rows.len();
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Length(16),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Min(4),
        ],
    )
    .header(
        Row::new([
            "", "Name", "Engine", "Height", "Final", "DD", "Members", "Access", "Hosted", "Note",
        ])
        .style(t.header()),
    )
    .row_highlight_style(t.selected())
    .block(block);
    let sel = app.sel[Screen::Repos.index()].min(n - 1);
    let [list_r, foot_r] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(area);
    app.page.set(list_r.height.saturating_sub(4) as usize);
    let mut st = TableState::default();
    st.select(Some(sel));
    f.render_stateful_widget(table, list_r, &mut st);
    if let Some(r) = repos.get(sel) {
        let mut text = vec![Span::styled(format!("{}: ", r.name), t.header())];
        if let Some(e) = &r.error {
            text.push(Span::styled(e.clone(), Style::new().fg(t.err)));
        } else if r.private() && r.dd_height.is_none() {
            text.push(Span::styled(
                "private: reads (and its directory) need a member's signature",
                Style::new().fg(t.warn),
            ));
        } else if !r.hosted {
            text.push(Span::styled("not hosted by this node", t.label()));
        } else {
            text.push(Span::styled(
                format!("reading {} now", app.ledger()),
                t.label(),
            ));
        }
        f.render_widget(
            Paragraph::new(Line::from(text)).wrap(Wrap { trim: true }),
            foot_r,
        );
    }
}
