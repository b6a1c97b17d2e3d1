//! The run's progress bar (indicatif on stderr): samples done, elapsed, and the running metric the
//! notebook prints. Hidden when stderr is not a terminal, where only the notebook-style lines print.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    /// A non-zero rank of a sharded run: no bar and no lines (rank 0 speaks for the group).
    silent: bool,
}

impl Progress {
    pub fn new(total: usize, done: usize, what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(what.to_string());
        bar.set_position(done as u64);
        Self { bar, silent: false }
    }

    /// Shows nothing at all.
    pub fn silent() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            silent: true,
        }
    }

    pub fn message(&mut self, msg: &str) {
        self.bar.set_message(msg.to_string());
    }

    pub fn advance(&mut self, msg: &str) {
        self.bar.set_message(msg.to_string());
        self.bar.inc(1);
    }

    /// A line above the bar (printed plainly when the bar is hidden).
    pub fn println(&self, line: &str) {
        if self.silent {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}
