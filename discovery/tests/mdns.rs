//! Real mDNS between network namespaces on a bridge (see `lan`): advertisers in some
//! nodes, a browser in another. Needs root; skipped, saying so, otherwise.
//!
//! Every test prints what it measured (`--nocapture` shows it).

#![cfg(target_os = "linux")]

mod lan;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use lan::rawdns::{self, Announce};
use lan::{Lan, Node};
use offload_discovery::{
    AdvertiseOptions, Advertiser, Arch, BrowseEvent, BrowseOptions, Browser, Compiler, NetOptions,
    Reason, RemoveCause, Worker, WorkerAd, WorkerId,
};
use tokio::sync::mpsc::UnboundedReceiver;

const PORT: u16 = 7420;

/// The variable that makes `child_advertiser` advertise (`ID,NAME,PORT`).
const CHILD_ENV: &str = "OFFLOAD_DISCOVERY_TEST_CHILD";

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OFFLOAD_LOG")
                .unwrap_or_else(|_| "offload_discovery=debug,mdns_sd=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn ad(id: &str, name: &str, slots: u16) -> WorkerAd {
    let mut ad = WorkerAd::new(4, WorkerId::new(id).expect("id"), name, slots, PORT);
    ad.compilers = ["gcc-12", "g++-12", "clang-14"]
        .iter()
        .map(|c| Compiler::new(*c).expect("compiler"))
        .collect();
    ad
}

fn advertise(node: &Node, ad: WorkerAd, net: NetOptions) -> Advertiser {
    node.run(move || {
        Advertiser::start(
            ad,
            AdvertiseOptions {
                net,
                ..AdvertiseOptions::default()
            },
        )
        .expect("advertiser")
    })
}

fn browse(node: &Node, opts: BrowseOptions) -> (Browser, UnboundedReceiver<BrowseEvent>) {
    node.run(move || {
        let b = Browser::start(opts).expect("browser");
        let rx = b.subscribe();
        (b, rx)
    })
}

/// A LAN of `nodes` and a browser subscribed in node `at`; `None` (the test skipped,
/// saying why) when not root.
fn lan_with_browser(
    nodes: usize,
    at: usize,
) -> Option<(Lan, Browser, UnboundedReceiver<BrowseEvent>)> {
    if !lan::can_run() {
        return None;
    }
    init_logs();
    let lan = Lan::new(nodes);
    let (browser, rx) = browse(lan.node(at), BrowseOptions::default());
    Some((lan, browser, rx))
}

/// Waits up to `within` for an event that `pred` accepts; returns it and how long it
/// took. Panics with the events seen meanwhile when none comes.
fn wait_for(
    rx: &mut UnboundedReceiver<BrowseEvent>,
    within: Duration,
    what: &str,
    mut pred: impl FnMut(&BrowseEvent) -> bool,
) -> (BrowseEvent, Duration) {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(ev) if pred(&ev) => return (ev, start.elapsed()),
            Ok(ev) => seen.push(ev),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                assert!(
                    start.elapsed() < within,
                    "{what}: nothing within {within:?}; saw {seen:#?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{what}: the events channel closed ({e}); saw {seen:#?}"),
        }
    }
}

