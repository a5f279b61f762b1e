//! Progress bars for large transfers, on stderr and only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Transfers smaller than this finish before a bar would help.
const MIN_BYTES: u64 = 8 * 1024 * 1024;

/// A bar for a transfer of `len` bytes, or `None` when stderr is not a terminal (scripts, CI,
/// `2>file`) or the transfer is small or of unknown size.
pub fn bar(len: Option<u64>, verb: &str) -> Option<ProgressBar> {
    let len = len.filter(|&n| n >= MIN_BYTES)?;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let style = ProgressStyle::with_template(&format!(
        "{{bar:40}} {{binary_bytes}}/{{binary_total_bytes}} {verb} ({{binary_bytes_per_sec}}, {{eta}} left)"
    ))
    .ok()?;
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(style);
    Some(bar)
}
