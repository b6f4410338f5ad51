//! The Storage screen: AergoFS volumes from its `/status` JSON (whatever fields are there)
//! and the free space of its disk, with an alert below 10%.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Paragraph, Row, Table};
use ratatui::Frame;

use super::{banners, boxed, kv, note, to_cells};
use crate::app::App;
use crate::fmt;

fn opt_bytes(v: Option<u64>) -> String {
    v.map(fmt::bytes).unwrap_or_else(|| "—".into())
}

fn opt_num(v: Option<u64>) -> String {
    v.map(fmt::thousands).unwrap_or_else(|| "—".into())
}

/// The Storage screen.
pub fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let m = &app.model;
    let area = banners(
        f,
        area,
        app,
        &[("AergoFS", &app.endpoints.fs, m.storage.down.as_ref())],
    );
    let Some(st) = m.storage.get() else {
        let block = boxed(app, "AergoFS");
        let inner = block.inner(area);
        f.render_widget(block, area);
        note(
            f,
            inner,
            app,
            if m.storage.down.is_some() && app.host_mode {
                "host mode: no AergoFS answers here (start one with `aergofs serve --dir DIR`)"
            } else if m.storage.down.is_some() {
                "no storage data: AergoFS unreachable"
            } else {
                "waiting for AergoFS…"
            },
        );
        return;
    };
    let other_rows = to_cells(st.other.len().min(6));
    let [sum_r, vol_r] =
        Layout::vertical([Constraint::Length(4 + other_rows), Constraint::Min(3)]).areas(area);
    let w = 15;
    let mut lines = vec![kv(
        app,
        "I/O backend",
        w,
        st.io_backend.clone().unwrap_or_else(|| "—".into()),
    )];
    let disk = match (st.disk_total, st.disk_free, st.free_pct()) {
        (Some(tot), Some(free), Some(p)) => Span::styled(
            format!(
                "{} free of {} ({}){}",
                fmt::bytes(free),
                fmt::bytes(tot),
                fmt::pct(p),
                if p < 10.0 { "  LOW SPACE" } else { "" }
            ),
            if p < 10.0 {
                Style::new().fg(t.err)
            } else {
                Style::new().fg(t.ok)
            },
        ),
        _ => Span::styled("not reported", t.label()),
    };
    lines.push(kv(app, "Disk", w, disk));
    for (k, v) in st.other.iter().take(6) {
        let (label, value) = pretty(k, v);
        lines.push(kv(app, &fmt::clip(&label, w - 1), w, fmt::clip(&value, 60)));
    }
    f.render_widget(Paragraph::new(lines).block(boxed(app, "AergoFS")), sum_r);

    let block = boxed(app, format!("Volumes ({})", st.volumes.len()));
    if st.volumes.is_empty() {
        let inner = block.inner(vol_r);
        f.render_widget(block, vol_r);
        note(f, inner, app, "no volumes reported");
        return;
    }
    let rows: Vec<Row> = st
        .volumes
        .iter()
        .map(|v| {
            let g = v.garbage_ratio.map(|g| g * 100.0);
            let mut state = match v.read_only {
                Some(true) => v
                    .read_only_reason
                    .as_deref()
                    .map(|r| format!("read-only: {r}"))
                    .unwrap_or_else(|| "read-only".into()),
                Some(false) => "writable".into(),
                None => "—".into(),
            };
            if v.compacting == Some(true) {
                state.push_str(", compacting");
            }
            let style = if v.read_only == Some(true) {
                Style::new().fg(t.warn)
            } else {
                Style::new()
            };
            Row::new(vec![
                fmt::clip(&v.id, 6),
                opt_bytes(v.size),
                opt_num(v.live),
                opt_bytes(v.live_bytes),
                opt_num(v.deleted),
                g.map(fmt::pct).unwrap_or_else(|| "—".into()),
                state,
            ])
            .style(style)
        })
        .collect();
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(5),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Length(7),
                Constraint::Min(8),
            ],
        )
        .header(
            Row::new([
                "id", "size", "live", "live B", "deleted", "garbage", "state",
            ])
            .style(t.header()),
        )
        .block(block),
        vol_r,
    );
}

/// A status field for people: `live_bytes` → `Live bytes`, sizes as bytes, counts with
/// thousands separators; anything else as sent.
pub fn pretty(key: &str, value: &str) -> (String, String) {
    let words = key.replace('_', " ");
    let mut c = words.chars();
    let label = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    };
    let value = match value.parse::<u64>() {
        Ok(n) if key.ends_with("bytes") => fmt::bytes(n),
        Ok(n) => fmt::thousands(n),
        Err(_) => value.to_string(),
    };
    (label, value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_fields_read_as_words_and_figures() {
        assert_eq!(
            super::pretty("live_needles", "1234567"),
            ("Live needles".to_string(), "1,234,567".to_string())
        );
        let (l, v) = super::pretty("live_bytes", "1048576");
        assert_eq!(l, "Live bytes");
        assert_ne!(v, "1048576");
        assert_eq!(super::pretty("durability", "fsync").1, "fsync");
    }
}
