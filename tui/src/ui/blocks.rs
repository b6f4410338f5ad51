//! The Blocks screen with its drill-down (block → transaction → receipt) and the Mempool
//! screen (which drills down to a pending transaction).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Gauge, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::{banners, boxed, kv, note, to_cells};
use crate::app::{App, Detail, Screen};
use crate::fmt;
use crate::model::{Feed, MergeView, TxDetail};

fn table_state(sel: usize, rows: usize) -> TableState {
    let mut s = TableState::default();
    if rows > 0 {
        s.select(Some(sel.min(rows - 1)));
    }
    s
}

/// The Blocks screen.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let m = &app.model;
    let area = banners(
        f,
        area,
        app,
        &[("node", &app.endpoints.rpc, m.blocks.down.as_ref())],
    );
    match app.detail() {
        None => draw_list(f, area, app),
        Some(Detail::Block(h)) => draw_block(f, area, app, *h),
        Some(Detail::Tx(hash)) => draw_tx(f, area, app, hash),
        Some(Detail::Receipt(hash)) => draw_receipt(f, area, app, hash),
        Some(Detail::Search(hash)) => draw_search(f, area, app, hash),
    }
}

/// A chain search by hash: in flight, or what it found nothing for.
fn draw_search(f: &mut Frame, area: Rect, app: &App, hash: &str) {
    let t = &app.theme;
    let (text, style) = match &app.model.search_miss {
        Some((q, msg)) if q == hash => (msg.clone(), Style::new().fg(t.warn)),
        _ => (
            format!("searching the chain for a block or transaction with hash {hash}…"),
            Style::new().fg(t.dim),
        ),
    };
    f.render_widget(
        Paragraph::new(text)
            .style(style)
            .wrap(Wrap { trim: true })
            .block(boxed(app, "Search  (Esc back)")),
        area,
    );
}

fn draw_list(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let blocks = app.visible_blocks();
    let total = app.model.blocks.get().map(|v| v.len()).unwrap_or(0);
    let title = if app.filter().is_empty() {
        format!("Blocks ({total})")
    } else {
        format!(
            "Blocks ({} of {total}, filter '{}')",
            blocks.len(),
            app.filter()
        )
    };
    let block = boxed(app, title);
    if blocks.is_empty() {
        let inner = block.inner(area);
        f.render_widget(block, area);
        let msg = if app.model.blocks.get().is_none() {
            if app.model.blocks.down.is_some() {
                "no blocks: node unreachable"
            } else {
                "waiting for blocks…"
            }
        } else if total == 0 {
            "the chain has no blocks yet"
        } else if crate::app::hash_prefix(app.filter()).is_some_and(|p| p.len() < 64) {
            "no loaded block's hash starts with that; the whole hash (64 hex digits) + Enter searches the chain"
        } else {
            "no block matches the filter (Enter searches the chain for a height or a whole hash)"
        };
        note(f, inner, app, msg);
        return;
    }
    let wide = area.width >= 110;
    let prod_w = if wide { 24 } else { 13 };
    let cells: Vec<[String; 6]> = blocks
        .iter()
        .map(|b| {
            [
                fmt::thousands(b.height),
                fmt::clock(b.timestamp_ms),
                fmt::ago(b.timestamp_ms, app.now_ms),
                fmt::thousands(b.tx_count),
                fmt::bytes(b.size),
                fmt::thousands(b.gas_used),
            ]
        })
        .collect();
    let col = |i: usize, min: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .max()
            .unwrap_or(0)
            .max(min)
    };
    let w: Vec<usize> = vec![
        col(0, 6),
        8,
        col(2, 5),
        col(3, 3),
        col(4, 4),
        col(5, 3),
        prod_w,
    ];
    let fixed: usize = w.iter().sum::<usize>() + w.len();
    let hash_w = (area.width as usize).saturating_sub(2 + fixed).max(8);
    let rows: Vec<Row> = blocks
        .iter()
        .zip(cells)
        .map(|(b, c)| {
            let mut v: Vec<Cell> = c.into_iter().map(Cell::from).collect();
            v.push(Cell::from(fmt::short(&b.producer, prod_w)));
            // A merge block seen in a detail is marked: `merge ← feat@7`, then the hash.
            v.push(match app.model.merges.get(&b.height) {
                Some(m) => {
                    let mark = format!("merge \u{2190} {m} ");
                    let rest = hash_w.saturating_sub(mark.chars().count()).max(8);
                    Cell::from(Line::from(vec![
                        Span::styled(mark, Style::new().fg(t.accent)),
                        Span::raw(fmt::short(&b.hash, rest)),
                    ]))
                }
                None => Cell::from(fmt::short(&b.hash, hash_w)),
            });
            Row::new(v)
        })
        .collect();
    let mut widths: Vec<Constraint> = w.iter().map(|x| Constraint::Length(to_cells(*x))).collect();
    widths.push(Constraint::Min(8));
    let header = Row::new([
        "Height", "Time", "Age", "Txs", "Size", "Gas", "Producer", "Hash",
    ])
    .style(t.header());
    let n = rows.len();
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(t.selected())
        .block(block);
    app.page.set(area.height.saturating_sub(4) as usize);
    let mut st = table_state(app.sel[Screen::Blocks.index()], n);
    f.render_stateful_widget(table, area, &mut st);
}

