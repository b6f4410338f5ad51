//! The Branches screen: the selected ledger's `main` and its branches as a tree (a branch of
//! a branch indented under it), each with its fork height, tip, merged-up-to height, producer
//! and state (produced here, hosted, not here, deleted). Enter makes the node screens read
//! the selected branch; `*` marks the one they read now, Esc goes back to `main`.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::{banners, boxed, note};
use crate::app::{App, Screen};
use crate::fmt;
use crate::model::BranchRow;

fn num(v: Option<u64>) -> String {
    v.map(fmt::thousands).unwrap_or_else(|| "-".into())
}

/// The last segment of a nested name, indented by its depth (`  fix` under `feat`).
fn tree_name(r: &BranchRow) -> String {
    let leaf = r.name.rsplit('/').next().unwrap_or(&r.name);
    if r.depth <= 1 {
        leaf.to_string()
    } else {
        format!("{}`-{leaf}", "  ".repeat(r.depth - 2))
    }
}

/// The Branches screen.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let m = &app.model;
    let area = banners(
        f,
        area,
        app,
        &[("branch_list", &app.endpoints.rpc, m.branches.down.as_ref())],
    );
    let rows_v = app.visible_branches();
    let total = m.branches.get().map(Vec::len).unwrap_or(0);
    let block = boxed(
        app,
        if app.filter().is_empty() {
            format!(
                "Branches of {} ({total})  Enter: read this branch",
                app.ledger()
            )
        } else {
            format!("Branches of {} ({} of {total})", app.ledger(), rows_v.len())
        },
    );
    if rows_v.is_empty() {
        let inner = block.inner(area);
        f.render_widget(block, area);
        let msg = if m.branches.get().is_none() {
            if m.branches.down.is_some() {
                "no branches: the node is unreachable"
            } else {
                "waiting for the node…"
            }
        } else {
            "no branch matches the filter"
        };
        note(f, inner, app, msg);
        return;
    }
    let prod_w = if area.width >= 110 { 24 } else { 13 };
    let rows: Vec<Row> = rows_v
        .iter()
        .map(|r| {
            let current = r.name == app.branch_name();
            let state_style = match r.state.as_str() {
                "produced here" | "chain" => Style::new().fg(t.ok),
                "hosted" => Style::new(),
                "deleted" => Style::new().fg(t.err),
                _ => Style::new().fg(t.dim),
            };
            let note = match &r.error {
                Some(e) => Span::styled(e.clone(), Style::new().fg(t.err)),
                None => Span::raw(r.strategy.clone()),
            };
            Row::new(vec![
                Span::styled(if current { "*" } else { " " }, Style::new().fg(t.accent)),
                Span::raw(fmt::clip(&tree_name(r), 16)),
                Span::raw(num(r.fork_height)),
                Span::raw(num(r.tip_height)),
                Span::raw(num(r.merged_up_to)),
                Span::raw(if r.producer.is_empty() {
                    "-".to_string()
                } else {
                    fmt::short(&r.producer, prod_w)
                }),
                Span::styled(r.state.clone(), state_style),
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
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(super::to_cells(prod_w)),
            Constraint::Length(13),
            Constraint::Min(4),
        ],
    )
    .header(
        Row::new([
            "", "Branch", "Fork", "Tip", "Merged", "Producer", "State", "Merge",
        ])
        .style(t.header()),
    )
    .row_highlight_style(t.selected())
    .block(block);
    let sel = app.sel[Screen::Branches.index()].min(n - 1);
    let [list_r, foot_r] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(area);
    app.page.set(list_r.height.saturating_sub(4) as usize);
    let mut st = TableState::default();
    st.select(Some(sel));
    f.render_stateful_widget(table, list_r, &mut st);
    if let Some(r) = rows_v.get(sel) {
        let mut text = vec![Span::styled(format!("{}: ", r.name), t.header())];
        if let Some(e) = &r.error {
            text.push(Span::styled(e.clone(), Style::new().fg(t.err)));
        } else if !r.readable() {
            text.push(Span::styled(
                format!("{}: this node cannot read it", r.state),
                t.label(),
            ));
        } else {
            text.push(Span::styled(
                format!("reading {} now", app.ledger_label()),
                t.label(),
            ));
        }
        f.render_widget(
            Paragraph::new(Line::from(text)).wrap(Wrap { trim: true }),
            foot_r,
        );
    }
}
