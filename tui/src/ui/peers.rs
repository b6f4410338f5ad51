//! The Peers screen: the connected peers (`peers`) above the producers panel
//! (`consensus_info`): engine, head and LIB, round and slot, fork and sync counters, and on
//! DPoS chains the schedule (score and standing of every BP, this node and the next producer
//! marked) and the upcoming slots. Solo chains get one line saying who produces. Each peer's
//! row names the node it proved to be (its node address, `BP` when that is an elected
//! producer), `—` until it has proven one.
//!
//! Missing or malformed fields arrive as `None` from the source and are drawn as `?`.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::{banners, boxed, kv, note, to_cells};
use crate::app::App;
use crate::fmt;
use crate::model::{BpView, ConsensusView, DposView, PeerRow};

/// Marker of this node's address in the schedule and upcoming lists.
const ME: &str = "*";
/// Marker of the producer of the current slot.
const NEXT: &str = ">";

fn num(v: Option<u64>) -> String {
    v.map(fmt::thousands).unwrap_or_else(|| "?".into())
}

fn or_q(s: &str) -> &str {
    if s.is_empty() {
        "?"
    } else {
        s
    }
}

/// Marks a peer whose node is an elected producer in the Node column.
const BP_MARK: &str = " BP";

/// The Node column: the node address the peer proved (shortened), ` BP` when that address
/// is an elected producer per `consensus_info`, `—` while the peer has proven none.
fn node_cell(node: Option<&str>, consensus: Option<&ConsensusView>) -> String {
    match node {
        Some(a) if !a.is_empty() => {
            let bp = consensus.is_some_and(|c| c.is_producer(a));
            format!("{}{}", fmt::short(a, 11), if bp { BP_MARK } else { "" })
        }
        _ => "—".into(),
    }
}

/// A multiaddr without its trailing `/p2p/<id>` when that is `id` (shown in its own column).
fn without_id<'a>(addr: &'a str, id: &str) -> &'a str {
    match addr.rsplit_once("/p2p/") {
        Some((head, tail)) if !id.is_empty() && tail == id && !head.is_empty() => head,
        _ => addr,
    }
}

/// The Peers screen.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let m = &app.model;
    let area = banners(
        f,
        area,
        app,
        &[("node", &app.endpoints.rpc, m.chain.down.as_ref())],
    );
    let rows = to_cells(m.peers.get().map(|p| p.len()).unwrap_or(0));
    // Borders, header and one line per peer (one line for the empty state), at most half.
    let want = if rows == 0 { 3 } else { rows.saturating_add(3) };
    let h = want.min(area.height / 2).max(3.min(area.height));
    let [peers_r, prod_r] =
        Layout::vertical([Constraint::Length(h), Constraint::Min(0)]).areas(area);
    draw_peers(f, peers_r, app);
    draw_producers(f, prod_r, app);
}

