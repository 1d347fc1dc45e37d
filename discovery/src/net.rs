//! What the advertiser and the browser share: the choice of interfaces, the errors, and
//! the few things done the same way to both mDNS daemons.

use std::net::IpAddr;
use std::time::Duration;

use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon};
use thiserror::Error;

use crate::txt::AdError;

/// One interface, by name (`eth0`, `en0`) or by one of its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterfaceSel {
    /// By name.
    Name(String),
    /// By an address it has (IPv4 or IPv6: this picks that family on that interface).
    Addr(IpAddr),
}

/// Which interfaces and address families mDNS uses. The default is every interface,
/// IPv4 and IPv6, loopback included (so a host finds a worker on the same machine), and
/// follows interfaces and addresses as they come and go (checked every 5 s).
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    /// Only these interfaces; empty means all.
    pub interfaces: Vec<InterfaceSel>,
    /// Leave IPv4 out.
    pub no_ipv4: bool,
    /// Leave IPv6 out.
    pub no_ipv6: bool,
    /// Leave the loopback interface out (unless it is named in `interfaces`).
    pub no_loopback: bool,
}

impl NetOptions {
    /// Only the interface named `name`.
    pub fn only(name: impl Into<String>) -> NetOptions {
        NetOptions {
            interfaces: vec![InterfaceSel::Name(name.into())],
            ..NetOptions::default()
        }
    }

    /// The interface selections for `mdns-sd`, in its order (the last one that matches
    /// an interface decides).
    pub(crate) fn if_kinds(&self) -> (Vec<IfKind>, Vec<IfKind>) {
        let mut disable = Vec::new();
        let mut enable = Vec::new();
        if self.no_loopback {
            disable.push(IfKind::LoopbackV4);
            disable.push(IfKind::LoopbackV6);
        }
        if !self.interfaces.is_empty() {
            disable.push(IfKind::All);
            enable.extend(self.service_if_kinds());
        }
        (disable, enable)
    }

    /// The interfaces a service is announced on.
    pub(crate) fn service_if_kinds(&self) -> Vec<IfKind> {
        if self.interfaces.is_empty() {
            return vec![IfKind::All];
        }
        self.interfaces
            .iter()
            .map(|i| match i {
                InterfaceSel::Name(n) => IfKind::Name(n.clone()),
                InterfaceSel::Addr(a) => IfKind::Addr(*a),
            })
            .collect()
    }

    /// Applies the selection to `daemon`: disables before enabling (mdns-sd applies
    /// them in order), and the address families last, so they win.
    pub(crate) fn apply(&self, daemon: &ServiceDaemon) -> Result<(), Error> {
        let (disable, enable) = self.if_kinds();
        if !disable.is_empty() {
            daemon.disable_interface(disable).map_err(Error::mdns)?;
        }
        if !enable.is_empty() {
            daemon.enable_interface(enable).map_err(Error::mdns)?;
        }
        if self.no_ipv4 {
            daemon
                .disable_interface(IfKind::IPv4)
                .map_err(Error::mdns)?;
        }
        if self.no_ipv6 {
            daemon
                .disable_interface(IfKind::IPv6)
                .map_err(Error::mdns)?;
        }
        Ok(())
    }
}

/// What can go wrong in discovery.
#[derive(Debug, Error)]
pub enum Error {
    /// The ad is not valid (see [`AdError`]).
    #[error("invalid advertisement: {0}")]
    Ad(#[from] AdError),
    /// The mDNS daemon refused or failed (socket, thread, a full command queue).
    #[error("mDNS: {0}")]
    Mdns(String),
    /// [`crate::Advertiser::update`] with another worker id: the id names the mDNS
    /// instance, so another id is another advertiser.
    #[error("an advertiser's worker id cannot change (from {old} to {new}); start another")]
    IdChanged {
        /// The id it advertises.
        old: String,
        /// The id it was given.
        new: String,
    },
    /// The mDNS daemon did not confirm in time.
    #[error("the mDNS daemon did not answer within {0:?}")]
    Timeout(Duration),
}

impl Error {
    pub(crate) fn mdns(e: mdns_sd::Error) -> Error {
        Error::Mdns(e.to_string())
    }
}

/// Starts an mDNS daemon with `net` applied, and a thread that logs what it reports
/// (socket errors, name conflicts, addresses coming and going) through `tracing`; the
/// thread ends with the daemon.
pub(crate) fn start_daemon(net: &NetOptions, role: &'static str) -> Result<ServiceDaemon, Error> {
    let daemon = ServiceDaemon::new().map_err(Error::mdns)?;
    let started = net.apply(&daemon).and_then(|()| {
        let monitor = daemon.monitor().map_err(Error::mdns)?;
        std::thread::Builder::new()
            .name(format!("mdns-{role}-log"))
            .spawn(move || {
                while let Ok(ev) = monitor.recv() {
                    match ev {
                        DaemonEvent::Error(e) => tracing::warn!(role, "mDNS: {e}"),
                        DaemonEvent::NameChange(c) => tracing::warn!(
                            role,
                            "mDNS name conflict: {} is now {}",
                            c.original,
                            c.new_name
                        ),
                        DaemonEvent::IpAdd(ip) => tracing::debug!(role, %ip, "mDNS: address added"),
                        DaemonEvent::IpDel(ip) => {
                            tracing::debug!(role, %ip, "mDNS: address removed")
                        }
                        DaemonEvent::Announce(name, on) => {
                            tracing::trace!(role, "mDNS: announced {name} on {on}");
                        }
                        other => tracing::trace!(role, "mDNS: {other:?}"),
                    }
                }
            })
            .map_err(|e| Error::Mdns(format!("cannot start a thread: {e}")))?;
        Ok(())
    });
    if let Err(e) = started {
        shutdown(&daemon, Duration::from_secs(1));
        return Err(e);
    }
    Ok(daemon)
}

/// Stops `daemon` and waits up to `wait` for its thread to say it has.
pub(crate) fn shutdown(daemon: &ServiceDaemon, wait: Duration) {
    match daemon.shutdown() {
        Ok(rx) => {
            if rx.recv_timeout(wait).is_err() {
                tracing::debug!("mDNS daemon did not confirm its shutdown within {wait:?}");
            }
        }
        Err(mdns_sd::Error::DaemonShutdown) => {}
        Err(e) => tracing::debug!("mDNS daemon shutdown: {e}"),
    }
}
