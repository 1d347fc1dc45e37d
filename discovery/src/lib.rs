//! Zero-config discovery of offload workers on the LAN, over mDNS / DNS-SD
//! (RFC 6762, RFC 6763) with the pure-Rust [`mdns-sd`](https://docs.rs/mdns-sd) crate.
//!
//! - A worker (`offload worker`, or the macOS menu-bar app for the worker in its
//!   container) runs an [`Advertiser`]: it announces a [`WorkerAd`] as the service
//!   [`SERVICE_TYPE`], re-announces it when its state changes ([`Advertiser::update`]:
//!   free slots, donating or not) and says goodbye when it stops.
//! - A host runs a [`Browser`]: the live set of workers, id → [`Worker`] (addresses,
//!   port, ad, when seen), read with [`Browser::workers`] and followed with
//!   [`Browser::subscribe`] ([`BrowseEvent`]s on a tokio channel).
//!
//! # Design
//!
//! - **Discovery finds, it does not vouch.** mDNS is unauthenticated: any machine on the
//!   LAN can announce any worker id. The id is the fingerprint of the worker's key, and
//!   the transport's handshake (pairing, pinned keys) is what proves it; discovery only
//!   says where to try. So a worker's record is checked for being well-formed and
//!   bounded, never trusted for more.
//! - **Liveness is the connection's.** mDNS notices a goodbye within about a second, but
//!   a worker that vanishes silently (killed, unplugged) only when its records expire,
//!   two minutes later (`mdns-sd` keeps RFC 6762's 120 s TTL for address and SRV
//!   records; measured: 120.0 s). The host checks liveness over its connection instead
//!   and calls [`Browser::mark_dead`], which removes the worker at once and has mDNS
//!   verify it: a dead worker stays out; one that answers comes back after
//!   [`BrowseOptions::dead_hold`] (so the host's retries are that far apart); one that
//!   restarted (a new [`WorkerAd::epoch`]) comes back at once.
//! - **State changes are seen in milliseconds.** Announcements skip name probing (the
//!   names derive from the worker's key, see below), so a new worker is found in about
//!   10 ms and an [`Advertiser::update`] seen in about 5 ms on a LAN. Every
//!   announcement carries a new `seq`, so that going back to an earlier state is seen
//!   too.
//! - **One worker, one entry.** The set is keyed by worker id. A worker seen on several
//!   interfaces, over IPv4 and IPv6, is one entry with all its addresses; if two mDNS
//!   instances claim one id, the one seen first is used (the other takes over if it
//!   leaves).
//! - **Hostile records are ignored, not fatal.** A record that cannot be read (see
//!   below) is logged once as a `tracing` warning and left out; the set tracks at most
//!   [`browse::MAX_INSTANCES`] instances.
//! - **Threads, not a runtime.** `mdns-sd` runs a thread per daemon (one for the
//!   advertiser, one for the browser) plus one that logs its errors; the browser has one
//!   more that keeps the set. Nothing needs an async runtime; the events channel is
//!   tokio's because the host is.
//! - **Names.** The instance is `offload-` and 16 hex digits of the id's SHA-256
//!   ([`WorkerId::instance_name`]): unique per worker, stable across restarts, and safe
//!   whatever the id's characters; the address records are published under the same
//!   label in `.local.`, not the machine's own host name (which Bonjour or Avahi owns).
//!   As the names are unique by construction, the advertiser does not probe them
//!   (RFC 6762 §8.1): probing costs 750 ms, and `mdns-sd` probes every changed TXT
//!   record again, where its own looped-back announcements pass for a conflict and
//!   rename the instance. The price: the same key running twice announces the same
//!   names (one worker to the browser, addresses of both).
//!
//! # The TXT record (schema version 1)
//!
//! It is a protocol between versions of offload: [`txt::TXT_VERSION`] is sent first, as
//! `txtvers`; a reader refuses any other version ([`AdError::UnsupportedVersion`]).
//! Adding a key keeps the version (readers ignore keys they do not know); changing what
//! a key means or how it is written bumps it. Keys are case-insensitive (RFC 6763
//! §6.4), all values are UTF-8, numbers are plain decimal (digits only).
//!
//! | key       | field ([`WorkerAd`])  | value                                                           |
//! |-----------|-----------------------|-----------------------------------------------------------------|
//! | `txtvers` | —                     | `1`                                                             |
//! | `proto`   | `protocol`            | the worker's wire protocol version, `u32`                       |
//! | `id`      | `id`                  | 1–64 bytes of printable ASCII without space (`!`..`~`)          |
//! | `name`    | `name`                | 1–63 bytes of UTF-8, no control characters                      |
//! | `arch`    | `arch`                | `x86_64`, `aarch64`, or another token                           |
//! | `slots`   | `slots`               | `u16`, at least 1                                               |
//! | `free`    | `free_slots`          | `u16`, at most `slots`                                          |
//! | `don`     | `donating`            | `1` or `0`                                                      |
//! | `why`     | `reason`              | `idle`, `always`, `busy-owner`, `on-battery`, `thermal`, `paused-by-user`, `schedule`, `starting`; any other token reads as [`Reason::Other`] |
//! | `epoch`   | `epoch`               | `u64`, new at each start of the worker                          |
//! | `seq`     | —                     | optional: `u32`, the advertiser's count of re-announcements     |
//! | `cc`      | `compilers`           | optional: tokens separated by `,`                               |
//! | `ccmore`  | `compilers_truncated` | optional: `1` when `cc` was cut to fit                          |
//!
//! `seq` changes at every re-announcement, so that no two announcements carry the same
//! record: mDNS neither resends a record within a second (RFC 6762 §6) nor reports a
//! record a browser's cache got less than a second before (§10.2), so a worker going
//! back to an earlier state (free slots 3, 2, 3) would otherwise stay seen in the middle
//! one. Readers check it and otherwise ignore it.
//!
//! A token is 1–32 bytes of `[A-Za-z0-9._+-]`. The port is the SRV record's. Every key
//! but `seq`, `cc` and `ccmore` is required. A record with a missing key, a key twice, a value
//! too long for its field, not UTF-8 or malformed, `free > slots` or port 0 is refused
//! with a typed [`AdError`] (`mdns-sd` itself keeps only the first of duplicate keys, as
//! RFC 6763 §6.4 says; [`txt::decode`] refuses them when it sees them).
//!
//! **Size.** Each `key=value` string is at most 255 bytes (one length byte in DNS) and
//! the whole record at most [`txt::TXT_BUDGET`] (400) bytes, so an announcement fits one
//! packet. All fields but `cc` are bounded (≤ ~320 bytes together in the worst case, ~200
//! typically); `cc` gets the rest, in the order the worker lists its compilers (most
//! relevant first). Compilers that do not fit are left out and `ccmore=1` says so: the
//! host asks the worker for its full list over the connection. The TXT record is for
//! choosing a worker, not an inventory.
//!
//! # Example
//!
//! ```no_run
//! use offload_discovery::{Advertiser, AdvertiseOptions, Browser, BrowseOptions, WorkerAd, WorkerId};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let id = WorkerId::new("SHA256:n5Yq0rZ0kqj2m5A1bQ+8x/3XqJ6rZB8p4tN2R0YdK0E")?;
//! let mut ad = WorkerAd::new(4, id, "build-box", 8, 7420);
//! let mut advertiser = Advertiser::start(ad.clone(), AdvertiseOptions::default())?;
//! ad.free_slots = 5;
//! advertiser.update(ad)?; // re-announced
//!
//! let browser = Browser::start(BrowseOptions::default())?;
//! let mut events = browser.subscribe();
//! while let Some(event) = events.blocking_recv() {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod ad;
pub mod advertise;
pub mod browse;
pub mod net;
pub mod txt;

pub use ad::{Arch, Compiler, Reason, WorkerAd, WorkerId};
pub use advertise::{AdvertiseOptions, Advertiser};
pub use browse::{BrowseEvent, BrowseOptions, Browser, RemoveCause, Worker};
pub use net::{Error, InterfaceSel, NetOptions};
pub use txt::AdError;

/// The DNS-SD service type workers are announced as.
pub const SERVICE_TYPE: &str = "_offload._tcp.local.";

#[cfg(test)]
mod tests {
    /// The host shares a browser between tasks and moves an advertiser into one.
    #[test]
    fn browser_and_advertiser_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::Browser>();
        send_sync::<crate::Advertiser>();
        send_sync::<crate::BrowseEvent>();
        send_sync::<crate::Error>();
    }
}
