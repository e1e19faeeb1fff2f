//! `-t`: a container on a terminal.
//!
//! The runtime makes the container's terminal itself (`terminal: true` in
//! the bundle: a pty inside the container, its controlling terminal, on
//! `/dev/console`) and, in the foreground, relays it to the terminal it
//! was started on. berth always gives it one: a pty pair of its own whose
//! slave is the runtime's stdio and controlling terminal, and whose master
//! berth relays to its own stdio (or, detached, to the container's log).
//! So `-t` works the same whether berth runs on a terminal, in a pipe or
//! under its monitor, and no console socket (file descriptors passed over
//! a unix socket) is needed.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `cmd` (a runtime's foreground `run` or `exec -t`) on a new pty;
/// what the container writes goes to `output`, and with `interactive` our
/// stdin goes to the container.
pub(super) fn run_on_pty(
    mut cmd: Command,
    interactive: bool,
    mut output: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<ExitStatus> {
    use std::os::unix::process::CommandExt;
    let (master, slave) = open_pty()?;
    set_window_size(master.as_fd());
    // Raw from the start: the runtime's relay would make it raw too, but
    // later, and what passed before would have its line ends doubled.
    make_raw(slave.as_raw_fd());
    let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
    cmd.stdin(stdio(&slave)?).stdout(stdio(&slave)?).stderr(stdio(&slave)?);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(cmd);
    // Our own copy of the slave stays open until the end: a master whose
    // slave is gone loses what was not read yet. The end is the runtime's
    // exit, once nothing more is there to read.
    let _slave = slave;
    let _raw = (interactive && io::stdin().is_terminal()).then(RawMode::enter).flatten();
    let mut from_container = File::from(master);
    if interactive {
        let mut to_container = from_container.try_clone()?;
        // Ends with our stdin, or when the container's side is gone.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = io::stdin().lock();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || to_container.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    // Our terminal resized: the pty follows, and the runtime (whose
    // controlling terminal it is) passes the new size into the container.
    RESIZED.store(false, Ordering::Relaxed);
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGWINCH, on_resize as *const () as libc::sighandler_t) };
    let mut buf = [0u8; 8192];
    loop {
        if RESIZED.swap(false, Ordering::Relaxed) {
            set_window_size(from_container.as_fd());
        }
        let mut fds =
            libc::pollfd { fd: from_container.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd, valid for the call.
        let ready = unsafe { libc::poll(&mut fds, 1, 50) };
        if ready > 0 && fds.revents & libc::POLLIN != 0 {
            match from_container.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => output(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        } else if ready >= 0 && child.try_wait()?.is_some() {
            break; // it ended, and nothing was left to read
        }
    }
    child.wait()
}

static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_resize(_: libc::c_int) {
    RESIZED.store(true, Ordering::Relaxed);
}

fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors; the other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: setting FD_CLOEXEC on a descriptor we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok((master, slave))
}

/// The size of the terminal berth runs on (24 rows of 80 columns without
/// one): what a container's terminal starts with (the bundle's
/// `consoleSize`, so the container never sees a 0x0 terminal).
pub(super) fn window_size() -> libc::winsize {
    for fd in [1, 0, 2] {
        let mut s = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ writes a winsize; it fails harmlessly off a terminal.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut s) } == 0 && s.ws_col > 0 {
            return s;
        }
    }
    libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 }
}

/// The pty takes the size of the terminal berth runs on.
fn set_window_size(master: BorrowedFd<'_>) {
    let size = window_size();
    // SAFETY: TIOCSWINSZ reads the winsize given.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

fn make_raw(fd: libc::c_int) {
    // SAFETY: tcgetattr fills the struct; failure leaves the pty as it is.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
}

/// Our terminal in raw mode while a container has it; restored on drop.
struct RawMode(libc::termios);

impl RawMode {
    fn enter() -> Option<RawMode> {
        // SAFETY: tcgetattr fills the struct; cfmakeraw edits our copy.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(RawMode(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes read in `enter`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}