fn loading<'a, T>(feed: &Feed<T>, what: &str) -> Line<'a> {
    match &feed.down {
        Some(d) => Line::from(format!("{what}: {}", d.error)),
        None => Line::from(format!("loading {what}…")),
    }
}

fn draw_block(f: &mut Frame, area: Rect, app: &App, height: u64) {
    let t = &app.theme;
    let feed = &app.model.block;
    let Some(b) = feed.get().filter(|b| b.summary.height == height) else {
        let block = boxed(app, format!("Block {}  (Esc back)", fmt::thousands(height)));
        f.render_widget(
            Paragraph::new(loading(feed, &format!("block {height}")))
                .style(Style::new().fg(if feed.down.is_some() { t.err } else { t.dim }))
                .block(block),
            area,
        );
        return;
    };
    let w = 14;
    let hw = area.width.saturating_sub(to_cells(w).saturating_add(2)) as usize;
    let s = &b.summary;
    let lines = vec![
        kv(app, "Hash", w, fmt::short(&s.hash, hw)),
        kv(app, "Parent", w, fmt::short(&b.parent_hash, hw)),
        kv(
            app,
            "Time",
            w,
            format!(
                "{} UTC ({})",
                fmt::datetime(s.timestamp_ms),
                fmt::ago(s.timestamp_ms, app.now_ms)
            ),
        ),
        kv(app, "Producer", w, fmt::short(&s.producer, hw)),
        kv(
            app,
            "Txs / size",
            w,
            format!(
                "{} tx{}, {}, gas {}",
                fmt::thousands(s.tx_count),
                if s.tx_count == 1 { "" } else { "s" },
                fmt::bytes(s.size),
                fmt::thousands(s.gas_used)
            ),
        ),
        kv(app, "State root", w, fmt::short(&b.state_root, hw)),
        kv(app, "Tx root", w, fmt::short(&b.tx_root, hw)),
        kv(app, "Receipts root", w, fmt::short(&b.receipts_root, hw)),
        kv(app, "Consensus", w, fmt::clip(&b.consensus, hw)),
        kv(app, "Signature", w, fmt::short(&b.signature, hw)),
    ];
    let head_h = to_cells(lines.len())
        .saturating_add(2)
        .min(area.height / 2 + 1);
    let merge_lines = b.merge.as_ref().map(|m| merge_lines(app, m, w, hw));
    let merge_h = merge_lines.as_ref().map_or(0, |l| {
        to_cells(l.len()).saturating_add(2).min(area.height / 3)
    });
    let [head, merge_r, txs_r] = Layout::vertical([
        Constraint::Length(head_h),
        Constraint::Length(merge_h),
        Constraint::Min(3),
    ])
    .areas(area);
    if let (Some(lines), Some(m)) = (merge_lines, &b.merge) {
        f.render_widget(
            Paragraph::new(lines).block(boxed(
                app,
                format!(
                    "Merge \u{2190} {}  ({} merged, {} excluded)",
                    m.label(),
                    m.merged.len(),
                    m.excluded.len()
                ),
            )),
            merge_r,
        );
    }
    f.render_widget(
        Paragraph::new(lines).block(boxed(
            app,
            format!("Block {}  (Esc back)", fmt::thousands(s.height)),
        )),
        head,
    );
    let block = boxed(app, format!("Transactions ({})", b.txs.len()));
    if b.txs.is_empty() {
        let inner = block.inner(txs_r);
        f.render_widget(block, txs_r);
        note(f, inner, app, "no transactions in this block");
        return;
    }
    let addr_w = if area.width >= 110 { 24 } else { 13 };
    let rows: Vec<Row> = b
        .txs
        .iter()
        .map(|tx| {
            Row::new(vec![
                Cell::from(fmt::short(&tx.hash, 17)),
                Cell::from(fmt::clip(&tx.kind, 8)),
                Cell::from(fmt::short(&tx.from, addr_w)),
                Cell::from(fmt::short(&tx.to, addr_w)),
                Cell::from(fmt::aergo(&tx.amount, 4)),
            ])
        })
        .collect();
    let n = rows.len();
    let table = Table::new(
        rows,
        [
            Constraint::Length(17),
            Constraint::Length(8),
            Constraint::Length(to_cells(addr_w)),
            Constraint::Length(to_cells(addr_w)),
            Constraint::Min(6),
        ],
    )
    .header(Row::new(["Hash", "Kind", "From", "To", "Amount (AERGO)"]).style(t.header()))
    .row_highlight_style(t.selected())
    .block(block);
    app.page.set(txs_r.height.saturating_sub(4) as usize);
    let mut st = table_state(app.detail_sel, n);
    f.render_stateful_widget(table, txs_r, &mut st);
}

