//! Values from outside (a rejected record's key, a token's error, an event
//! id) as they may appear in a log line: cut to a bounded length on a
//! character boundary, control characters replaced, so a hostile input can
//! neither flood the logs nor forge lines in them.

use std::fmt;

/// Longest piece of outside input a log line carries.
pub const MAX_LOGGED: usize = 120;

/// `value`, made safe to log (see the module docs); displays as the cut text
/// followed by `…(N bytes)` when it was longer.
pub struct LogSafe<'a>(pub &'a str);

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut end = s.len().min(MAX_LOGGED);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        for c in s[..end].chars() {
            if c.is_control() {
                f.write_str("\u{fffd}")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if end < s.len() {
            write!(f, "…({} bytes)", s.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_hostile_values_are_cut_and_defused() {
        assert_eq!(LogSafe("hh-1").to_string(), "hh-1");
        let long = "가".repeat(100); // 300 bytes
        let shown = LogSafe(&long).to_string();
        assert!(shown.ends_with("…(300 bytes)"), "{shown}");
        assert!(shown.len() < 140);
        assert_eq!(
            LogSafe("a\nlevel=ERROR forged").to_string(),
            "a\u{fffd}level=ERROR forged"
        );
    }
}
