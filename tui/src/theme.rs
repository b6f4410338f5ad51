//! Colour themes: 16 ANSI colours for the Linux console (TERM=linux), 256 colours, or
//! truecolor, chosen from the environment or forced with `--theme`. The 16-colour theme also
//! avoids glyphs the console font lacks (braille, fine bar eighths, round bullets).

use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols;

/// Which palette.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThemeKind {
    /// 16 ANSI colours, console-safe glyphs.
    Ansi16,
    /// xterm 256 colours.
    Indexed256,
    /// 24-bit colour.
    TrueColor,
}

impl ThemeKind {
    /// Parses `auto|16|256|truecolor`; `auto` (or anything unknown) inspects TERM/COLORTERM.
    pub fn from_flag(flag: &str, term: Option<&str>, colorterm: Option<&str>) -> Self {
        match flag {
            "16" => ThemeKind::Ansi16,
            "256" => ThemeKind::Indexed256,
            "truecolor" | "24bit" => ThemeKind::TrueColor,
            _ => Self::detect(term, colorterm),
        }
    }

    /// Picks a palette from TERM and COLORTERM.
    pub fn detect(term: Option<&str>, colorterm: Option<&str>) -> Self {
        let term = term.unwrap_or("");
        if term == "linux" || term == "vt100" || term == "vt220" || term.is_empty() {
            return ThemeKind::Ansi16;
        }
        if matches!(colorterm, Some("truecolor") | Some("24bit")) {
            return ThemeKind::TrueColor;
        }
        if term.contains("256color") {
            return ThemeKind::Indexed256;
        }
        ThemeKind::Ansi16
    }
}

/// Styles and glyphs used by every screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    /// The palette.
    pub kind: ThemeKind,
    /// Titles and the current tab.
    pub accent: Color,
    /// Healthy values.
    pub ok: Color,
    /// Warnings.
    pub warn: Color,
    /// Errors and outages.
    pub err: Color,
    /// Secondary text.
    pub dim: Color,
    /// Background of the selected row.
    pub sel_bg: Color,
    /// Graph colour.
    pub graph: Color,
}

impl Theme {
    /// The theme for a palette.
    pub fn new(kind: ThemeKind) -> Self {
        match kind {
            ThemeKind::Ansi16 => Theme {
                kind,
                accent: Color::Cyan,
                ok: Color::Green,
                warn: Color::Yellow,
                err: Color::Red,
                dim: Color::DarkGray,
                sel_bg: Color::Blue,
                graph: Color::Cyan,
            },
            ThemeKind::Indexed256 => Theme {
                kind,
                accent: Color::Indexed(81),
                ok: Color::Indexed(114),
                warn: Color::Indexed(221),
                err: Color::Indexed(203),
                dim: Color::Indexed(245),
                sel_bg: Color::Indexed(238),
                graph: Color::Indexed(111),
            },
            ThemeKind::TrueColor => Theme {
                kind,
                accent: Color::Rgb(0x6c, 0xc4, 0xf0),
                ok: Color::Rgb(0x8c, 0xd0, 0x7a),
                warn: Color::Rgb(0xf0, 0xc6, 0x5a),
                err: Color::Rgb(0xf0, 0x6c, 0x6c),
                dim: Color::Rgb(0x8a, 0x8f, 0x98),
                sel_bg: Color::Rgb(0x33, 0x3a, 0x48),
                graph: Color::Rgb(0x7a, 0xa6, 0xf0),
            },
        }
    }

    /// Whether to keep to glyphs every console font has.
    pub fn console_safe(&self) -> bool {
        self.kind == ThemeKind::Ansi16
    }

    /// Bar glyphs for sparklines.
    pub fn bars(&self) -> symbols::bar::Set {
        if self.console_safe() {
            symbols::bar::THREE_LEVELS
        } else {
            symbols::bar::NINE_LEVELS
        }
    }

    /// Marker for "up / healthy".
    pub fn up_mark(&self) -> &'static str {
        if self.console_safe() {
            "+"
        } else {
            "●"
        }
    }

    /// Marker for "down / failing".
    pub fn down_mark(&self) -> &'static str {
        if self.console_safe() {
            "x"
        } else {
            "✖"
        }
    }

    /// Style of titles.
    pub fn title(&self) -> Style {
        Style::new().fg(self.accent).add_modifier(Modifier::BOLD)
    }

    /// Style of labels.
    pub fn label(&self) -> Style {
        Style::new().fg(self.dim)
    }

    /// Style of the selected row.
    pub fn selected(&self) -> Style {
        Style::new().bg(self.sel_bg).add_modifier(Modifier::BOLD)
    }

    /// Style of table headers.
    pub fn header(&self) -> Style {
        Style::new().fg(self.accent).add_modifier(Modifier::BOLD)
    }

    /// Style for a percentage: ok, warn above 75, err above 90.
    pub fn level(&self, pct: f64) -> Style {
        let c = if pct >= 90.0 {
            self.err
        } else if pct >= 75.0 {
            self.warn
        } else {
            self.ok
        };
        Style::new().fg(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(
            ThemeKind::detect(Some("linux"), Some("truecolor")),
            ThemeKind::Ansi16
        );
        assert_eq!(
            ThemeKind::detect(Some("xterm-256color"), None),
            ThemeKind::Indexed256
        );
        assert_eq!(
            ThemeKind::detect(Some("xterm-256color"), Some("truecolor")),
            ThemeKind::TrueColor
        );
        assert_eq!(ThemeKind::detect(None, None), ThemeKind::Ansi16);
        assert_eq!(
            ThemeKind::from_flag("256", Some("linux"), None),
            ThemeKind::Indexed256
        );
        assert!(Theme::new(ThemeKind::Ansi16).console_safe());
        assert_eq!(Theme::new(ThemeKind::Ansi16).bars().one_eighth, " ");
    }
}