/// A merge block's second parent, its merged transactions and the excluded ones with their
/// reasons.
fn merge_lines<'a>(app: &App, m: &MergeView, w: usize, hw: usize) -> Vec<Line<'a>> {
    let t = &app.theme;
    let source = if m.source.is_empty() {
        "(unknown name)".to_string()
    } else {
        m.source.clone()
    };
    let mut lines = vec![
        kv(
            app,
            "Source",
            w,
            format!(
                "{source} at {} ({})",
                fmt::thousands(m.source_height),
                m.strategy
            ),
        ),
        kv(app, "Source tip", w, fmt::short(&m.source_tip, hw)),
        kv(app, "Source id", w, fmt::short(&m.source_id, hw)),
    ];
    for (i, h) in m.merged.iter().enumerate() {
        let label = if i == 0 { "Merged" } else { "" };
        lines.push(kv(app, label, w, fmt::short(h, hw)));
    }
    for (i, (h, reason, detail)) in m.excluded.iter().enumerate() {
        let label = if i == 0 { "Excluded" } else { "" };
        let mut l = kv(app, label, w, format!("{} ", fmt::short(h, 17)));
        l.spans
            .push(Span::styled(reason.clone(), Style::new().fg(t.warn)));
        if !detail.is_empty() {
            l.spans.push(Span::raw(format!(": {detail}")));
        }
        lines.push(l);
    }
    lines
}

fn tx_for<'a>(app: &'a App, hash: &str) -> Option<&'a TxDetail> {
    app.model.tx.get().filter(|d| d.tx.hash == hash)
}