fn draw_peers(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let m = &app.model;
    let feed = &m.peers;
    let Some(peers) = feed.get() else {
        let block = boxed(app, "Peers");
        let inner = block.inner(area);
        f.render_widget(block, area);
        let (msg, style) = match (&feed.down, m.chain.down.is_some()) {
            (Some(_), true) => ("no peer data: node unreachable".to_string(), t.label()),
            (Some(d), false) => (format!("peers: {}", d.error), Style::new().fg(t.err)),
            (None, _) => ("waiting for node…".to_string(), t.label()),
        };
        f.render_widget(Paragraph::new(Span::styled(msg, style)), inner);
        return;
    };
    let mut title = format!("Peers ({})", peers.len());
    if feed.down.is_some() {
        title.push_str(" stale");
    }
    let block = boxed(app, title);
    if peers.is_empty() {
        let inner = block.inner(area);
        f.render_widget(block, area);
        let solo = m
            .consensus
            .get()
            .and_then(|c| c.engine.as_deref())
            .is_some_and(|e| e == "solo");
        let msg = if solo {
            "no peers: a solo/dev node runs alone"
        } else {
            "no peers connected"
        };
        f.render_widget(Paragraph::new(Span::styled(msg, t.label())), inner);
        return;
    }
    let mut sorted: Vec<&PeerRow> = peers.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let head = m.chain.get().map(|c| c.height);
    let consensus = m.consensus.get();
    let id_w = 14;
    let cells: Vec<[String; 4]> = sorted
        .iter()
        .map(|p| {
            [
                node_cell(p.node.as_deref(), consensus),
                or_q(&p.direction).to_string(),
                fmt::thousands(p.best_height),
                p.latency_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "—".into()),
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
    let (node_w, dir_w, height_w, rtt_w) = (col(0, 4), col(1, 9), col(2, 6), col(3, 5));
    let fixed = id_w + node_w + dir_w + height_w + rtt_w + 6;
    let addr_w = (area.width as usize).saturating_sub(2 + fixed).max(8);
    let rows: Vec<Row> = sorted
        .iter()
        .zip(cells)
        .map(|(p, [node, dir, height, rtt])| {
            let behind = head.is_some_and(|h| p.best_height.saturating_add(10) < h);
            let height = if behind {
                Cell::from(Span::styled(height, Style::new().fg(t.warn)))
            } else {
                Cell::from(height)
            };
            let node = if node.ends_with(BP_MARK) {
                Cell::from(Span::styled(node, Style::new().fg(t.ok)))
            } else if p.node.is_none() {
                Cell::from(Span::styled(node, t.label()))
            } else {
                Cell::from(node)
            };
            Row::new([
                Cell::from(fmt::short(or_q(&p.id), id_w)),
                node,
                Cell::from(fmt::clip(or_q(without_id(&p.address, &p.id)), addr_w)),
                Cell::from(dir),
                height,
                Cell::from(rtt),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(to_cells(id_w)),
        Constraint::Length(to_cells(node_w)),
        Constraint::Min(8),
        Constraint::Length(to_cells(dir_w)),
        Constraint::Length(to_cells(height_w)),
        Constraint::Length(to_cells(rtt_w)),
    ];
    let header =
        Row::new(["Peer", "Node", "Address", "Direction", "Height", "RTT"]).style(t.header());
    f.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

fn draw_producers(f: &mut Frame, area: Rect, app: &App) {
    let m = &app.model;
    let feed = &m.consensus;
    let Some(c) = feed.get() else {
        let block = boxed(app, "Producers");
        let inner = block.inner(area);
        f.render_widget(block, area);
        let msg = match (&feed.down, m.chain.down.is_some()) {
            (Some(_), true) => "no consensus data: node unreachable".to_string(),
            (Some(d), false) => format!("consensus_info: {}", d.error),
            (None, _) => "waiting for node…".to_string(),
        };
        note(f, inner, app, &msg);
        return;
    };
    let me = m.node.get().map(|n| n.node_address.as_str()).unwrap_or("");
    let stale = if feed.down.is_some() { " stale" } else { "" };
    let Some(d) = &c.dpos else {
        let title = format!(
            "Producers ({}){stale}",
            or_q(c.engine.as_deref().unwrap_or(""))
        );
        let mut lines = vec![solo_line(app, c)];
        lines.extend(consensus_lines(app, c, area.width));
        f.render_widget(Paragraph::new(lines).block(boxed(app, title)), area);
        return;
    };
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    f.render_widget(
        Paragraph::new(consensus_lines(app, c, left.width))
            .block(boxed(app, format!("Consensus (dpos){stale}"))),
        left,
    );
    let next = d.upcoming.first().map(|u| u.producer.as_str());
    let bps: Vec<&BpView> = d.active.iter().chain(&d.probation).collect();
    let sched_h = to_cells(bps.len().max(1)).saturating_add(3);
    let [sched_r, up_r] =
        Layout::vertical([Constraint::Length(sched_h), Constraint::Min(0)]).areas(right);
    draw_schedule(f, sched_r, app, &bps, me, next);
    draw_upcoming(f, up_r, app, d, me);
}

/// What a chain without a DPoS schedule says about who produces.
fn solo_line<'a>(app: &App, c: &ConsensusView) -> Line<'a> {
    let t = &app.theme;
    let producer = app.model.node.get().map(|n| n.producer);
    match (c.engine.as_deref(), producer) {
        (Some("dpos"), _) => Line::from(Span::styled(
            "dpos: the node reported no schedule",
            Style::new().fg(t.warn),
        )),
        (_, Some(true)) => Line::from(Span::styled(
            "solo: this node produces every block alone",
            Style::new().fg(t.ok),
        )),
        (_, Some(false)) => Line::from(Span::raw(
            "solo: one producer (not this node) makes every block",
        )),
        (_, None) => Line::from(Span::raw("solo: one producer makes every block")),
    }
}

/// Engine, head and LIB, round and slot, counters and this node's network identity.
fn consensus_lines<'a>(app: &App, c: &ConsensusView, width: u16) -> Vec<Line<'a>> {
    let t = &app.theme;
    let w = 10;
    let inner = (width as usize).saturating_sub(2 + w);
    let mut out = Vec::new();
    let engine = or_q(c.engine.as_deref().unwrap_or("")).to_string();
    // Slots, not "a block every": a repository's solo producer and a PoA chain that skips
    // empty slots make no block while nothing is pending.
    let interval = match c.block_interval_ms {
        Some(ms) => format!(", {} ms slots", fmt::thousands(ms)),
        None => String::new(),
    };
    out.push(kv(
        app,
        "Engine",
        w,
        fmt::clip(&(engine + &interval), inner),
    ));
    out.push(kv(app, "Head", w, num(c.height)));
    let d = c.dpos.as_ref();
    // LIB more than two rounds behind the head: finality is stuck (partition, BPs down).
    let lag_limit = d
        .and_then(|d| d.round_slots)
        .map(|r| r.saturating_mul(2))
        .unwrap_or(30)
        .max(2);
    let lib = match (c.lib_height, c.lib_lag()) {
        (Some(h), Some(lag)) => {
            let style = if lag > lag_limit {
                Style::new().fg(t.warn)
            } else {
                Style::new()
            };
            // Worded as the Overview's Finalized line: "(the head)" or "(N behind)".
            let text = if lag == 0 {
                format!("{} (the head)", fmt::thousands(h))
            } else {
                format!("{} ({} behind)", fmt::thousands(h), fmt::thousands(lag))
            };
            Span::styled(text, style)
        }
        (h, _) => Span::raw(num(h)),
    };
    out.push(kv(app, "LIB", w, lib));
    if let Some(d) = d {
        let round = fmt::clip(&round_text(d), inner);
        out.push(kv(
            app,
            "Round",
            w,
            if slot_round(d).is_some() {
                Span::styled(round, Style::new().fg(t.warn))
            } else {
                Span::raw(round)
            },
        ));
        out.push(kv(app, "Slot", w, fmt::clip(&slot_text(d), inner)));
        let mut bps = format!("{} of {} active", d.active.len(), num(d.bp_count));
        if !d.probation.is_empty() {
            bps.push_str(&format!(", {} probation", d.probation.len()));
        }
        out.push(kv(app, "BPs", w, fmt::clip(&bps, inner)));
        let producer = app.model.node.get().map(|n| n.producer);
        let me = match (d.me_scheduled, producer) {
            (Some(true), _) => Span::styled("in the schedule", Style::new().fg(t.ok)),
            (Some(false), Some(true)) => {
                Span::styled("BP, out of the schedule", Style::new().fg(t.warn))
            }
            (Some(false), _) => Span::raw("follower, not a BP"),
            (None, _) => Span::raw("?"),
        };
        out.push(kv(app, "This node", w, me));
    }
    out.push(kv(
        app,
        "Reorgs",
        w,
        fmt::clip(
            &format!("{} (side blocks {})", num(c.reorgs), num(c.side_blocks)),
            inner,
        ),
    ));
    let rejected = num(c.rejected_blocks);
    out.push(kv(
        app,
        "Rejected",
        w,
        if c.rejected_blocks.unwrap_or(0) > 0 {
            Span::styled(rejected, Style::new().fg(t.warn))
        } else {
            Span::raw(rejected)
        },
    ));
    out.push(kv(
        app,
        "Received",
        w,
        fmt::clip(
            &format!(
                "synced {}, gossip {}",
                num(c.synced_blocks),
                num(c.gossip_blocks)
            ),
            inner,
        ),
    ));
    if let Some(id) = &c.peer_id {
        out.push(kv(app, "Peer id", w, fmt::short(id, inner)));
    }
    if let Some(first) = c.listen_addrs.first() {
        let first = without_id(first, c.peer_id.as_deref().unwrap_or(""));
        let more = c.listen_addrs.len() - 1;
        let text = if more > 0 {
            format!("{first} (+{more})")
        } else {
            first.to_string()
        };
        out.push(kv(app, "Listen", w, fmt::clip(&text, inner)));
    }
    out
}

/// The round the current slot belongs to, when it is not the schedule's round (the schedule
/// moves on with the first block of a round, so it trails the clock at round starts and while
/// producers are missing).
fn slot_round(d: &DposView) -> Option<u64> {
    match (d.slot, d.round_slots) {
        (Some(s), Some(n)) if n > 0 && Some(s / n) != d.round => Some(s / n),
        _ => None,
    }
}

/// `R`, or `R (clock in R')` while the schedule trails the clock.
fn round_text(d: &DposView) -> String {
    match slot_round(d) {
        Some(r) => format!("{} (clock in {})", num(d.round), fmt::thousands(r)),
        None => num(d.round),
    }
}

/// `S (k/N)`: k is the slot's place in its round.
fn slot_text(d: &DposView) -> String {
    match (d.slot, d.round_slots) {
        (Some(s), Some(n)) if n > 0 => format!("{} ({}/{n})", fmt::thousands(s), s % n + 1),
        (s, _) => num(s),
    }
}

fn markers(addr: &str, me: &str, next: Option<&str>) -> String {
    let is_next = next.is_some_and(|n| !n.is_empty() && n == addr);
    let is_me = !me.is_empty() && me == addr;
    format!(
        "{}{}",
        if is_next { NEXT } else { " " },
        if is_me { ME } else { " " }
    )
}

fn draw_schedule(
    f: &mut Frame,
    area: Rect,
    app: &App,
    bps: &[&BpView],
    me: &str,
    next: Option<&str>,
) {
    let t = &app.theme;
    let block = boxed(app, format!("Schedule: {ME} this node, {NEXT} next"));
    if bps.is_empty() {
        let inner = block.inner(area);
        f.render_widget(block, area);
        f.render_widget(
            Paragraph::new(Span::styled("no producers reported", t.label())),
            inner,
        );
        return;
    }
    let (score_w, standing_w, missed_w) = (6usize, 9usize, 6usize);
    let addr_w = (area.width as usize)
        .saturating_sub(2 + 2 + score_w + standing_w + missed_w + 4)
        .max(5);
    let rows: Vec<Row> = bps
        .iter()
        .map(|b| {
            let standing = b.standing.as_deref().unwrap_or("?");
            let sc = match standing {
                "active" => t.ok,
                "probation" => t.warn,
                "excluded" => t.err,
                _ => t.dim,
            };
            let row = Row::new([
                Cell::from(markers(&b.address, me, next)),
                Cell::from(fmt::short(or_q(&b.address), addr_w)),
                Cell::from(
                    Line::from(b.score.map(|s| s.to_string()).unwrap_or_else(|| "?".into()))
                        .right_aligned(),
                ),
                Cell::from(Span::styled(
                    fmt::clip(standing, standing_w),
                    Style::new().fg(sc),
                )),
                // Missed slots this round: a BP with no node behind it stands out.
                Cell::from(
                    Line::from(match b.missed_slots {
                        Some(n) if n > 0 => Span::styled(n.to_string(), Style::new().fg(t.err)),
                        Some(n) => Span::raw(n.to_string()),
                        None => Span::raw("-"),
                    })
                    .right_aligned(),
                ),
            ]);
            if !me.is_empty() && b.address == me {
                row.style(Style::new().add_modifier(Modifier::BOLD))
            } else {
                row
            }
        })
        .collect();
    let widths = [
        Constraint::Length(2),
        Constraint::Min(5),
        Constraint::Length(to_cells(score_w)),
        Constraint::Length(to_cells(standing_w)),
        Constraint::Length(to_cells(missed_w)),
    ];
    let header = Row::new([
        Cell::from(""),
        Cell::from("Producer"),
        Cell::from(Line::from("Score").right_aligned()),
        Cell::from("Standing"),
        Cell::from(Line::from("Missed").right_aligned()),
    ])
    .style(t.header());
    f.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

fn draw_upcoming(f: &mut Frame, area: Rect, app: &App, d: &DposView, me: &str) {
    let t = &app.theme;
    let block = boxed(app, "Upcoming slots");
    if d.upcoming.is_empty() {
        let inner = block.inner(area);
        f.render_widget(block, area);
        let msg = match slot_round(d) {
            Some(r) => format!(
                "none yet: the schedule of round {} comes with its first block",
                fmt::thousands(r)
            ),
            None => "none left in this round".to_string(),
        };
        f.render_widget(
            Paragraph::new(Span::styled(msg, t.label()))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return;
    }
    let slots: Vec<String> = d.upcoming.iter().map(|u| num(u.slot)).collect();
    let slot_w = slots.iter().map(|s| s.chars().count()).max().unwrap_or(1);
    let addr_w = (area.width as usize)
        .saturating_sub(2 + 2 + slot_w + 2)
        .max(5);
    let next = d.upcoming.first().map(|u| u.producer.as_str());
    let rows: Vec<Row> = d
        .upcoming
        .iter()
        .zip(slots)
        .enumerate()
        .map(|(i, (u, slot))| {
            // Only the first slot is "next"; later slots of the same BP are not.
            let mark = markers(&u.producer, me, if i == 0 { next } else { None });
            let row = Row::new([
                Cell::from(mark),
                Cell::from(Line::from(slot).right_aligned()),
                Cell::from(fmt::short(or_q(&u.producer), addr_w)),
            ]);
            if !me.is_empty() && u.producer == me {
                row.style(Style::new().add_modifier(Modifier::BOLD))
            } else {
                row
            }
        })
        .collect();
    let widths = [
        Constraint::Length(2),
        Constraint::Length(to_cells(slot_w)),
        Constraint::Min(5),
    ];
    f.render_widget(Table::new(rows, widths).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_suffix_is_left_out_of_addresses() {
        let a = "/ip4/127.0.0.1/tcp/17866/p2p/12D3KooWEp";
        assert_eq!(without_id(a, "12D3KooWEp"), "/ip4/127.0.0.1/tcp/17866");
        assert_eq!(without_id(a, "12D3KooWother"), a, "another id is kept");
        assert_eq!(without_id(a, ""), a);
        assert_eq!(without_id("/p2p/x", "x"), "/p2p/x");
        assert_eq!(without_id("", "x"), "");
    }

    #[test]
    fn round_place_and_markers() {
        let d = DposView {
            slot: Some(90),
            round: Some(9),
            round_slots: Some(10),
            ..Default::default()
        };
        assert_eq!(
            (round_text(&d), slot_text(&d)),
            ("9".into(), "90 (1/10)".into())
        );
        let d0 = DposView::default();
        assert_eq!((round_text(&d0), slot_text(&d0)), ("?".into(), "?".into()));
        let behind = DposView {
            slot: Some(290),
            ..d
        };
        assert_eq!(slot_round(&behind), Some(29));
        assert_eq!(round_text(&behind), "9 (clock in 29)");
        assert_eq!(markers("A1", "A1", Some("A1")), ">*");
        assert_eq!(markers("A1", "A2", Some("A1")), "> ");
        assert_eq!(
            markers("", "", Some("")),
            "  ",
            "unknown addresses mark nothing"
        );
    }
}
