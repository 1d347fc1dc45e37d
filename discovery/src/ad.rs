//! The advertisement: what a worker says about itself, as typed values that are valid by
//! construction. Its TXT encoding is in [`crate::txt`].

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::txt::AdError;

/// The longest [`WorkerId`], in bytes.
pub const WORKER_ID_MAX: usize = 64;
/// The longest worker [`WorkerAd::name`], in bytes of UTF-8.
pub const NAME_MAX: usize = 63;
/// The longest [`Compiler`], [`Reason::Other`] or [`Arch::Other`] token, in bytes.
pub const TOKEN_MAX: usize = 32;

/// A worker's identity: the fingerprint of its long-term public key, as a string.
///
/// Opaque to discovery, which only checks that it is short printable ASCII (1 to
/// [`WORKER_ID_MAX`] bytes, `!` to `~`: no spaces, no control characters), so that it is
/// safe to log, to put in a file name and to derive the mDNS instance name from. mDNS is
/// not authenticated: anyone on the LAN can announce any id, and only the transport's
/// handshake proves it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(String);

impl WorkerId {
    /// Checks `id` and wraps it.
    pub fn new(id: impl Into<String>) -> Result<WorkerId, AdError> {
        let id = id.into();
        if id.is_empty() {
            return Err(AdError::invalid("id", "empty"));
        }
        if id.len() > WORKER_ID_MAX {
            return Err(AdError::TooLong {
                key: "id",
                len: id.len(),
                max: WORKER_ID_MAX,
            });
        }
        if !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AdError::invalid(
                "id",
                "not printable ASCII (only '!' to '~' are allowed)",
            ));
        }
        Ok(WorkerId(id))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The mDNS instance name of the worker with this id: `offload-` and the first 16 hex
    /// digits of the id's SHA-256. Unique per id (64 bits), the same on every start, and
    /// made of `[a-z0-9-]` only, so that no id can inject dots, escapes or odd bytes into
    /// DNS names, whatever a later key format looks like.
    pub fn instance_name(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        format!("offload-{}", hex::encode(&digest[..8]))
    }

    /// The mDNS host name its address records are published under: the instance name in
    /// `.local.`. Not the machine's own host name, which the OS's responder (Bonjour,
    /// Avahi) already owns: sharing it would start a name conflict.
    pub fn host_name(&self) -> String {
        format!("{}.local.", self.instance_name())
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerId({:?})", self.0)
    }
}

impl FromStr for WorkerId {
    type Err = AdError;
    fn from_str(s: &str) -> Result<WorkerId, AdError> {
        WorkerId::new(s)
    }
}

/// A short token (`[A-Za-z0-9._+-]`, 1 to [`TOKEN_MAX`] bytes): compilers, reasons and
/// architectures from newer peers. No comma, so lists of tokens need no escaping.
fn check_token(key: &'static str, s: &str) -> Result<(), AdError> {
    if s.is_empty() {
        return Err(AdError::invalid(key, "empty"));
    }
    if s.len() > TOKEN_MAX {
        return Err(AdError::TooLong {
            key,
            len: s.len(),
            max: TOKEN_MAX,
        });
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
    {
        return Err(AdError::invalid(
            key,
            "only ASCII letters, digits and '.', '_', '+', '-' are allowed",
        ));
    }
    Ok(())
}

/// Checks a worker's display name: 1 to [`NAME_MAX`] bytes of UTF-8, no control
/// characters (so it is safe in a terminal and a menu).
pub(crate) fn check_name(name: &str) -> Result<(), AdError> {
    if name.trim().is_empty() {
        return Err(AdError::invalid("name", "empty"));
    }
    if name.len() > NAME_MAX {
        return Err(AdError::TooLong {
            key: "name",
            len: name.len(),
            max: NAME_MAX,
        });
    }
    if name.chars().any(char::is_control) {
        return Err(AdError::invalid("name", "contains control characters"));
    }
    Ok(())
}

/// A CPU architecture, as Rust's `std::env::consts::ARCH` spells it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// `x86_64`.
    X86_64,
    /// `aarch64` (Apple silicon, arm64 Linux).
    Aarch64,
    /// Any other token, kept as sent: a newer or rarer worker is listed, and the host's
    /// scheduler (which matches architectures) simply gives it nothing it cannot run.
    Other(String),
}

impl Arch {
    /// The architecture this program was built for.
    pub fn current() -> Arch {
        Arch::parse(std::env::consts::ARCH).unwrap_or(Arch::Other("unknown".into()))
    }