fn draw_tx(f: &mut Frame, area: Rect, app: &App, hash: &str) {
    let t = &app.theme;
    let Some(d) = tx_for(app, hash) else {
        f.render_widget(
            Paragraph::new(loading(&app.model.tx, "transaction"))
                .style(Style::new().fg(if app.model.tx.down.is_some() {
                    t.err
                } else {
                    t.dim
                }))
                .wrap(Wrap { trim: true })
                .block(boxed(app, format!("Transaction {}", fmt::short(hash, 17)))),
            area,
        );
        return;
    };
    let w = 12;
    let hw = area.width.saturating_sub(to_cells(w).saturating_add(2)) as usize;
    let tx = &d.tx;
    let status_style = if tx.status == "included" {
        Style::new().fg(t.ok)
    } else {
        Style::new().fg(t.warn)
    };
    let mut lines = vec![
        kv(app, "Hash", w, fmt::short(&tx.hash, hw)),
        kv(
            app,
            "Status",
            w,
            Span::styled(
                match (tx.block_height, tx.index) {
                    (Some(h), Some(i)) => {
                        format!("{} in block {} at index {i}", tx.status, fmt::thousands(h))
                    }
                    (Some(h), None) => format!("{} in block {}", tx.status, fmt::thousands(h)),
                    _ => tx.status.clone(),
                },
                status_style,
            ),
        ),
        kv(app, "Kind", w, tx.kind.clone()),
        kv(app, "From", w, fmt::short(&tx.from, hw)),
        kv(app, "To", w, fmt::short(&tx.to, hw)),
        kv(
            app,
            "Amount",
            w,
            format!("{} AERGO", fmt::aergo(&tx.amount, 18)),
        ),
        kv(app, "Nonce", w, fmt::thousands(tx.nonce)),
        kv(
            app,
            "Gas",
            w,
            format!(
                "limit {}, price {} aer",
                fmt::thousands(tx.gas_limit),
                fmt::group_digits(&tx.gas_price)
            ),
        ),
        kv(app, "Size", w, fmt::bytes(tx.size)),
        kv(app, "Payload", w, fmt::clip(&tx.payload, hw)),
        kv(app, "Signature", w, fmt::short(&tx.signature, hw)),
    ];
    if let Some(call) = fmt::call_of(&tx.kind, &tx.payload) {
        // Before the payload's hex: the function and its arguments, as `aergo tx` shows them.
        lines.insert(lines.len() - 2, kv(app, "Call", w, fmt::clip(&call, hw)));
    }
    match &d.receipt {
        Some(r) => {
            let ok = r.status == "ok";
            lines.push(Line::from(""));
            lines.push(kv(
                app,
                "Receipt",
                w,
                Span::styled(
                    format!(
                        "{}, gas {}, fee {} AERGO, {} events (Enter)",
                        r.status,
                        fmt::thousands(r.gas_used),
                        fmt::aergo(&r.fee, 18),
                        r.events.len()
                    ),
                    Style::new().fg(if ok { t.ok } else { t.err }),
                ),
            ));
            if let Some(e) = &r.error {
                lines.push(kv(
                    app,
                    "Error",
                    w,
                    Span::styled(e.clone(), Style::new().fg(t.err)),
                ));
            }
        }
        None => {
            lines.push(Line::from(""));
            lines.push(kv(
                app,
                "Receipt",
                w,
                Span::styled("none yet (pending)", t.label()),
            ));
        }
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(boxed(app, "Transaction  (Esc back)")),
        area,
    );
}