/// No event that `pred` accepts for `during`.
fn none_for(
    rx: &mut UnboundedReceiver<BrowseEvent>,
    during: Duration,
    what: &str,
    mut pred: impl FnMut(&BrowseEvent) -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < during {
        match rx.try_recv() {
            Ok(ev) => assert!(!pred(&ev), "{what}: {ev:#?}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn worker_of(ev: &BrowseEvent) -> Option<&Worker> {
    match ev {
        BrowseEvent::Added(w) | BrowseEvent::Updated(w) => Some(w),
        BrowseEvent::Removed { .. } => None,
    }
}

fn is_removed(ev: &BrowseEvent, want: &WorkerId, why: RemoveCause) -> bool {
    matches!(ev, BrowseEvent::Removed { id, cause } if id == want && *cause == why)
}

fn has_addrs(w: &Worker, ips: &[IpAddr]) -> bool {
    ips.iter()
        .all(|ip| w.addrs.contains(&SocketAddr::new(*ip, w.ad.port)))
}

/// Found with the right ad and addresses; an update seen; a goodbye removes it.
#[test]
fn found_updated_and_gone_after_goodbye() {
    let Some((lan, browser, mut rx)) = lan_with_browser(2, 1) else {
        return;
    };
    let mut want = ad("worker-a-key", "worker A", 8);
    let id = want.id.clone();
    let started = Instant::now();
    let mut adv = advertise(lan.node(0), want.clone(), NetOptions::only("eth0"));
    let node0 = lan.node(0).addrs();
    let (ev, _) = wait_for(
        &mut rx,
        Duration::from_secs(2),
        "found with both addresses",
        |ev| worker_of(ev).is_some_and(|w| has_addrs(w, &node0)),
    );
    let found = started.elapsed();
    let w = worker_of(&ev).expect("a worker");
    assert_eq!(w.ad, want);
    assert_eq!(
        w.instance,
        format!("{}._offload._tcp.local.", id.instance_name())
    );
    // Only the node's LAN addresses (and its link-local IPv6), nothing from loopback.
    for a in &w.addrs {
        match a.ip() {
            IpAddr::V4(v4) => assert_eq!(v4, lan.node(0).v4, "{:?}", w.addrs),
            IpAddr::V6(v6) => assert!(
                v6 == lan.node(0).v6 || v6.segments()[0] == 0xfe80,
                "{:?}",
                w.addrs
            ),
        }
    }
    assert_eq!(browser.get(&id).map(|w| w.ad), Some(want.clone()));
    assert_eq!(browser.workers().len(), 1);

    want.free_slots = 5;
    let t = Instant::now();
    assert!(adv.update(want.clone()).expect("update"));
    assert!(
        !adv.update(want.clone()).expect("same again"),
        "nothing changed"
    );
    let (ev, _) = wait_for(
        &mut rx,
        Duration::from_secs(1),
        "free slots update",
        |ev| matches!(ev, BrowseEvent::Updated(w) if w.ad.free_slots == 5),
    );
    let update = t.elapsed();
    assert_eq!(worker_of(&ev).map(|w| &w.ad), Some(&want));

    want.donating = false;
    want.reason = Reason::OnBattery;
    want.free_slots = 0;
    let t = Instant::now();
    adv.update(want.clone()).expect("update");
    wait_for(
        &mut rx,
        Duration::from_secs(1),
        "not donating",
        |ev| matches!(ev, BrowseEvent::Updated(w) if w.ad == want),
    );
    let update2 = t.elapsed();

    // Another id is another advertiser.
    let mut other = want.clone();
    other.id = WorkerId::new("someone-else").expect("id");
    assert!(adv.update(other).is_err());

    let t = Instant::now();
    adv.stop().expect("goodbye");
    let stop = t.elapsed();
    wait_for(
        &mut rx,
        Duration::from_secs(2),
        "removed after goodbye",
        |ev| is_removed(ev, &id, RemoveCause::Gone),
    );
    let gone = t.elapsed();
    assert!(browser.workers().is_empty());
    eprintln!(
        "MEASURED found {found:?}, update seen {update:?} and {update2:?}, stop() took {stop:?}, removed {gone:?} after stop()"
    );
}

/// Going back to a previous state within a second (which mDNS does not repeat within a
/// second, RFC 6762 §6) still ends with the browser on the last state.
#[test]
fn quick_changes_settle_on_the_last_state() {
    let Some((lan, browser, mut rx)) = lan_with_browser(2, 1) else {
        return;
    };
    let mut want = ad("flapping-key", "flapping", 8);
    let mut adv = advertise(lan.node(0), want.clone(), NetOptions::default());
    wait_for(
        &mut rx,
        Duration::from_secs(2),
        "found",
        |ev| matches!(ev, BrowseEvent::Added(w) if w.ad.id == want.id),
    );
    // The updates (its IPv6 addresses) that follow the first announcement are not
    // the ones this test waits for.
    std::thread::sleep(Duration::from_millis(300));
    while rx.try_recv().is_ok() {}
    let t = Instant::now();
    for free in [7, 6, 7, 8] {
        want.free_slots = free;
        adv.update(want.clone()).expect("update");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The events end on the last state (earlier ones may come before it), and so does
    // the set; nothing else comes later.
    wait_for(
        &mut rx,
        Duration::from_millis(2500),
        "the last state",
        |ev| matches!(ev, BrowseEvent::Updated(w) if w.ad == want),
    );
    let settled = t.elapsed();
    none_for(
        &mut rx,
        Duration::from_millis(2000),
        "stays on the last state",
        |ev| worker_of(ev).is_some_and(|w| w.ad != want),
    );
    assert_eq!(browser.get(&want.id).map(|w| w.ad), Some(want));
    eprintln!("MEASURED 4 changes in 80 ms: the last seen {settled:?} after the first");
}

/// Announcing given addresses (as the Mac app does for its container's published port)
/// announces those only; a long compiler list is cut to fit and flagged.
#[test]
fn given_addresses_and_a_long_compiler_list() {
    let Some((lan, browser, mut rx)) = lan_with_browser(2, 1) else {
        return;
    };
    let mut want = ad("published-key", "published", 8);
    want.port = 17420;
    want.compilers = (0..60)
        .map(|i| Compiler::new(format!("aarch64-linux-gnu-gcc-{i}")).expect("compiler"))
        .collect();
    let published: IpAddr = "10.232.0.77".parse().expect("addr");
    let opts = AdvertiseOptions {
        addresses: Some(vec![published]),
        ..AdvertiseOptions::default()
    };
    let sent = want.clone();
    let _adv = lan
        .node(0)
        .run(move || Advertiser::start(sent, opts).expect("advertiser"));
    let (ev, _) = wait_for(
        &mut rx,
        Duration::from_secs(2),
        "found",
        |ev| matches!(ev, BrowseEvent::Added(w) if w.ad.id == want.id),
    );
    let found = worker_of(&ev).cloned().expect("worker");
    assert_eq!(found.addrs, [SocketAddr::new(published, 17420)]);
    assert!(found.ad.compilers_truncated);
    let n = found.ad.compilers.len();
    assert!((3..60).contains(&n), "{n} compilers kept");
    assert_eq!(found.ad.compilers[..], want.compilers[..n]);
    // No later update brings another address.
    none_for(
        &mut rx,
        Duration::from_millis(1500),
        "only the given address",
        |ev| worker_of(ev).is_some_and(|w| w.addrs != found.addrs),
    );
    assert_eq!(browser.workers().len(), 1);
    eprintln!("MEASURED {n} of 60 compilers fit the TXT record");
}

/// A worker and a host on the same machine (one namespace, one process) find each other,
/// loopback included.
#[test]
fn same_machine() {
    let Some((lan, browser, mut rx)) = lan_with_browser(1, 0) else {
        return;
    };
    let want = ad("local-key", "local", 2);
    let adv = advertise(lan.node(0), want.clone(), NetOptions::default());
    let local: IpAddr = "127.0.0.1".parse().expect("addr");
    let (_, found) = wait_for(&mut rx, Duration::from_secs(2), "found on loopback", |ev| {
        worker_of(ev).is_some_and(|w| w.ad == want && has_addrs(w, &[local]))
    });
    drop(adv);
    wait_for(&mut rx, Duration::from_secs(2), "gone", |ev| {
        is_removed(ev, &want.id, RemoveCause::Gone)
    });
    assert!(browser.workers().is_empty());
    eprintln!("MEASURED found on the same machine in {found:?}");
}

/// Two workers at once; a worker seen on two segments is one entry with the addresses of
/// both; a worker pinned to one interface is announced there only; dropping an
/// advertiser says goodbye.
#[test]
fn two_workers_two_segments_one_entry_each() {
    if !lan::can_run() {
        return;
    }
    init_logs();
    let lan = Lan::new(3);
    // Before the browser starts: mdns-sd looks for new interfaces every 5 s only.
    lan.add_segment(&[0, 1, 2]);
    let (browser, mut rx) = browse(lan.node(2), BrowseOptions::default());
    let a = ad("worker-a-key", "worker A", 4);
    let mut b = ad("worker-b-key", "worker B", 16);
    b.arch = Arch::Aarch64;
    let started = Instant::now();
    let adv_a = advertise(lan.node(0), a.clone(), NetOptions::default());
    let adv_b = advertise(lan.node(1), b.clone(), NetOptions::only("eth1"));
    let a_ips = [
        IpAddr::V4(Lan::v4(0, 0)),
        IpAddr::V6(Lan::v6(0, 0)),
        IpAddr::V4(Lan::v4(1, 0)),
        IpAddr::V6(Lan::v6(1, 0)),
    ];
    let b_ips = [IpAddr::V4(Lan::v4(1, 1)), IpAddr::V6(Lan::v6(1, 1))];
    let deadline = Duration::from_secs(3);
    while started.elapsed() < deadline {
        let ws = browser.workers();
        let ok_a = ws.iter().any(|w| w.ad == a && has_addrs(w, &a_ips));
        let ok_b = ws.iter().any(|w| w.ad == b && has_addrs(w, &b_ips));
        if ok_a && ok_b {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let both = started.elapsed();
    let ws = browser.workers();
    assert_eq!(ws.len(), 2, "{ws:#?}");
    let wa = ws.iter().find(|w| w.ad.id == a.id).expect("A");
    let wb = ws.iter().find(|w| w.ad.id == b.id).expect("B");
    assert!(has_addrs(wa, &a_ips), "A on both segments: {:?}", wa.addrs);
    assert!(has_addrs(wb, &b_ips), "B: {:?}", wb.addrs);
    assert!(
        !wb.addrs.iter().any(|s| s.ip() == IpAddr::V4(Lan::v4(0, 1))),
        "B is pinned to eth1: {:?}",
        wb.addrs
    );
    assert!(
        wa.addrs.first().is_some_and(SocketAddr::is_ipv4),
        "IPv4 first"
    );
    // The events said the same: each added once.
    let mut added = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let BrowseEvent::Added(w) = ev {
            added.push(w.ad.id);
        }
    }
    added.sort();
    assert_eq!(added, [a.id.clone(), b.id.clone()]);
    // A later subscriber starts with the set.
    let mut late = browser.subscribe();
    let mut replay = Vec::new();
    while let Ok(ev) = late.try_recv() {
        replay.push(worker_of(&ev).map(|w| w.ad.id.clone()));
    }
    assert_eq!(replay, [Some(a.id.clone()), Some(b.id.clone())]);

    let t = Instant::now();
    drop(adv_a);
    wait_for(
        &mut rx,
        Duration::from_secs(2),
        "A removed after drop",
        |ev| is_removed(ev, &a.id, RemoveCause::Gone),
    );
    let gone = t.elapsed();
    assert_eq!(
        browser.workers().iter().map(|w| &w.ad).collect::<Vec<_>>(),
        [&b]
    );
    drop(adv_b);
    wait_for(
        &mut rx,
        Duration::from_secs(2),
        "B removed after drop",
        |ev| is_removed(ev, &b.id, RemoveCause::Gone),
    );
    eprintln!("MEASURED both found {both:?}; A removed {gone:?} after its drop");
}

/// What `child_advertiser` is told to advertise.
fn child_args(ad: &WorkerAd) -> String {
    format!("{},{},{}", ad.id, ad.name, ad.port)
}

/// Not a test: the advertiser process that `killed_*` tests start (this same binary, in
/// a namespace, with [`CHILD_ENV`] set) and kill. Returns at once without it.
#[test]
fn child_advertiser() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    init_logs();
    let mut parts = spec.splitn(3, ',');
    let (Some(id), Some(name), Some(port)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("{CHILD_ENV}={spec}: want ID,NAME,PORT");
    };
    let mut ad = ad(id, name, 4);
    ad.port = port.parse().expect("port");
    let _adv = Advertiser::start(ad, AdvertiseOptions::default()).expect("advertiser");
    // Until killed; never longer than any test.
    std::thread::sleep(Duration::from_secs(600));
}

fn spawn_child(node: &Node, ad: &WorkerAd) -> std::process::Child {
    let exe = std::env::current_exe().expect("the test binary");
    node.spawn(
        &exe,
        &[
            "child_advertiser",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ],
        &[(CHILD_ENV, &child_args(ad))],
    )
}

/// A LAN of two nodes, a browser in node 1 verifying within `verify` after
/// `mark_dead`, and an advertiser process in node 0 announcing `want`, found by the
/// browser and then killed (no goodbye). Returns how long finding it took.
fn killed_worker(
    want: &WorkerAd,
    verify: Duration,
) -> (Lan, Browser, UnboundedReceiver<BrowseEvent>, Duration) {
    let lan = Lan::new(2);
    let (browser, mut rx) = browse(
        lan.node(1),
        BrowseOptions {
            verify_timeout: verify,
            ..BrowseOptions::default()
        },
    );
    let mut child = spawn_child(lan.node(0), want);
    let (_, found) = wait_for(
        &mut rx,
        Duration::from_secs(5),
        "child found",
        |ev| matches!(ev, BrowseEvent::Added(w) if w.ad.id == want.id),
    );
    child.kill().expect("kill the advertiser");
    let _ = child.wait();
    (lan, browser, rx, found)
}

/// A worker killed without a goodbye stays in the set (mDNS cannot tell) until the host
/// marks it dead; then it is out at once and stays out, since it does not answer mDNS's
/// verification.
#[test]
fn killed_worker_marked_dead_stays_out() {
    if !lan::can_run() {
        return;
    }
    init_logs();
    let verify = Duration::from_secs(1);
    let want = ad("killed-key", "killed", 4);
    let (lan, browser, mut rx, found) = killed_worker(&want, verify);
    let first_epoch = browser.get(&want.id).expect("found").ad.epoch;
    // Nothing tells mDNS.
    none_for(
        &mut rx,
        Duration::from_secs(2),
        "no removal without a goodbye",
        |ev| matches!(ev, BrowseEvent::Removed { .. }),
    );
    assert!(browser.get(&want.id).is_some());
    let t = Instant::now();
    assert!(browser.mark_dead(&want.id));
    wait_for(
        &mut rx,
        Duration::from_millis(100),
        "removed when marked dead",
        |ev| is_removed(ev, &want.id, RemoveCause::MarkedDead),
    );
    let marked = t.elapsed();
    assert!(browser.get(&want.id).is_none());
    assert!(!browser.mark_dead(&want.id), "not in the set any more");
    none_for(
        &mut rx,
        verify + Duration::from_secs(3),
        "a dead worker does not come back",
        |ev| matches!(ev, BrowseEvent::Added(_)),
    );
    assert!(browser.workers().is_empty());
    // Restarted (same id, same instance name, a new epoch): back at once.
    let t = Instant::now();
    let mut restarted_child = spawn_child(lan.node(0), &want);
    let (ev, _) = wait_for(
        &mut rx,
        Duration::from_secs(2),
        "restarted",
        |ev| matches!(ev, BrowseEvent::Added(w) if w.ad.id == want.id),
    );
    let restarted = t.elapsed();
    let _ = restarted_child.kill();
    let _ = restarted_child.wait();
    let new_epoch = worker_of(&ev).map(|w| w.ad.epoch);
    assert!(
        new_epoch > Some(first_epoch),
        "{new_epoch:?} after {first_epoch}"
    );
    eprintln!(
        "MEASURED child found {found:?}; removed {marked:?} after mark_dead; restarted, found {restarted:?} after its start"
    );
}

/// The host marked a worker dead, but it is alive (its connection failed for another
/// reason): it stays out for the hold, even though it answers mDNS (and changes state
/// meanwhile, if `changes`), and then comes back as it is now.
fn marked_dead_but_alive(changes: bool) {
    init_logs();
    let lan = Lan::new(2);
    let hold = Duration::from_secs(2);
    let (browser, mut rx) = browse(
        lan.node(1),
        BrowseOptions {
            verify_timeout: Duration::from_millis(500),
            dead_hold: hold,
            ..BrowseOptions::default()
        },
    );
    let mut want = ad("alive-key", "alive", 4);
    let mut adv = advertise(lan.node(0), want.clone(), NetOptions::default());
    wait_for(
        &mut rx,
        Duration::from_secs(2),
        "found",
        |ev| matches!(ev, BrowseEvent::Added(w) if w.ad.id == want.id),
    );
    let t = Instant::now();
    assert!(browser.mark_dead(&want.id));
    wait_for(&mut rx, Duration::from_millis(100), "marked dead", |ev| {
        is_removed(ev, &want.id, RemoveCause::MarkedDead)
    });
    if changes {
        // While mDNS verifies it: mdns-sd then reports it removed.
        want.free_slots = 2;
        adv.update(want.clone()).expect("update");
    }
    none_for(
        &mut rx,
        hold - Duration::from_millis(300),
        "held out",
        |ev| matches!(ev, BrowseEvent::Added(_) | BrowseEvent::Updated(_)),
    );
    assert!(browser.workers().is_empty());
    let (ev, _) = wait_for(
        &mut rx,
        Duration::from_secs(3),
        "back",
        |ev| matches!(ev, BrowseEvent::Added(w) if w.ad.id == want.id),
    );
    let back = t.elapsed();
    assert!(back >= hold, "{back:?}");
    assert_eq!(worker_of(&ev).map(|w| &w.ad), Some(&want), "as it is now");
    eprintln!("MEASURED back {back:?} after mark_dead (hold {hold:?}, changes: {changes})");
}

#[test]
fn marked_dead_but_alive_comes_back_after_the_hold() {
    if lan::can_run() {
        marked_dead_but_alive(false);
    }
}

#[test]
fn marked_dead_but_alive_and_changing_comes_back_after_the_hold() {
    if lan::can_run() {
        marked_dead_but_alive(true);
    }
}

/// A worker killed without a goodbye, and nobody marking it dead: mDNS removes it when
/// its records expire. Long (up to the 120 s TTL): run with `--ignored`.
#[test]
#[ignore = "waits for mDNS's 120 s TTL; run with --ignored to measure it"]
fn killed_worker_expires_with_its_ttl() {
    if !lan::can_run() {
        return;
    }
    init_logs();
    let want = ad("expiring-key", "expiring", 4);
    let (_lan, _browser, mut rx, _) = killed_worker(&want, Duration::from_secs(3));
    let (_, expired) = wait_for(&mut rx, Duration::from_secs(150), "expired", |ev| {
        is_removed(ev, &want.id, RemoveCause::Gone)
    });
    eprintln!("MEASURED a silently killed worker was removed {expired:?} after the kill");
}

/// A hostile peer on the LAN announcing broken records, a forged claim to the good
/// worker's id and a flood of instances: the browser keeps only what it can read, keeps
/// the good worker as it was, and goes on following it.
#[test]
fn hostile_advertiser_does_not_disturb_the_browser() {
    let Some((lan, browser, mut rx)) = lan_with_browser(3, 1) else {
        return;
    };
    let mut good = ad("good-key", "good", 4);
    let mut adv = advertise(lan.node(0), good.clone(), NetOptions::default());
    let node0 = lan.node(0).addrs();
    wait_for(&mut rx, Duration::from_secs(2), "good found", |ev| {
        worker_of(ev).is_some_and(|w| w.ad.id == good.id && has_addrs(w, &node0))
    });
    let good_instance = browser.get(&good.id).expect("good").instance;

    // A valid record (as mdns-sd would see it) with some strings replaced.
    let valid = |id: &str| -> Vec<Vec<u8>> {
        [
            "txtvers=1",
            "proto=4",
            &format!("id={id}"),
            "name=evil",
            "arch=x86_64",
            "slots=4",
            "free=4",
            "don=1",
            "why=idle",
            "epoch=1",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    };
    let with = |mut strings: Vec<Vec<u8>>, key: &str, val: Option<&[u8]>| {
        strings.retain(|s| !s.starts_with(format!("{key}=").as_bytes()));
        if let Some(v) = val {
            let mut s = format!("{key}=").into_bytes();
            s.extend_from_slice(v);
            strings.push(s);
        }
        strings
    };
    let framed =
        |strings: &[Vec<u8>]| rawdns::txt(&strings.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        (
            "v2".into(),
            framed(&with(valid("e1"), "txtvers", Some(b"2"))),
        ),
        ("no-id".into(), framed(&with(valid("e2"), "id", None))),
        (
            "huge-name".into(),
            framed(&with(valid("e3"), "name", Some(&[b'n'; 240]))),
        ),
        (
            "not-utf8".into(),
            framed(&with(valid("e4"), "name", Some(b"caf\xe9"))),
        ),
        (
            "bad-id".into(),
            framed(&with(valid("e5 x"), "slots", Some(b"4"))),
        ),
        (
            "free-gt-slots".into(),
            framed(&with(valid("e6"), "free", Some(b"9"))),
        ),
        (
            "escape-name".into(),
            framed(&with(valid("e7"), "name", Some(b"\x1b[2J"))),
        ),
        ("bad-port-0".into(), framed(&valid("e8"))),
        // Duplicates: mdns-sd keeps the first (RFC 6763 §6.4), here txtvers=2.
        ("dup-version".into(), {
            let mut s = valid("e9");
            s.insert(0, b"txtvers=2".to_vec());
            framed(&s)
        }),
        // A length byte running past the end of the record, right after `txtvers`:
        // mdns-sd drops the rest.
        ("bad-framing".into(), {
            let mut t = rawdns::txt(&[b"txtvers=1"]);
            t.push(250);
            t.extend_from_slice(&framed(&valid("e10"))[..]);
            t
        }),
        // Many long strings of nothing this schema knows.
        ("all-unknown".into(), {
            let big = vec![b'x'; 250];
            rawdns::txt(&[&big, &big, &big, &big])
        }),
        ("empty".into(), vec![0]),
    ];
    for i in 0..40 {
        cases.push((
            format!("flood-{i}"),
            framed(&with(valid(&format!("f{i}")), "don", Some(b"?"))),
        ));
    }
    let mut packets: Vec<Vec<u8>> = cases
        .iter()
        .map(|(label, txt)| {
            rawdns::packet(&Announce {
                instance: label.as_bytes().to_vec(),
                host: format!("evil-{label}"),
                port: if label == "bad-port-0" { 0 } else { PORT },
                txt: txt.clone(),
                addr: lan.node(2).v4,
            })
        })
        .collect();
    // An instance name with dots, a backslash and non-ASCII bytes, claiming the good
    // worker's id: valid, but seen second.
    let forged = framed(&valid(good.id.as_str()));
    packets.push(rawdns::packet(&Announce {
        instance: b"good.worker\\ \xc3\xa9vil".to_vec(),
        host: "evil-forged".into(),
        port: PORT,
        txt: forged,
        addr: lan.node(2).v4,
    }));
    // Accepted: valid, with an unknown reason and a new key.
    let newer = framed(&with(
        with(valid("newer-peer"), "why", Some(b"solar-eclipse")),
        "future",
        Some(b"whatever"),
    ));
    packets.push(rawdns::packet(&Announce {
        instance: b"newer".to_vec(),
        host: "newer".into(),
        port: PORT,
        txt: newer,
        addr: lan.node(2).v4,
    }));
    lan.node(2).run(move || {
        for _ in 0..3 {
            rawdns::send(&packets);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (ev, _) = wait_for(
        &mut rx,
        Duration::from_secs(3),
        "the newer peer",
        |ev| matches!(ev, BrowseEvent::Added(w) if w.ad.id.as_str() == "newer-peer"),
    );
    let newer = worker_of(&ev).expect("worker");
    assert_eq!(newer.ad.reason, Reason::Other("solar-eclipse".into()));
    assert_eq!(
        newer.addrs,
        [SocketAddr::new(IpAddr::V4(lan.node(2).v4), PORT)]
    );
    // Let every hostile record arrive and be looked at.
    std::thread::sleep(Duration::from_millis(500));
    let ids: Vec<String> = browser
        .workers()
        .iter()
        .map(|w| w.ad.id.to_string())
        .collect();
    assert_eq!(ids, ["good-key", "newer-peer"]);
    let g = browser.get(&good.id).expect("good");
    assert_eq!(g.instance, good_instance, "the first instance keeps the id");
    assert!(has_addrs(&g, &node0), "{:?}", g.addrs);
    assert!(
        !g.addrs.iter().any(|a| a.ip() == IpAddr::V4(lan.node(2).v4)),
        "no address of the forger: {:?}",
        g.addrs
    );
    // And the browser still follows the good worker.
    good.free_slots = 1;
    adv.update(good.clone()).expect("update");
    wait_for(
        &mut rx,
        Duration::from_secs(1),
        "good updated",
        |ev| matches!(ev, BrowseEvent::Updated(w) if w.ad == good),
    );
    // When the good worker leaves, the forged instance (valid, same id) takes over: mDNS
    // is not authenticated, the transport's handshake is what tells them apart.
    adv.stop().expect("stop");
    let (ev, _) = wait_for(
        &mut rx,
        Duration::from_secs(2),
        "the forger takes over",
        |ev| matches!(ev, BrowseEvent::Updated(w) if w.ad.id == good.id),
    );
    assert_eq!(
        worker_of(&ev).map(|w| w.addrs.clone()),
        Some(vec![SocketAddr::new(IpAddr::V4(lan.node(2).v4), PORT)])
    );
}