    /// The token: `x86_64`, `aarch64` or the other one.
    pub fn as_str(&self) -> &str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Other(s) => s,
        }
    }

    /// Parses a token; `arm64` is taken as `aarch64` (Apple's name for it).
    pub fn parse(s: &str) -> Result<Arch, AdError> {
        Ok(match s {
            "x86_64" => Arch::X86_64,
            "aarch64" | "arm64" => Arch::Aarch64,
            other => {
                check_token("arch", other)?;
                Arch::Other(other.to_owned())
            }
        })
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a worker donates, or why it does not. An unknown token (from a newer peer) is
/// [`Reason::Other`], never an error.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `idle`: the owner is away or the machine has spare capacity (donating).
    Idle,
    /// `always`: a dedicated build machine, donating whatever happens.
    Always,
    /// `busy-owner`: the owner is using the machine.
    BusyOwner,
    /// `on-battery`: unplugged.
    OnBattery,
    /// `thermal`: too hot, throttling.
    Thermal,
    /// `paused-by-user`: the owner paused donating (menu-bar app, control API).
    PausedByUser,
    /// `schedule`: outside the hours the owner allows.
    Schedule,
    /// `starting`: not ready yet (e.g. the worker's container is still starting).
    Starting,
    /// Any other valid token, kept as sent.
    Other(String),
}

/// The table of [`Reason`] tokens (one place for both directions).
pub(crate) const REASONS: &[(&str, Reason)] = &[
    ("idle", Reason::Idle),
    ("always", Reason::Always),
    ("busy-owner", Reason::BusyOwner),
    ("on-battery", Reason::OnBattery),
    ("thermal", Reason::Thermal),
    ("paused-by-user", Reason::PausedByUser),
    ("schedule", Reason::Schedule),
    ("starting", Reason::Starting),
];

impl Reason {
    /// The token.
    pub fn as_str(&self) -> &str {
        if let Reason::Other(s) = self {
            return s;
        }
        REASONS
            .iter()
            .find(|(_, r)| r == self)
            .map_or("other", |(t, _)| t)
    }

