//! Progress of `eqaug run`: an indicatif bar on a terminal; on anything else (a Slurm log, CI,
//! a pipe) plain lines that a log keeps, one per epoch at most and at least `interval` apart,
//! so that a five-hour paper-scale run is not silent:
//!
//! ```text
//! [e2] run-003 augmented epoch 12/50 loss 0.693147 | 47/612 epochs, elapsed 1m05s, eta 13m02s
//! ```
//!
//! Runs are named by their folder (`run-003`, numbered from 0) here, in the summary lines and
//! in errors alike.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Environment variable: seconds between plain progress lines (default 10; 0 = every epoch).
pub const INTERVAL_ENV: &str = "EQAUG_PROGRESS_SECONDS";

/// Default seconds between plain progress lines.
pub const DEFAULT_INTERVAL: u64 = 10;

struct Plain {
    out: Box<dyn Write + Send>,
    last: Option<Instant>,
}

/// Progress of one experiment's runs in this process (shared by the runs trained at once).
pub struct Progress {
    prefix: String,
    total: u64,
    done: Mutex<u64>,
    start: Instant,
    interval: Duration,
    bar: Option<ProgressBar>,
    plain: Option<Mutex<Plain>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("prefix", &self.prefix)
            .field("total", &self.total)
            .field("terminal", &self.bar.is_some())
            .finish()
    }
}

/// `1h02m03s`, `4m05s`, `7s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn interval_from_env() -> Duration {
    let secs = std::env::var(INTERVAL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(DEFAULT_INTERVAL as f64);
    Duration::from_secs_f64(secs)
}

impl Progress {
    /// Progress of `total` epoch steps (runs x strategies x (epochs + 1)) of experiment
    /// `name`: a bar when stderr is a terminal, plain lines on stderr otherwise (interval
    /// from [`INTERVAL_ENV`]).
    pub fn new(name: &str, total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} epochs (eta {eta}) {msg}",
            ) {
                b.set_style(style);
            }
            b.set_prefix(name.to_string());
            Self::build(name, total, Some(b), None, interval_from_env())
        } else {
            Self::plain(
                name,
                total,
                Box::new(std::io::stderr()),
                interval_from_env(),
            )
        }
    }

    /// Plain lines to `out`, at least `interval` apart (zero: every epoch).
    pub fn plain(name: &str, total: u64, out: Box<dyn Write + Send>, interval: Duration) -> Self {
        Self::build(
            name,
            total,
            None,
            Some(Mutex::new(Plain { out, last: None })),
            interval,
        )
    }

    fn build(
        name: &str,
        total: u64,
        bar: Option<ProgressBar>,
        plain: Option<Mutex<Plain>>,
        interval: Duration,
    ) -> Self {
        Progress {
            prefix: name.into(),
            total,
            done: Mutex::new(0),
            start: Instant::now(),
            interval,
            bar,
            plain,
        }
    }

    /// Whether this shows a terminal bar.
    pub fn is_terminal(&self) -> bool {
        self.bar.is_some()
    }

    /// One epoch step done: run folder `run` (e.g. `run-003`), `strategy` at `epoch` of
    /// `epochs`, with its training loss.
    pub fn epoch(&self, run: &str, strategy: &str, epoch: usize, epochs: usize, loss: f64) {
        self.epoch_weighted(run, strategy, epoch, epochs, loss, 1)
    }

    /// As [`Progress::epoch`], for an epoch that costs `weight` units of the total (an
    /// augmented epoch of L passes costs L nominal ones), so that the ETA weighs epochs by
    /// their cost.
    pub fn epoch_weighted(
        &self,
        run: &str,
        strategy: &str,
        epoch: usize,
        epochs: usize,
        loss: f64,
        weight: u64,
    ) {
        let done = {
            let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
            *d += weight;
            *d
        };
        if let Some(b) = &self.bar {
            b.inc(weight);
            b.set_message(format!("{run} {strategy}"));
        }
        let Some(plain) = &self.plain else { return };
        let mut p = plain.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let last_of_all = done >= self.total;
        if !last_of_all
            && p.last
                .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            return;
        }
        p.last = Some(now);
        let elapsed = now.duration_since(self.start);
        let eta = if done > 0 && done < self.total {
            let per = elapsed.as_secs_f64() / done as f64;
            format!(
                ", eta {}",
                duration(Duration::from_secs_f64(per * (self.total - done) as f64))
            )
        } else {
            String::new()
        };
        let line = format!(
            "[{}] {run} {strategy} epoch {epoch}/{epochs} loss {loss:.6} | {}% done, elapsed \
             {}{eta}",
            self.prefix,
            (100 * done).checked_div(self.total).unwrap_or(100).min(100),
            duration(elapsed)
        );
        let _ = writeln!(p.out, "{line}");
        let _ = p.out.flush();
    }

    /// A line that must reach the log (a run's summary, a skipped run): above the bar on a
    /// terminal, as is otherwise.
    pub fn println(&self, line: &str) {
        if let Some(b) = &self.bar {
            b.println(line);
        }
        if let Some(plain) = &self.plain {
            let mut p = plain.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(p.out, "{line}");
            let _ = p.out.flush();
        }
    }

    /// Removes the bar (nothing for plain lines).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    #[test]
    fn one_line_per_epoch_with_interval_zero() {
        let sink = Sink::default();
        let p = Progress::plain("e1", 4, Box::new(sink.clone()), Duration::ZERO);
        assert!(!p.is_terminal());
        for e in 0..=1 {
            p.epoch("run-000", "nominal", e, 1, 0.5);
        }
        p.println("[e1] run-000 done");
        for e in 0..=1 {
            p.epoch("run-001", "nominal", e, 1, 0.25);
        }
        let lines = sink.lines();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "[e1] run-000 nominal epoch 0/1 loss 0.500000 | 25% done, elapsed 0s, eta "
            ),
            "{}",
            lines[0]
        );
        assert_eq!(lines[2], "[e1] run-000 done");
        assert!(lines[4].starts_with("[e1] run-001 nominal epoch 1/1 loss 0.250000 | 100% done"));
        assert!(!lines[4].contains("eta"), "no eta at the end: {}", lines[4]);
    }

    #[test]
    fn a_long_interval_keeps_the_first_and_the_last_line() {
        let sink = Sink::default();
        let p = Progress::plain("e2", 100, Box::new(sink.clone()), Duration::from_secs(3600));
        for e in 0..100 {
            p.epoch("run-002", "augmented", e, 99, 1.0);
        }
        let lines = sink.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("epoch 0/99") && lines[1].contains("epoch 99/99"));
    }

    /// An augmented epoch of 25 passes weighs 25 nominal ones: after the nominal strategy of a
    /// run, the work done is 2 of 54 units, not half.
    #[test]
    fn epochs_weigh_by_their_cost() {
        let sink = Sink::default();
        let p = Progress::plain("e1", 2 + 2 * 25 + 2, Box::new(sink.clone()), Duration::ZERO);
        for e in 0..=1 {
            p.epoch_weighted("run-000", "nominal", e, 1, 0.5, 1);
        }
        let lines = sink.lines();
        assert!(lines[1].contains("| 3% done"), "{lines:?}");
        for e in 0..=1 {
            p.epoch_weighted("run-000", "augmented", e, 1, 0.5, 25);
        }
        assert!(sink.lines()[3].contains("| 96% done"), "{:?}", sink.lines());
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(7)), "7s");
        assert_eq!(duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(duration(Duration::from_secs(3723)), "1h02m03s");
    }
}