fn draw_receipt(f: &mut Frame, area: Rect, app: &App, hash: &str) {
    let t = &app.theme;
    let Some(r) = tx_for(app, hash).and_then(|d| d.receipt.as_ref()) else {
        f.render_widget(
            Paragraph::new("no receipt: the transaction is pending or was not found")
                .style(Style::new().fg(t.dim))
                .block(boxed(app, "Receipt  (Esc back)")),
            area,
        );
        return;
    };
    let w = 12;
    let hw = area.width.saturating_sub(to_cells(w).saturating_add(2)) as usize;
    let mut lines = vec![
        kv(app, "Tx", w, fmt::short(&r.tx_hash, hw)),
        kv(
            app,
            "Block",
            w,
            format!(
                "{} ({}) index {}",
                fmt::thousands(r.block_height),
                fmt::short(&r.block_hash, 17),
                r.index
            ),
        ),
        kv(
            app,
            "Status",
            w,
            Span::styled(
                r.status.clone(),
                Style::new().fg(if r.status == "ok" { t.ok } else { t.err }),
            ),
        ),
    ];
    if let Some(e) = &r.error {
        lines.push(kv(
            app,
            "Error",
            w,
            Span::styled(e.clone(), Style::new().fg(t.err)),
        ));
    }
    lines.push(kv(app, "Gas used", w, fmt::thousands(r.gas_used)));
    lines.push(kv(
        app,
        "Fee",
        w,
        format!("{} AERGO", fmt::aergo(&r.fee, 18)),
    ));
    lines.push(kv(
        app,
        "Result",
        w,
        if r.result.is_empty() {
            "—".to_string()
        } else {
            r.result.clone()
        },
    ));
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        format!("Events ({})", r.events.len()),
        t.title(),
    )));
    if r.events.is_empty() {
        lines.push(Line::from(Span::styled("  none", t.label())));
    }
    for e in &r.events {
        lines.push(Line::from(vec![
            Span::styled(format!("  {} ", e.name), t.header()),
            Span::raw(e.data.clone()),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(boxed(app, "Receipt  (Esc back)")),
        area,
    );
}

/// The Mempool screen.
/// The Mempool view's pre-confirmation line: latency over the last minute, the open
/// slot's sequence, promises a restart could not keep, producers convicted by evidence.
pub fn preconf_line(p: Option<&crate::model::PreconfView>) -> String {
    // ASCII only: the Linux console's font has no middle dot or dash. Fits 80 columns.
    let ms = |us: Option<u64>| match us {
        Some(u) => format!("{:.1}", u as f64 / 1000.0),
        None => "-".to_string(),
    };
    match p {
        None => "preconf: not reported by this node".to_string(),
        Some(p) if !p.enabled => "preconf: off on this node".to_string(),
        Some(p) => format!(
            "preconf p50 {}/p99 {} ms | {}/min | {} | broken {} | evidence {}",
            ms(p.p50_us),
            ms(p.p99_us),
            fmt::thousands(p.last_minute),
            p.pending_height
                .map(|h| format!(
                    "seq {} @{}",
                    fmt::thousands(p.sequence_length),
                    fmt::thousands(h)
                ))
                .unwrap_or_else(|| "seq 0, no slot".to_string()),
            p.broken,
            p.evidence
        ),
    }
}

/// The Pipeline box of the Mempool screen: each stage's items per second and mean time
/// per run since the previous reading, and what waits in front of it or runs in it now;
/// the title gives the last block's DTT width and the validation workers.
fn draw_pipeline(
    f: &mut Frame,
    area: Rect,
    app: &App,
    p: &crate::model::PipelineView,
    prev: Option<&crate::model::PipelineView>,
) {
    let t = &app.theme;
    let rows: Vec<Row> = p
        .rates(prev)
        .into_iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(r.name),
                Cell::from(
                    r.per_sec
                        .map(|x| {
                            if x >= 10.0 {
                                // Rates are far inside u64.
                                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                                fmt::thousands(x.round() as u64)
                            } else {
                                format!("{x:.1}")
                            }
                        })
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(fmt::thousands(r.waiting)),
                Cell::from(
                    r.latency_ms
                        .map(|x| format!("{x:.2}"))
                        .unwrap_or_else(|| "-".into()),
                ),
            ])
        })
        .collect();
    let title = format!(
        "Pipeline  DTT width {:.1}, {} worker{}",
        p.dtt_width_milli as f64 / 1000.0,
        p.exec_workers,
        if p.exec_workers == 1 { "" } else { "s" }
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Min(8),
        ],
    )
    .header(Row::new(["Stage", "Items/s", "Waiting", "ms/run"]).style(t.header()))
    .block(boxed(app, title));
    f.render_widget(table, area);
}

