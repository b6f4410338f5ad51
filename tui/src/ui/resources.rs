//! The Resources screen: per-core CPU, memory, load, network and disk rates as sparklines,
//! plus per-interface, per-device and per-filesystem tables (from `aergo_os::sample`).

use std::collections::VecDeque;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use super::{boxed, note, to_cells};
use crate::app::App;
use crate::fmt;

fn spark(
    f: &mut Frame,
    area: Rect,
    app: &App,
    data: &VecDeque<u64>,
    max: Option<u64>,
    style: Style,
) {
    if area.width == 0 || area.height == 0 {
        return;
    }
    let w = area.width as usize;
    let tail: Vec<u64> = data
        .iter()
        .skip(data.len().saturating_sub(w))
        .copied()
        .collect();
    let mut s = Sparkline::default()
        .data(&tail)
        .bar_set(app.theme.bars())
        .style(style);
    if let Some(m) = max {
        s = s.max(m);
    }
    f.render_widget(s, area);
}

#[allow(clippy::too_many_arguments)]
fn label_and_spark(
    f: &mut Frame,
    row: Rect,
    app: &App,
    label: Line,
    lw: u16,
    data: &VecDeque<u64>,
    max: Option<u64>,
    style: Style,
) {
    let [l, s] = Layout::horizontal([Constraint::Length(lw), Constraint::Min(0)]).areas(row);
    f.render_widget(label, l);
    spark(f, s, app, data, max, style);
}

