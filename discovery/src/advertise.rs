//! The worker's side: announce a [`WorkerAd`], re-announce it when it changes, say
//! goodbye when stopping.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{ServiceDaemon, ServiceInfo};

use crate::SERVICE_TYPE;
use crate::ad::WorkerAd;
use crate::net::{self, Error, NetOptions};
use crate::txt;

/// How to advertise.
#[derive(Clone, Debug)]
pub struct AdvertiseOptions {
    /// Interfaces and address families to announce on.
    pub net: NetOptions,
    /// The addresses to announce. `None` (the default): each interface's own
    /// addresses, on that interface, kept current as they change. `Some`: exactly these
    /// (each is announced on the interfaces whose subnet holds it): for a worker whose
    /// port is published from another address than the ones it has.
    pub addresses: Option<Vec<IpAddr>>,
    /// How long [`Advertiser::stop`] (and drop) waits for the goodbye to be sent.
    pub goodbye_wait: Duration,
}

impl Default for AdvertiseOptions {
    fn default() -> AdvertiseOptions {
        AdvertiseOptions {
            net: NetOptions::default(),
            addresses: None,
            goodbye_wait: Duration::from_secs(1),
        }
    }
}

/// Announces one worker on the LAN as `_offload._tcp`, for as long as it lives.
///
/// mDNS runs on a thread of `mdns-sd`'s (no async runtime needed); every method returns
/// at once except [`Advertiser::stop`], which waits for the goodbye (at most
/// [`AdvertiseOptions::goodbye_wait`], about 150 ms in practice). Dropping it stops it the
/// same way.
pub struct Advertiser {
    daemon: Option<ServiceDaemon>,
    ad: WorkerAd,
    fullname: String,
    opts: AdvertiseOptions,
    /// The announcement's number, in the record as `seq`.
    seq: u32,
}

impl Advertiser {
    /// Checks `ad`, starts an mDNS responder and announces it (at once, and again a
    /// second later).
    pub fn start(ad: WorkerAd, opts: AdvertiseOptions) -> Result<Advertiser, Error> {
        let info = service_info(&ad, 0, &opts)?;
        let daemon = net::start_daemon(&opts.net, "advertise")?;
        let fullname = info.get_fullname().to_owned();
        if let Err(e) = daemon.register(info) {
            net::shutdown(&daemon, opts.goodbye_wait);
            return Err(Error::mdns(e));
        }
        tracing::info!(
            instance = %fullname,
            id = %ad.id,
            port = ad.port,
            "advertising the worker on mDNS"
        );
        Ok(Advertiser {
            daemon: Some(daemon),
            ad,
            fullname,
            opts,
            seq: 0,
        })
    }

    /// Announces `ad` if it differs from what is announced (free slots, donating, …);
    /// returns whether it did. The id cannot change: it names the mDNS instance.
    pub fn update(&mut self, ad: WorkerAd) -> Result<bool, Error> {
        if ad.id != self.ad.id {
            return Err(Error::IdChanged {
                old: self.ad.id.to_string(),
                new: ad.id.to_string(),
            });
        }
        if ad == self.ad {
            return Ok(false);
        }
        let seq = self.seq.wrapping_add(1);
        let info = service_info(&ad, seq, &self.opts)?;
        let Some(daemon) = &self.daemon else {
            return Err(Error::Mdns("the advertiser is stopped".into()));
        };
        // mdns-sd sends it at once and again a second later (RFC 6762 §8.3). `seq` makes
        // the record new even when the state goes back to an earlier one: mDNS does not
        // send a record again within a second (§6), and a browser's cache keeps a
        // record it got less than a second before (§10.2) and would not report it anew.
        daemon.register(info).map_err(Error::mdns)?;
        tracing::debug!(
            instance = %self.fullname,
            free = ad.free_slots,
            donating = ad.donating,
            reason = %ad.reason,
            "re-announcing the worker"
        );
        self.ad = ad;
        self.seq = seq;
        Ok(true)
    }

    /// What is announced.
    pub fn ad(&self) -> &WorkerAd {
        &self.ad
    }

    /// The mDNS instance's full name (`offload-….\_offload.\_tcp.local.`).
    pub fn instance(&self) -> &str {
        &self.fullname
    }

    /// Sends the goodbye (the records again with a TTL of 0, which makes browsers drop
    /// the worker about a second later), waits for it to be out, and stops mDNS.
    pub fn stop(mut self) -> Result<(), Error> {
        self.goodbye()
    }

    fn goodbye(&mut self) -> Result<(), Error> {
        let Some(daemon) = self.daemon.take() else {
            return Ok(());
        };
        let wait = self.opts.goodbye_wait;
        let start = Instant::now();
        let sent = daemon
            .unregister(&self.fullname)
            .map_err(Error::mdns)
            .and_then(|rx| rx.recv_timeout(wait).map_err(|_| Error::Timeout(wait)));
        // mdns-sd sends the goodbye once at once and once more 120 ms later (RFC 6762
        // §10.1 asks for repeats): leave it the time for the second.
        let resend = Duration::from_millis(150);
        std::thread::sleep(resend.min(wait.saturating_sub(start.elapsed())));
        // Shutting down would send the goodbye too, had unregistering failed.
        net::shutdown(&daemon, wait.saturating_sub(start.elapsed()));
        tracing::info!(instance = %self.fullname, "stopped advertising the worker");
        sent.map(drop)
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        if let Err(e) = self.goodbye() {
            tracing::warn!(instance = %self.fullname, "mDNS goodbye: {e}");
        }
    }
}

/// The mDNS service for `ad`: instance and host names derived from its id, the TXT
/// record, the port, the addresses.
fn service_info(ad: &WorkerAd, seq: u32, opts: &AdvertiseOptions) -> Result<ServiceInfo, Error> {
    let props = txt::encode(ad, seq)?;
    let instance = ad.id.instance_name();
    let host = ad.id.host_name();
    let info = match &opts.addresses {
        Some(addrs) => ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &host,
            &addrs[..],
            ad.port,
            &props[..],
        ),
        None => ServiceInfo::new(SERVICE_TYPE, &instance, &host, (), ad.port, &props[..])
            .map(ServiceInfo::enable_addr_auto),
    };
    let mut info = info.map_err(Error::mdns)?;
    info.set_interfaces(opts.net.service_if_kinds());
    // No name probing (RFC 6762 §8.1): the names derive from the worker's key, so they
    // are unique unless the same key runs twice. Probing costs 750 ms at the start, and
    // mdns-sd probes again for every changed TXT record, where the daemon's own
    // announcements, looped back on an interface still probing, look like a conflict
    // and get the instance renamed ("offload-… (2)").
    info.set_requires_probe(false);
    Ok(info)
}