pub fn draw_mempool(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let m = &app.model;
    let area = banners(
        f,
        area,
        app,
        &[("node", &app.endpoints.rpc, m.mempool.down.as_ref())],
    );
    match app.detail() {
        Some(Detail::Tx(hash)) => return draw_tx(f, area, app, hash),
        Some(Detail::Receipt(hash)) => return draw_receipt(f, area, app, hash),
        _ => {}
    }
    let Some(mp) = m.mempool.get() else {
        let block = boxed(app, "Mempool");
        let inner = block.inner(area);
        f.render_widget(block, area);
        note(
            f,
            inner,
            app,
            if m.mempool.down.is_some() {
                "no mempool data: node unreachable"
            } else {
                "waiting for node…"
            },
        );
        return;
    };
    let pipe_h = match &mp.pipeline {
        // Borders, header and one line per stage.
        Some(p) => u16::try_from(p.stages.len() + 3).unwrap_or(10),
        None => 0,
    };
    let [g1, g2, pc, pipe, list] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(pipe_h),
        Constraint::Min(3),
    ])
    .areas(area);
    f.render_widget(Paragraph::new(preconf_line(mp.preconf.as_ref())), pc);
    if let Some(p) = &mp.pipeline {
        draw_pipeline(f, pipe, app, p, m.pipeline_prev.as_ref());
    }
    let ratio = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            (a as f64 / b as f64).clamp(0.0, 1.0)
        }
    };
    let r1 = ratio(mp.count, mp.max_txs);
    f.render_widget(
        Gauge::default()
            .ratio(r1)
            .gauge_style(t.level(r1 * 100.0))
            .label(format!(
                "txs {} / {}",
                fmt::thousands(mp.count),
                fmt::thousands(mp.max_txs)
            )),
        g1,
    );
    let r2 = ratio(mp.bytes, mp.max_bytes);
    f.render_widget(
        Gauge::default()
            .ratio(r2)
            .gauge_style(t.level(r2 * 100.0))
            .label(format!(
                "bytes {} / {}",
                fmt::bytes(mp.bytes),
                fmt::bytes(mp.max_bytes)
            )),
        g2,
    );
    let txs = app.visible_mempool();
    let title = if app.filter().is_empty() {
        format!(
            "Pending ({} shown of {})",
            mp.txs.len(),
            fmt::thousands(mp.count)
        )
    } else {
        format!("Pending ({} match '{}')", txs.len(), app.filter())
    };
    let block = boxed(app, title);
    if txs.is_empty() {
        let inner = block.inner(list);
        f.render_widget(block, list);
        note(
            f,
            inner,
            app,
            if mp.txs.is_empty() {
                "the mempool is empty"
            } else {
                "no transaction matches the filter"
            },
        );
        return;
    }
    let addr_w = if area.width >= 110 { 30 } else { 15 };
    let rows: Vec<Row> = txs
        .iter()
        .map(|tx| {
            Row::new(vec![
                Cell::from(fmt::short(&tx.hash, 17)),
                Cell::from(fmt::short(&tx.from, addr_w)),
                Cell::from(fmt::thousands(tx.nonce)),
                Cell::from(fmt::aergo(&tx.fee, 6)),
                Cell::from(fmt::duration(tx.age_ms / 1000)),
                Cell::from(fmt::group_digits(&tx.gas_price)),
            ])
        })
        .collect();
    let n = rows.len();
    let table = Table::new(
        rows,
        [
            Constraint::Length(17),
            Constraint::Length(to_cells(addr_w)),
            Constraint::Length(8),
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Min(6),
        ],
    )
    .header(
        Row::new(["Hash", "From", "Nonce", "Fee (AERGO)", "Age", "Gas price"]).style(t.header()),
    )
    .row_highlight_style(t.selected())
    .block(block);
    app.page.set(list.height.saturating_sub(4) as usize);
    let mut st = table_state(app.sel[Screen::Mempool.index()], n);
    f.render_stateful_widget(table, list, &mut st);
}