/// The Resources screen.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let h = &app.model.resources;
    let Some(s) = &h.last else {
        let block = boxed(app, "Resources");
        let inner = block.inner(area);
        f.render_widget(block, area);
        let msg = match &h.error {
            Some(e) => format!("cannot sample resources: {e}"),
            None => "sampling…".to_string(),
        };
        note(f, inner, app, &msg);
        return;
    };
    let cores = to_cells(s.cores_pct.len());
    let fs_rows = to_cells(s.filesystems.len()).min(4);
    let room = area.height.saturating_sub(8 + fs_rows + 3);
    let cpu_rows = (cores + 1).min(room.max(2));
    let top_h = cpu_rows.max(4) + 2;
    let [top, mid, bottom] = Layout::vertical([
        Constraint::Length(top_h),
        Constraint::Min(6),
        Constraint::Length(fs_rows + 3),
    ])
    .areas(area);
    let [cpu_r, mem_r] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);

    // CPU
    let block = boxed(
        app,
        format!(
            "CPU {:.0}%  load {:.2} {:.2} {:.2}",
            s.cpu_pct, s.load.one, s.load.five, s.load.fifteen
        ),
    );
    let inner = block.inner(cpu_r);
    f.render_widget(block, cpu_r);
    let rows = Layout::vertical(vec![Constraint::Length(1); inner.height as usize]).split(inner);
    let lw = 10;
    if let Some(r) = rows.first() {
        label_and_spark(
            f,
            *r,
            app,
            Line::from(vec![
                Span::styled("all ", t.label()),
                Span::styled(format!("{:>4.0}% ", s.cpu_pct), t.level(s.cpu_pct as f64)),
            ]),
            lw,
            &h.cpu,
            Some(100),
            Style::new().fg(t.graph),
        );
    }
    let shown = rows.len().saturating_sub(1);
    for (i, pct) in s.cores_pct.iter().enumerate().take(shown) {
        let label = if i + 1 == shown && s.cores_pct.len() > shown {
            Line::from(Span::styled(
                format!("+{} more", s.cores_pct.len() - i),
                t.label(),
            ))
        } else {
            Line::from(vec![
                Span::styled(format!("{:<4}", format!("{i}")), t.label()),
                Span::styled(format!("{pct:>4.0}% "), t.level(*pct as f64)),
            ])
        };
        if let (Some(r), Some(hist)) = (rows.get(i + 1), h.cores.get(i)) {
            label_and_spark(
                f,
                *r,
                app,
                label,
                lw,
                hist,
                Some(100),
                Style::new().fg(t.graph),
            );
        }
    }

    // Memory
    let m = &s.mem;
    let block = boxed(app, format!("Memory {:.0}%", m.used_pct()));
    let inner = block.inner(mem_r);
    f.render_widget(block, mem_r);
    let [l1, l2, l3, g] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    f.render_widget(
        Line::from(vec![
            Span::styled("used  ", t.label()),
            Span::styled(
                format!("{} / {}", fmt::bytes(m.used()), fmt::bytes(m.total)),
                t.level(m.used_pct() as f64),
            ),
        ]),
        l1,
    );
    f.render_widget(
        Line::from(vec![
            Span::styled("cache ", t.label()),
            Span::raw(fmt::bytes(m.cached + m.buffers)),
        ]),
        l2,
    );
    f.render_widget(
        Line::from(vec![
            Span::styled("swap  ", t.label()),
            Span::raw(if m.swap_total == 0 {
                "none".to_string()
            } else {
                format!(
                    "{} / {}",
                    fmt::bytes(m.swap_used()),
                    fmt::bytes(m.swap_total)
                )
            }),
        ]),
        l3,
    );
    spark(f, g, app, &h.mem, Some(100), Style::new().fg(t.graph));

    // Network and disks
    let [net_r, disk_r] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(mid);
    let rx: f64 = s
        .nets
        .iter()
        .filter(|n| n.iface != "lo")
        .map(|n| n.rx_bps)
        .sum();
    let tx: f64 = s
        .nets
        .iter()
        .filter(|n| n.iface != "lo")
        .map(|n| n.tx_bps)
        .sum();
    let block = boxed(app, "Network");
    let inner = block.inner(net_r);
    f.render_widget(block, net_r);
    let [a, b, tbl] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    let lw = 14;
    label_and_spark(
        f,
        a,
        app,
        Line::from(vec![
            Span::styled("rx ", t.label()),
            Span::raw(format!("{:>10} ", fmt::rate(rx))),
        ]),
        lw,
        &h.net_rx,
        None,
        Style::new().fg(t.ok),
    );
    label_and_spark(
        f,
        b,
        app,
        Line::from(vec![
            Span::styled("tx ", t.label()),
            Span::raw(format!("{:>10} ", fmt::rate(tx))),
        ]),
        lw,
        &h.net_tx,
        None,
        Style::new().fg(t.warn),
    );
    let rows: Vec<Row> = s
        .nets
        .iter()
        .map(|n| {
            Row::new(vec![
                fmt::clip(&n.iface, 9),
                fmt::rate(n.rx_bps),
                fmt::rate(n.tx_bps),
            ])
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(9),
                Constraint::Length(12),
                Constraint::Length(12),
            ],
        )
        .header(Row::new(["iface", "rx", "tx"]).style(t.header())),
        tbl,
    );

    let rd: f64 = s.disks.iter().map(|d| d.read_bps).sum();
    let wr: f64 = s.disks.iter().map(|d| d.write_bps).sum();
    let block = boxed(app, "Disk I/O");
    let inner = block.inner(disk_r);
    f.render_widget(block, disk_r);
    let [a, b, tbl] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    label_and_spark(
        f,
        a,
        app,
        Line::from(vec![
            Span::styled("rd ", t.label()),
            Span::raw(format!("{:>10} ", fmt::rate(rd))),
        ]),
        lw,
        &h.disk_read,
        None,
        Style::new().fg(t.ok),
    );
    label_and_spark(
        f,
        b,
        app,
        Line::from(vec![
            Span::styled("wr ", t.label()),
            Span::raw(format!("{:>10} ", fmt::rate(wr))),
        ]),
        lw,
        &h.disk_write,
        None,
        Style::new().fg(t.warn),
    );
    let rows: Vec<Row> = s
        .disks
        .iter()
        .map(|d| {
            Row::new(vec![
                fmt::clip(&d.name, 9),
                fmt::rate(d.read_bps),
                fmt::rate(d.write_bps),
                format!("{:.0}%", d.util_pct),
            ])
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(9),
                Constraint::Length(12),
                Constraint::Length(12),
                Constraint::Length(5),
            ],
        )
        .header(Row::new(["device", "read", "write", "busy"]).style(t.header())),
        tbl,
    );

    // Filesystems
    let block = boxed(app, "Filesystems");
    if s.filesystems.is_empty() {
        let inner = block.inner(bottom);
        f.render_widget(block, bottom);
        f.render_widget(
            Paragraph::new(Span::styled("no real filesystems mounted", t.label())),
            inner,
        );
        return;
    }
    let rows: Vec<Row> = s
        .filesystems
        .iter()
        .map(|fs| {
            let pct = fs.used_pct() as f64;
            Row::new(vec![
                fmt::clip(&fs.mount, 20),
                fmt::clip(&fs.fstype, 8),
                fmt::bytes(fs.total),
                fmt::bytes(fs.avail),
                fmt::pct(pct),
            ])
            .style(t.level(pct))
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(20),
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(7),
            ],
        )
        .header(Row::new(["mount", "type", "size", "avail", "used"]).style(t.header()))
        .block(block),
        bottom,
    );
}
