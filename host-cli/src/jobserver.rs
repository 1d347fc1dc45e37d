//! A GNU make jobserver whose size follows offload's live slot count.
//!
//! The protocol (make's manual, "POSIX Jobserver"): a pipe holds one byte per job that may
//! start beyond the one every make runs without a token; a make that starts a job reads a
//! byte, and writes it back when the job ends. `MAKEFLAGS=" -j --jobserver-auth=R,W"`
//! with the pipe's two descriptors inherited makes the build's make (and every sub-make)
//! a client; make 4.3 knows only this pipe form, 4.4 reads it too.
//!
//! Growing writes more bytes. Shrinking must take bytes out, but they are in the pipe
//! only while jobs are not using them: a thread reads them back as they are returned, as
//! many as are owed, and writes back one it read after the debt was cancelled by a grow.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};

/// The token byte (GNU make writes back whatever it read; `+` is what make itself uses).
const TOKEN: u8 = b'+';

/// A jobserver. Dropping it stops the reader thread once the pipe is closed by the
/// build's processes and this side.
#[derive(Debug)]
pub struct Jobserver {
    read: Arc<OwnedFd>,
    write: Arc<OwnedFd>,
    state: Arc<(Mutex<Tokens>, Condvar)>,
}

#[derive(Debug, Default)]
struct Tokens {
    /// Jobs the build may run at once (the token count plus make's own one).
    target: usize,
    /// Tokens put into the pipe and not yet taken back.
    issued: usize,
    /// Tokens to take back as they come.
    owed: usize,
    /// The jobserver is being dropped.
    closed: bool,
}

/// Why the jobserver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JobserverError {
    /// The pipe or its thread.
    #[error("cannot make the jobserver's pipe: {0}")]
    Io(#[from] std::io::Error),
}

impl Jobserver {
    /// A jobserver for `jobs` jobs at once (at least 1).
    pub fn new(jobs: usize) -> Result<Jobserver, JobserverError> {
        // Not close-on-exec: the build command inherits both ends. Blocking: make reads
        // tokens with blocking reads (4.3 guards them with a signal) and so does the
        // taking-back thread.
        let (read, write) = nix::unistd::pipe().map_err(std::io::Error::from)?;
        let js = Jobserver {
            read: Arc::new(read),
            write: Arc::new(write),
            state: Arc::new((Mutex::new(Tokens::default()), Condvar::new())),
        };
        js.spawn_taker()?;
        js.set_jobs(jobs)?;
        Ok(js)
    }

    /// `MAKEFLAGS` for the build: this jobserver, and nothing else.
    pub fn makeflags(&self) -> String {
        format!(
            " -j --jobserver-auth={},{}",
            self.read.as_raw_fd(),
            self.write.as_raw_fd()
        )
    }

    /// The two descriptors the build must inherit.
    pub fn fds(&self) -> [i32; 2] {
        [self.read.as_raw_fd(), self.write.as_raw_fd()]
    }