    /// Parses a token: a known one, or [`Reason::Other`] for any other valid token. Only
    /// a value that is no token at all (empty, too long, odd bytes) is an error.
    pub fn parse(s: &str) -> Result<Reason, AdError> {
        if let Some((_, r)) = REASONS.iter().find(|(t, _)| *t == s) {
            return Ok(r.clone());
        }
        check_token("why", s)?;
        Ok(Reason::Other(s.to_owned()))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compiler a worker offers, as a short token: `gcc-12`, `clang-14`, `cc`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Compiler(String);

impl Compiler {
    /// Checks the token (`[A-Za-z0-9._+-]`, 1 to [`TOKEN_MAX`] bytes) and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Compiler, AdError> {
        let name = name.into();
        check_token("cc", &name)?;
        Ok(Compiler(name))
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Compiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Compiler {
    type Err = AdError;
    fn from_str(s: &str) -> Result<Compiler, AdError> {
        Compiler::new(s)
    }
}

/// What a worker announces: the TXT record's content plus the service port (which mDNS
/// carries in the SRV record).
///
/// Build one with [`WorkerAd::new`] and set the public fields; [`crate::txt::encode`]
/// checks the cross-field rules (`free_slots <= slots`, a valid name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerAd {
    /// The worker's wire protocol version (`offload_shared`'s `PROTOCOL_VERSION`), so a
    /// host can pass over workers it cannot talk to without connecting. Opaque here; not
    /// to be confused with the TXT schema's own version ([`crate::txt::TXT_VERSION`]).
    pub protocol: u32,
    /// The worker's identity.
    pub id: WorkerId,
    /// A name for people: the machine's, or what its owner chose.
    pub name: String,
    /// The worker's CPU architecture (what it compiles on; cross compilers are in
    /// [`WorkerAd::compilers`]).
    pub arch: Arch,
    /// How many jobs it runs at once (at least 1).
    pub slots: u16,
    /// How many of them are free now (at most `slots`).
    pub free_slots: u16,
    /// Whether it takes jobs now.
    pub donating: bool,
    /// Why it donates, or why not.
    pub reason: Reason,
    /// Compilers offered, most relevant first: the TXT record keeps as many as fit its
    /// budget, in this order.
    pub compilers: Vec<Compiler>,
    /// Set when decoding a record whose compiler list was cut to fit
    /// ([`crate::txt`]): the full list is to be asked over the connection. Ignored when
    /// encoding (the encoder decides).
    pub compilers_truncated: bool,
    /// The TCP port the worker listens on.
    pub port: u16,
    /// Changes at every start of the worker (milliseconds since 1970 by default), so a
    /// restarted worker is seen as changed even when its state is the same, and a host
    /// knows that connections to its predecessor are gone.
    pub epoch: u64,
}

impl WorkerAd {
    /// An ad for a worker that donates because it is idle, with all slots free, this
    /// machine's architecture and a fresh epoch.
    pub fn new(
        protocol: u32,
        id: WorkerId,
        name: impl Into<String>,
        slots: u16,
        port: u16,
    ) -> WorkerAd {
        WorkerAd {
            protocol,
            id,
            name: name.into(),
            arch: Arch::current(),
            slots,
            free_slots: slots,
            donating: true,
            reason: Reason::Idle,
            compilers: Vec::new(),
            compilers_truncated: false,
            port,
            epoch: fresh_epoch(),
        }
    }
}

/// Milliseconds since 1970 (1 if the clock is before it).
pub fn fresh_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids() {
        let cases: &[(&str, bool)] = &[
            ("SHA256:n5Yq0rZ0kqj2m5A1bQ+8x/3XqJ6rZB8p4tN2R0YdK0E", true),
            ("a", true),
            (&"f".repeat(WORKER_ID_MAX), true),
            (&"f".repeat(WORKER_ID_MAX + 1), false),
            ("", false),
            ("has space", false),
            ("tab\there", false),
            ("nul\0", false),
            ("dots.and\\backslash", true),
            ("naïve", false),
        ];
        for (id, ok) in cases {
            assert_eq!(WorkerId::new(*id).is_ok(), *ok, "{id:?}");
        }
    }

    #[test]
    fn instance_names_are_safe_unique_and_stable() {
        let a = WorkerId::new("key-a").unwrap();
        let b = WorkerId::new("key-b").unwrap();
        let evil = WorkerId::new("x.y\\z._offload._tcp.local.").unwrap();
        for id in [&a, &b, &evil] {
            let n = id.instance_name();
            assert_eq!(n.len(), "offload-".len() + 16);
            assert!(
                n.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            );
            assert_eq!(n, id.instance_name());
            assert_eq!(id.host_name(), format!("{n}.local."));
        }
        assert_ne!(a.instance_name(), b.instance_name());
    }

    #[test]
    fn reasons_round_trip_and_unknown_is_other() {
        for (t, r) in REASONS {
            assert_eq!(r.as_str(), *t);
            assert_eq!(Reason::parse(t).unwrap(), *r);
        }
        assert_eq!(
            Reason::parse("solar-eclipse").unwrap(),
            Reason::Other("solar-eclipse".into())
        );
        assert_eq!(Reason::Other("x-y".into()).as_str(), "x-y");
        assert!(Reason::parse("").is_err());
        assert!(Reason::parse("has space").is_err());
        assert!(Reason::parse(&"r".repeat(TOKEN_MAX + 1)).is_err());
    }

    #[test]
    fn arches() {
        assert_eq!(Arch::parse("x86_64").unwrap(), Arch::X86_64);
        assert_eq!(Arch::parse("aarch64").unwrap(), Arch::Aarch64);
        assert_eq!(Arch::parse("arm64").unwrap(), Arch::Aarch64);
        assert_eq!(
            Arch::parse("riscv64").unwrap(),
            Arch::Other("riscv64".into())
        );
        assert!(Arch::parse("").is_err());
        assert!(Arch::parse("x86 64").is_err());
        assert!(!matches!(Arch::current(), Arch::Other(_)));
    }

    #[test]
    fn names() {
        assert!(check_name("Jörg's MacBook Pro").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("   ").is_err());
        assert!(check_name("bell\u{7}").is_err());
        assert!(check_name("line\nbreak").is_err());
        assert!(check_name(&"n".repeat(NAME_MAX)).is_ok());
        assert!(check_name(&"n".repeat(NAME_MAX + 1)).is_err());
        // 21 three-byte characters = 63 bytes: the limit is in bytes, not characters.
        assert!(check_name(&"€".repeat(21)).is_ok());
        assert!(check_name(&"€".repeat(22)).is_err());
    }

    #[test]
    fn compilers() {
        for ok in [
            "gcc-12",
            "clang-14",
            "g++-12",
            "cc",
            "x86_64-linux-gnu-gcc-12",
        ] {
            assert!(Compiler::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "gcc,clang",
            "gcc 12",
            "gcc=12",
            &"c".repeat(TOKEN_MAX + 1),
        ] {
            assert!(Compiler::new(bad).is_err(), "{bad}");
        }
    }
}
