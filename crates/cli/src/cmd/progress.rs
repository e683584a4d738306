//! Per-blob progress bars on stderr (bytes, rate, ETA), drawn only on a
//! terminal and never with `-q`.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use cargohold_image_core::{Descriptor, Digest, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one command.
pub struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    /// Bars if stderr is a terminal and not `quiet`; else nothing is drawn.
    pub fn new(quiet: bool) -> Self {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Bars { multi, bars: Mutex::new(HashMap::new()) }
    }

    fn short(desc: &Descriptor) -> String {
        let hex = desc.digest.hex();
        hex[..hex.len().min(12)].to_owned()
    }

    fn bar(&self, desc: &Descriptor) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let mut bars = self.bars.lock().expect("not poisoned");
        let bar = bars.entry(desc.digest.clone()).or_insert_with(|| {
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> ");
            let bar = multi.add(ProgressBar::new(desc.size).with_style(style).with_prefix(Self::short(desc)));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Some(bar.clone())
    }
}

impl Progress for Bars {
    fn blob_started(&self, desc: &Descriptor) {
        let _ = self.bar(desc);
    }

    fn blob_skipped(&self, desc: &Descriptor) {
        if let Some(m) = &self.multi {
            let _ = m.println(format!("{} already there", Self::short(desc)));
        }
    }

    fn blob_progress(&self, desc: &Descriptor, done: u64) {
        if let Some(b) = self.bar(desc) {
            b.set_position(done);
        }
    }

    fn blob_done(&self, desc: &Descriptor) {
        if let Some(b) = self.bar(desc) {
            b.finish();
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}