    /// Jobs the build may run at once now.
    pub fn jobs(&self) -> usize {
        self.lock().target
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets the build run `jobs` jobs at once (at least 1: make's own token): more tokens
    /// at once, or fewer as the build returns them.
    pub fn set_jobs(&self, jobs: usize) -> Result<(), JobserverError> {
        let want = jobs.max(1) - 1;
        let mut t = self.lock();
        t.target = jobs.max(1);
        // Tokens that will exist once the debt is paid.
        let will = t.issued - t.owed;
        if want > will {
            let mut add = want - will;
            // Cancel debt first: those tokens are out there already.
            let cancel = add.min(t.owed);
            t.owed -= cancel;
            add -= cancel;
            if add > 0 {
                let bytes = vec![TOKEN; add];
                (&*self.write).write_all_fd(&bytes)?;
                t.issued += add;
            }
        } else if want < will {
            t.owed += will - want;
            self.state.1.notify_all();
        }
        Ok(())
    }

    /// The thread that takes owed tokens back as the build returns them.
    fn spawn_taker(&self) -> Result<(), JobserverError> {
        let (read, write, state) = (self.read.clone(), self.write.clone(), self.state.clone());
        std::thread::Builder::new()
            .name("jobserver".into())
            .spawn(move || {
                loop {
                    {
                        let (m, cv) = &*state;
                        let mut t = m.lock().unwrap_or_else(|p| p.into_inner());
                        while t.owed == 0 && !t.closed {
                            t = cv.wait(t).unwrap_or_else(|p| p.into_inner());
                        }
                        if t.closed {
                            return;
                        }
                    }
                    let mut b = [0u8; 1];
                    match (&*read).read_fd(&mut b) {
                        Ok(1) => {}
                        // Closed or failing: nothing more to take back.
                        _ => return,
                    }
                    let mut t = state.0.lock().unwrap_or_else(|p| p.into_inner());
                    if t.owed > 0 {
                        t.owed -= 1;
                        t.issued -= 1;
                    } else {
                        // A grow cancelled the debt while this read waited: put it back.
                        drop(t);
                        if (&*write).write_all_fd(&b).is_err() {
                            return;
                        }
                    }
                }
            })?;
        Ok(())
    }
}

impl Drop for Jobserver {
    fn drop(&mut self) {
        let mut t = self.lock();
        t.closed = true;
        self.state.1.notify_all();
        drop(t);
        // A taker blocked in read wakes on this byte and sees `closed` next round; it
        // holds its own references to the descriptors, so they close when it ends.
        let _ = (&*self.write).write_all_fd(&[TOKEN]);
    }
}

/// Reads and writes on a borrowed descriptor, without taking ownership.
trait FdIo {
    fn read_fd(&self, buf: &mut [u8]) -> std::io::Result<usize>;
    fn write_all_fd(&self, buf: &[u8]) -> std::io::Result<()>;
}

impl FdIo for &OwnedFd {
    fn read_fd(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut f = std::mem::ManuallyDrop::new(file_of(self));
            match f.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    fn write_all_fd(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut f = std::mem::ManuallyDrop::new(file_of(self));
        f.write_all(buf)
    }
}

/// A `File` over `fd` that must never be dropped (the descriptor stays `fd`'s).
fn file_of(fd: &OwnedFd) -> std::fs::File {
    use std::os::fd::FromRawFd;
    // SAFETY: the descriptor is open for as long as `fd` lives, and the returned File is
    // always wrapped in ManuallyDrop by the callers, so it is never closed through it.
    unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Bytes in the pipe now.
    fn in_pipe(js: &Jobserver) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD on a pipe we own.
        unsafe { libc::ioctl(js.read.as_raw_fd(), libc::FIONREAD, &mut n) };
        n as usize
    }

    fn eventually(what: &str, f: impl Fn() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{what}");
    }

    #[test]
    fn tokens_follow_the_job_count() {
        let js = Jobserver::new(4).expect("a jobserver");
        assert_eq!(in_pipe(&js), 3, "one job runs without a token");
        assert!(js.makeflags().starts_with(" -j --jobserver-auth="));
        js.set_jobs(6).unwrap();
        assert_eq!(in_pipe(&js), 5);
        // Shrinking takes free tokens back at once...
        js.set_jobs(2).unwrap();
        eventually("free tokens taken back", || in_pipe(&js) == 1);
        assert_eq!(js.jobs(), 2);
    }

    #[test]
    fn tokens_in_use_are_taken_back_when_returned_and_a_grow_cancels_the_debt() {
        let js = Jobserver::new(3).expect("a jobserver");
        // The build takes both tokens (two jobs beyond make's own).
        let mut b = [0u8; 2];
        (&*js.read).read_fd(&mut b).unwrap();
        assert_eq!(in_pipe(&js), 0);
        js.set_jobs(2).unwrap();
        // One job ends: its token is taken back, not left for the build.
        (&*js.write).write_all_fd(&b[..1]).unwrap();
        eventually("the returned token taken back", || js.lock().owed == 0);
        assert_eq!(in_pipe(&js), 0);
        // Growing again while owed nothing: one new token.
        js.set_jobs(4).unwrap();
        assert_eq!(
            in_pipe(&js),
            2,
            "the one still out plus two for four jobs: 2 free"
        );
        // The other job ends: its token goes back to the build.
        (&*js.write).write_all_fd(&b[1..]).unwrap();
        assert_eq!(in_pipe(&js), 3);
        assert_eq!(js.lock().issued, 3);
    }
}
