//! A hostile mDNS peer: announcements written byte by byte (not through mdns-sd, which
//! would refuse to send most of them), sent from a plain UDP socket on port 5353.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_TXT: u16 = 16;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
const CACHE_FLUSH: u16 = 0x8000;

/// One announcement of an `_offload._tcp` instance.
pub struct Announce {
    /// The instance label (any bytes up to 63, dots included: it is one label).
    pub instance: Vec<u8>,
    /// The host label (`evil` for `evil.local.`).
    pub host: String,
    pub port: u16,
    /// The TXT record's rdata as sent: use [`txt`] for well-framed strings, or anything.
    pub txt: Vec<u8>,
    pub addr: Ipv4Addr,
}

/// TXT rdata from `strings`, each with its length byte (each at most 255 bytes).
pub fn txt(strings: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        out.push(u8::try_from(s.len()).expect("a TXT string is at most 255 bytes"));
        out.extend_from_slice(s);
    }
    out
}

fn name(out: &mut Vec<u8>, labels: &[&[u8]]) {
    for l in labels {
        out.push(u8::try_from(l.len()).expect("a label is at most 63 bytes"));
        out.extend_from_slice(l);
    }
    out.push(0);
}

fn record(out: &mut Vec<u8>, owner: &[&[u8]], ty: u16, class: u16, ttl: u32, rdata: &[u8]) {
    name(out, owner);
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&class.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&u16::try_from(rdata.len()).expect("rdata").to_be_bytes());
    out.extend_from_slice(rdata);
}

/// The response packet announcing `a`: PTR, SRV, TXT and A records.
pub fn packet(a: &Announce) -> Vec<u8> {
    let service: [&[u8]; 3] = [b"_offload", b"_tcp", b"local"];
    let inst: [&[u8]; 4] = [&a.instance, b"_offload", b"_tcp", b"local"];
    let host: [&[u8]; 2] = [a.host.as_bytes(), b"local"];
    let mut out = Vec::new();
    // Header: id 0, a response, authoritative; four answers.
    for v in [0u16, 0x8400, 0, 4, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    let mut ptr = Vec::new();
    name(&mut ptr, &inst);
    record(&mut out, &service, TYPE_PTR, CLASS_IN, 4500, &ptr);
    let mut srv = Vec::new();
    srv.extend_from_slice(&0u16.to_be_bytes());
    srv.extend_from_slice(&0u16.to_be_bytes());
    srv.extend_from_slice(&a.port.to_be_bytes());
    name(&mut srv, &host);
    record(&mut out, &inst, TYPE_SRV, CLASS_IN | CACHE_FLUSH, 120, &srv);
    record(
        &mut out,
        &inst,
        TYPE_TXT,
        CLASS_IN | CACHE_FLUSH,
        4500,
        &a.txt,
    );
    record(
        &mut out,
        &host,
        TYPE_A,
        CLASS_IN | CACHE_FLUSH,
        120,
        &a.addr.octets(),
    );
    out
}

/// Sends `packets` to the mDNS group from port 5353 (run this inside the hostile node).
pub fn send(packets: &[Vec<u8>]) {
    let sock = UdpSocket::bind("0.0.0.0:5353").expect("bind 5353 in the hostile node");
    sock.set_multicast_ttl_v4(255).expect("multicast ttl");
    let group = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);
    for p in packets {
        sock.send_to(p, group).expect("send to the mDNS group");
    }
}
