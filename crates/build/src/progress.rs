//! What a build prints, in BuildKit's plain form: a numbered line per
//! step, its output prefixed with the step number and the seconds since
//! it started, then `CACHED` or `DONE 0.3s`.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

pub struct Progress {
    out: Mutex<Box<dyn Write + Send>>,
    quiet: bool,
    next: Mutex<usize>,
}

/// One numbered step of the output.
pub struct Step<'p> {
    progress: &'p Progress,
    number: usize,
    started: Instant,
}

impl Progress {
    /// `quiet`: print nothing (`-q`; the caller prints the image ID).
    pub fn new(out: Box<dyn Write + Send>, quiet: bool) -> Progress {
        Progress { out: Mutex::new(out), quiet, next: Mutex::new(1) }
    }

    pub fn step(&self, title: &str) -> Step<'_> {
        let number = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let n = *next;
            *next += 1;
            n
        };
        self.line(&format!("#{number} {title}"));
        Step { progress: self, number, started: Instant::now() }
    }

    pub fn note(&self, text: &str) {
        self.line(text);
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

impl Step<'_> {
    /// A line of the step's own output (a RUN's stdout and stderr).
    pub fn output(&self, line: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        self.progress.line(&format!("#{} {secs:.3} {line}", self.number));
    }

    pub fn info(&self, text: &str) {
        self.progress.line(&format!("#{} {text}", self.number));
    }

    pub fn cached(self) {
        self.progress.line(&format!("#{} CACHED", self.number));
    }

    pub fn done(self) {
        let secs = self.started.elapsed().as_secs_f64();
        self.progress.line(&format!("#{} DONE {secs:.1}s", self.number));
    }

    pub fn failed(self, message: &str) {
        self.progress.line(&format!("#{} ERROR: {message}", self.number));
    }
}
