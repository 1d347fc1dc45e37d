//! The owner's input idle time and screen lock from systemd-logind over the system bus:
//! the `IdleHint`, `IdleSinceHintMonotonic` and `LockedHint` of seat0's active session.
//! No system bus (a container, a headless server), no seat or no active session: both
//! inputs are unknown, which counts as idle. The bus is tried again every minute.

use std::time::{Duration, Instant};

use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

const LOGIN1: &str = "org.freedesktop.login1";
const RETRY: Duration = Duration::from_secs(60);

/// A logind client.
#[derive(Default)]
pub struct Logind {
    conn: Option<Connection>,
    next_try: Option<Instant>,
    /// The last failure logged, so that a lasting one is logged once.
    last_error: Option<String>,
}

impl std::fmt::Debug for Logind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logind")
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

/// What logind says of the active session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionState {
    /// Time since the last input.
    pub input_idle: Option<Duration>,
    /// Whether the screen is locked.
    pub locked: Option<bool>,
}

impl Logind {
    /// A client that connects on first use.
    pub fn new() -> Logind {
        Logind::default()
    }

    /// The active session's state now.
    pub fn read(&mut self) -> SessionState {
        if self.conn.is_none() && self.next_try.is_none_or(|t| Instant::now() >= t) {
            match Connection::system() {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.note(format!("no system bus ({e}): input and lock unknown"));
                    self.next_try = Some(Instant::now() + RETRY);
                }
            }
        }
        let Some(conn) = &self.conn else {
            return SessionState::default();
        };
        match query(conn) {
            Ok(s) => {
                if self.last_error.take().is_some() {
                    tracing::debug!("logind answers again");
                }
                s
            }
            Err(e) => {
                if matches!(e, zbus::Error::InputOutput(_)) {
                    // The bus went away: connect again later.
                    self.conn = None;
                    self.next_try = Some(Instant::now() + RETRY);
                }
                self.note(format!("logind: {e}: input and lock unknown"));
                SessionState::default()
            }
        }
    }

    fn note(&mut self, msg: String) {
        if self.last_error.as_ref() != Some(&msg) {
            tracing::debug!("{msg}");
            self.last_error = Some(msg);
        }
    }
}

fn property(conn: &Connection, path: &str, iface: &str, name: &str) -> zbus::Result<OwnedValue> {
    let reply = conn.call_method(
        Some(LOGIN1),
        path,
        Some("org.freedesktop.DBus.Properties"),
        "Get",
        &(iface, name),
    )?;
    reply.body().deserialize::<OwnedValue>()
}

fn query(conn: &Connection) -> zbus::Result<SessionState> {
    let active = property(
        conn,
        "/org/freedesktop/login1/seat/seat0",
        "org.freedesktop.login1.Seat",
        "ActiveSession",
    )?;
    let (_, session): (String, OwnedObjectPath) = active.try_into()?;
    if session.as_str() == "/" {
        // No one is logged in at the seat.
        return Ok(SessionState::default());
    }
    let iface = "org.freedesktop.login1.Session";
    let get = |name| property(conn, session.as_str(), iface, name);
    let idle: bool = get("IdleHint")?.try_into()?;
    let since_us: u64 = get("IdleSinceHintMonotonic")?.try_into()?;
    let locked: bool = get("LockedHint")?.try_into()?;
    Ok(SessionState {
        input_idle: Some(input_idle(idle, since_us, monotonic_us())),
        locked: Some(locked),
    })
}

/// Time since the last input from the hints: none while the session is not idle (the
/// desktop marks it idle after its own delay, so this is a lower bound).
pub fn input_idle(idle_hint: bool, since_us: u64, now_us: u64) -> Duration {
    if idle_hint {
        Duration::from_micros(now_us.saturating_sub(since_us))
    } else {
        Duration::ZERO
    }
}

fn monotonic_us() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => {
            let d = Duration::from(t);
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
        }
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_from_the_hints() {
        assert_eq!(input_idle(false, 5, 1_000_000_000), Duration::ZERO);
        assert_eq!(
            input_idle(true, 400_000_000, 1_000_000_000),
            Duration::from_secs(600)
        );
        assert_eq!(input_idle(true, 9, 5), Duration::ZERO);
    }

    /// Here (a container, a headless machine) there is no system bus, or no seat: both
    /// inputs are unknown, and asking again does not block.
    #[test]
    fn no_bus_or_seat_is_unknown() {
        let mut l = Logind::new();
        let first = l.read();
        if first == SessionState::default() {
            let at = Instant::now();
            assert_eq!(l.read(), SessionState::default());
            assert!(at.elapsed() < Duration::from_secs(1));
        }
    }
}
