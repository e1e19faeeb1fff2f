//! What a build prints, as BuildKit does. Plain (a pipe, a file,
//! `--progress=plain`): a numbered line per step, its output prefixed with
//! the step number and the seconds since it started, then `CACHED` or
//! `DONE 0.3s`. Live (a terminal, `--progress=auto`): one line per step
//! with its time, redrawn ten times a second, the running steps' last lines
//! of output under them, and the whole list left in place at the end.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many of a running step's output lines the live view shows.
const TAIL: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Live,
    Quiet,
}

pub struct Progress {
    mode: Mode,
    shared: Arc<Mutex<Shared>>,
    redraw: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    out: Box<dyn Write + Send>,
    started: Instant,
    notes: Vec<String>,
    steps: Vec<StepView>,
    /// Lines the last live frame took, to move back over.
    drawn: usize,
    stop: bool,
}

struct StepView {
    title: String,
    started: Instant,
    ended: Option<Duration>,
    state: &'static str,
    tail: VecDeque<String>,
}

/// One numbered step of the output.
pub struct Step<'p> {
    progress: &'p Progress,
    number: usize,
    started: Instant,
}

impl Progress {
    pub fn new(out: Box<dyn Write + Send>, mode: Mode) -> Progress {
        let shared = Arc::new(Mutex::new(Shared {
            out,
            started: Instant::now(),
            notes: Vec::new(),
            steps: Vec::new(),
            drawn: 0,
            stop: false,
        }));
        let redraw = (mode == Mode::Live).then(|| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    if s.stop {
                        break;
                    }
                    s.draw(false);
                }
            })
        });
        Progress { mode, shared, redraw }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn step(&self, title: &str) -> Step<'_> {
        let mut s = self.lock();
        s.steps.push(StepView {
            title: title.to_owned(),
            started: Instant::now(),
            ended: None,
            state: "",
            tail: VecDeque::new(),
        });
        let number = s.steps.len();
        if self.mode == Mode::Plain {
            s.line(&format!("#{number} {title}"));
        }
        drop(s);
        Step { progress: self, number, started: Instant::now() }
    }

    pub fn note(&self, text: &str) {
        let mut s = self.lock();
        match self.mode {
            Mode::Plain => s.line(text),
            Mode::Live => s.notes.push(text.to_owned()),
            Mode::Quiet => {}
        }
    }

    /// Leaves the last live frame on the terminal.
    pub fn finish(&mut self) {
        if let Some(handle) = self.redraw.take() {
            self.lock().stop = true;
            let _ = handle.join();
            self.lock().draw(true);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Shared {
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// One live frame: the header, then each step with its time, and the
    /// last output lines of the running ones (all of them when `last`).
    fn draw(&mut self, last: bool) {
        let done = self.steps.iter().filter(|s| s.ended.is_some()).count();
        let mut frame = vec![format!(
            "[+] Building {:.1}s ({done}/{})",
            self.started.elapsed().as_secs_f64(),
            self.steps.len()
        )];
        frame.extend(self.notes.iter().cloned());
        for step in &self.steps {
            let secs = step.ended.unwrap_or_else(|| step.started.elapsed()).as_secs_f64();
            let state =
                if step.state.is_empty() { String::new() } else { format!("{} ", step.state) };
            frame.push(format!(" => {state}{} {secs:.1}s", step.title));
            if step.ended.is_none() || step.state == "ERROR" {
                frame.extend(step.tail.iter().map(|l| format!(" => => # {l}")));
            }
        }
        // A line wider than the terminal would wrap and throw the count of
        // lines to move back over off: each is cut to the width.
        let width = terminal_width();
        for l in &mut frame {
            if l.chars().count() > width {
                *l = l.chars().take(width.saturating_sub(1)).collect();
            }
        }
        let mut text = String::new();
        if self.drawn > 0 {
            // Back to the frame's first line, and clear down from there.
            text.push_str(&format!("\x1b[{}A\r\x1b[J", self.drawn));
        }
        for l in &frame {
            text.push_str(l);
            text.push('\n');
        }
        self.drawn = if last { 0 } else { frame.len() };
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

/// The width of the terminal on stderr (80 if it cannot be told).
fn terminal_width() -> usize {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the winsize it is given.
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 { usize::from(size.ws_col) } else { 80 }
}

impl Step<'_> {
    fn update(&self, f: impl FnOnce(&mut StepView)) {
        let mut s = self.progress.lock();
        if let Some(view) = s.steps.get_mut(self.number - 1) {
            f(view);
        }
    }

    /// A line of the step's own output (a RUN's stdout and stderr).
    pub fn output(&self, line: &str) {
        match self.progress.mode {
            Mode::Plain => {
                let secs = self.started.elapsed().as_secs_f64();
                self.progress.lock().line(&format!("#{} {secs:.3} {line}", self.number));
            }
            Mode::Live => self.update(|v| {
                v.tail.push_back(line.to_owned());
                if v.tail.len() > TAIL {
                    v.tail.pop_front();
                }
            }),
            Mode::Quiet => {}
        }
    }

    pub fn info(&self, text: &str) {
        match self.progress.mode {
            Mode::Plain => self.progress.lock().line(&format!("#{} {text}", self.number)),
            Mode::Live => self.update(|v| v.tail.push_back(text.to_owned())),
            Mode::Quiet => {}
        }
    }

    fn end(self, state: &'static str, plain: String) {
        let took = self.started.elapsed();
        match self.progress.mode {
            Mode::Plain => self.progress.lock().line(&plain),
            Mode::Live => self.update(|v| {
                v.ended = Some(took);
                v.state = state;
            }),
            Mode::Quiet => {}
        }
    }

    pub fn cached(self) {
        let plain = format!("#{} CACHED", self.number);
        self.end("CACHED", plain);
    }

    pub fn done(self) {
        let plain = format!("#{} DONE {:.1}s", self.number, self.started.elapsed().as_secs_f64());
        self.end("", plain);
    }

    pub fn failed(self, message: &str) {
        let plain = format!("#{} ERROR: {message}", self.number);
        self.update(|v| v.tail.push_back(format!("ERROR: {message}")));
        self.end("ERROR", plain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(out: &Shared) -> String {
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn plain_numbers_steps_and_their_output() {
        let out = Shared::default();
        let p = Progress::new(Box::new(out.clone()), Mode::Plain);
        let a = p.step("[1/2] FROM scratch");
        a.done();
        let b = p.step("[2/2] RUN make");
        b.output("compiling");
        b.cached();
        let t = text(&out);
        assert!(
            t.starts_with("#1 [1/2] FROM scratch\n#1 DONE 0.0s\n#2 [2/2] RUN make\n#2 0.0"),
            "{t}"
        );
        assert!(t.ends_with(" compiling\n#2 CACHED\n"), "{t}");
    }

    #[test]
    fn live_leaves_one_frame_with_every_step() {
        let out = Shared::default();
        let mut p = Progress::new(Box::new(out.clone()), Mode::Live);
        let a = p.step("[1/2] COPY . /app");
        a.cached();
        let b = p.step("[2/2] RUN make");
        b.output("compiling");
        std::thread::sleep(Duration::from_millis(250));
        b.done();
        p.finish();
        let t = text(&out);
        let last = t.rsplit("\x1b[J").next().unwrap();
        assert!(last.starts_with("[+] Building "), "{last:?}");
        assert!(last.contains("(2/2)"), "{last:?}");
        assert!(last.contains(" => CACHED [1/2] COPY . /app 0.0s\n"), "{last:?}");
        assert!(last.contains(" => [2/2] RUN make 0."), "{last:?}");
        assert!(t.contains(" => => # compiling"), "a running step's output is shown: {t:?}");
        assert!(!last.contains("compiling"), "a finished step's output is folded away");
    }

    #[test]
    fn quiet_prints_nothing() {
        let out = Shared::default();
        let p = Progress::new(Box::new(out.clone()), Mode::Quiet);
        p.step("x").done();
        p.note("note");
        drop(p);
        assert!(text(&out).is_empty());
    }
}
