//! A tiny in-memory DNS server for tests and labs: point `VELLUM_VA_DNS_RESOLVER` (or
//! [`super::VaConfig::dns_resolver`]) at it and publish A, AAAA, TXT and CNAME records.
//!
//! It answers like a recursive resolver would: CNAME chains (up to 8 links) are followed
//! inside the one answer, a name with no records at all gets NXDOMAIN, a name with other
//! records gets an empty NOERROR. Every record has TTL 0. It serves UDP and TCP on the same
//! port, on plain threads (no async runtime needed), and stops when dropped.
//!
//! ```no_run
//! use vellum_va::testdns::TestDns;
//! let (dns, addr) = TestDns::start().unwrap();
//! dns.set_a("www.example.test", "127.0.0.1".parse().unwrap());
//! dns.set_txt("_acme-challenge.example.test", ["value"]);
//! dns.set_cname("_acme-challenge.other.test", "_acme-challenge.example.test");
//! // VaConfig { dns_resolver: Some(addr), .. }
//! # let _ = addr;
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How many CNAME links an answer follows.
const MAX_CHAIN: usize = 8;

#[derive(Debug, Clone)]
enum Rec {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Txt(String),
    Cname(String),
}

impl Rec {
    fn rtype(&self) -> RecordType {
        match self {
            Rec::A(_) => RecordType::A,
            Rec::Aaaa(_) => RecordType::AAAA,
            Rec::Txt(_) => RecordType::TXT,
            Rec::Cname(_) => RecordType::CNAME,
        }
    }
}

type Zone = HashMap<String, Vec<Rec>>;

/// A running test DNS server. Cheap to share by reference; stops when dropped.
#[derive(Debug)]
pub struct TestDns {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The key a name is stored under: lower case, no trailing dot.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl TestDns {
    /// Starts a server on a free port of 127.0.0.1 (UDP and TCP), returning it and its
    /// address.
    pub fn start() -> io::Result<(TestDns, SocketAddr)> {
        let mut last = None;
        for _ in 0..20 {
            match TestDns::start_on("127.0.0.1:0".parse().map_err(io::Error::other)?) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("could not bind")))
    }

    /// Starts a server on `addr` (port 0: any free port, the same one for UDP and TCP when
    /// it is free for both; otherwise an `AddrInUse` error, and [`TestDns::start`] tries
    /// again).
    pub fn start_on(addr: SocketAddr) -> io::Result<(TestDns, SocketAddr)> {
        let udp = UdpSocket::bind(addr)?;
        let bound = udp.local_addr()?;
        let tcp = TcpListener::bind(bound)?;
        let zone: Arc<Mutex<Zone>> = Arc::default();
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));

        let mut threads = Vec::new();
        {
            let (zone, queries, stop) = (zone.clone(), queries.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("testdns-udp".into())
                    .spawn(move || serve_udp(udp, zone, queries, stop))?,
            );
        }
        {
            let (zone, queries, stop) = (zone.clone(), queries.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("testdns-tcp".into())
                    .spawn(move || serve_tcp(tcp, zone, queries, stop))?,
            );
        }
        Ok((
            TestDns {
                addr: bound,
                zone,
                queries,
                stop,
                threads,
            },
            bound,
        ))
    }

    /// The address it listens on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries it has answered.
    pub fn query_count(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }

    fn zone(&self) -> MutexGuard<'_, Zone> {
        self.zone.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the records of `rtype` at `name` with `recs` (a CNAME replaces everything at
    /// the name, and anything else replaces a CNAME).
    fn set(&self, name: &str, rtype: RecordType, recs: Vec<Rec>) {
        let mut zone = self.zone();
        let entry = zone.entry(key(name)).or_default();
        entry.retain(|r| {
            r.rtype() != rtype && rtype != RecordType::CNAME && r.rtype() != RecordType::CNAME
        });
        entry.extend(recs);
        if entry.is_empty() {
            zone.remove(&key(name));
        }
    }

    /// Sets the A record of `name` (replacing its A records).
    pub fn set_a(&self, name: &str, ip: Ipv4Addr) {
        self.set(name, RecordType::A, vec![Rec::A(ip)]);
    }

    /// Sets the AAAA record of `name` (replacing its AAAA records).
    pub fn set_aaaa(&self, name: &str, ip: Ipv6Addr) {
        self.set(name, RecordType::AAAA, vec![Rec::Aaaa(ip)]);
    }

    /// Sets the A or AAAA record of `name`, by the address family of `ip`.
    pub fn set_ip(&self, name: &str, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.set_a(name, v4),
            IpAddr::V6(v6) => self.set_aaaa(name, v6),
        }
    }

    /// Sets the TXT records of `name`, one record per value (values over 255 bytes are
    /// served as several character-strings); an empty list removes them.
    pub fn set_txt<I, S>(&self, name: &str, values: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let recs = values
            .into_iter()
            .map(|v| Rec::Txt(v.as_ref().to_string()))
            .collect();
        self.set(name, RecordType::TXT, recs);
    }

    /// Makes `name` a CNAME to `target` (removing its other records).
    pub fn set_cname(&self, name: &str, target: &str) {
        self.set(name, RecordType::CNAME, vec![Rec::Cname(key(target))]);
    }

    /// Removes every record at `name`.
    pub fn remove(&self, name: &str) {
        self.zone().remove(&key(name));
    }

    /// Removes every record.
    pub fn clear(&self) {
        self.zone().clear();
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake both loops.
        if let Ok(s) = UdpSocket::bind(SocketAddr::new(self.addr.ip(), 0)) {
            let _ = s.send_to(&[], self.addr);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve_udp(
    sock: UdpSocket,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => continue,
        };
        if let Some(resp) = answer(&buf[..n], &zone, false) {
            queries.fetch_add(1, Ordering::Relaxed);
            let _ = sock.send_to(&resp, from);
        }
    }
}

fn serve_tcp(
    listener: TcpListener,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut conn) = conn else { continue };
        let (zone, queries) = (zone.clone(), queries.clone());
        let _ = std::thread::Builder::new()
            .name("testdns-tcp-conn".into())
            .spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                loop {
                    let mut len = [0u8; 2];
                    if conn.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut msg).is_err() {
                        return;
                    }
                    let Some(resp) = answer(&msg, &zone, true) else {
                        return;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    let Ok(rlen) = u16::try_from(resp.len()) else {
                        return;
                    };
                    if conn.write_all(&rlen.to_be_bytes()).is_err()
                        || conn.write_all(&resp).is_err()
                    {
                        return;
                    }
                }
            });
    }
}

fn to_record(owner: &str, rec: &Rec) -> Option<Record> {
    let name = Name::from_ascii(format!("{owner}.")).ok()?;
    let data = match rec {
        Rec::A(ip) => RData::A(A(*ip)),
        Rec::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        Rec::Txt(v) => {
            let bytes = v.as_bytes();
            let parts: Vec<&[u8]> = if bytes.is_empty() {
                vec![bytes]
            } else {
                bytes.chunks(255).collect()
            };
            RData::TXT(TXT::from_bytes(parts))
        }
        Rec::Cname(t) => RData::CNAME(CNAME(Name::from_ascii(format!("{t}.")).ok()?)),
    };
    Some(Record::from_rdata(name, 0, data))
}

/// The response to one query message, or `None` for something that isn't a query.
fn answer(packet: &[u8], zone: &Mutex<Zone>, tcp: bool) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    if req.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.authoritative = true;
    resp.queries = req.queries.clone();
    if req.edns.is_some() {
        resp.edns = Some(Edns::new());
    }
    let (Some(q), OpCode::Query, 1) =
        (req.queries.first(), req.metadata.op_code, req.queries.len())
    else {
        resp.metadata.response_code = ResponseCode::NotImp;
        return resp.to_vec().ok();
    };
    let qtype = q.query_type();
    let mut name = key(&q.name().to_ascii());
    let zone = zone.lock().unwrap_or_else(|p| p.into_inner());
    let mut code = ResponseCode::NoError;
    for _ in 0..=MAX_CHAIN {
        let Some(recs) = zone.get(&name) else {
            code = ResponseCode::NXDomain;
            break;
        };
        let wanted: Vec<&Rec> = recs
            .iter()
            .filter(|r| r.rtype() == qtype || qtype == RecordType::ANY)
            .collect();
        if !wanted.is_empty() {
            for r in wanted {
                if let Some(rec) = to_record(&name, r) {
                    resp.answers.push(rec);
                }
            }
            break;
        }
        match recs.iter().find_map(|r| match r {
            Rec::Cname(t) => Some(t.clone()),
            _ => None,
        }) {
            Some(target) => {
                if let Some(rec) = to_record(&name, &Rec::Cname(target.clone())) {
                    resp.answers.push(rec);
                }
                name = target;
            }
            None => break,
        }
    }
    drop(zone);
    resp.metadata.response_code = code;
    let bytes = resp.to_vec().ok()?;
    let limit = if tcp {
        usize::from(u16::MAX)
    } else {
        req.edns
            .as_ref()
            .map(|e| usize::from(e.max_payload()).max(512))
            .unwrap_or(512)
    };
    if bytes.len() > limit {
        let mut t = resp.truncate();
        t.metadata.truncation = true;
        return t.to_vec().ok();
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_cnames_and_distinguish_nxdomain() {
        let (dns, _addr) = TestDns::start().unwrap();
        dns.set_cname("x.test", "y.test");
        dns.set_txt("y.test", ["v"]);
        dns.set_a("z.test", Ipv4Addr::LOCALHOST);
        let ask = |n: &str, t: RecordType| {
            let mut m = Message::query();
            m.add_query(hickory_proto::op::Query::query(
                Name::from_ascii(n).unwrap(),
                t,
            ));
            let out = answer(&m.to_vec().unwrap(), &dns.zone, false).unwrap();
            Message::from_vec(&out).unwrap()
        };
        let r = ask("X.test.", RecordType::TXT);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.answers.len(), 2);
        let r = ask("nope.test.", RecordType::TXT);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        let r = ask("z.test.", RecordType::TXT);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        // Setting an A at a CNAME replaces the CNAME.
        dns.set_a("x.test", Ipv4Addr::LOCALHOST);
        let r = ask("x.test.", RecordType::TXT);
        assert!(r.answers.is_empty());
        dns.set_txt("z.test", Vec::<String>::new());
        let r = ask("z.test.", RecordType::A);
        assert_eq!(r.answers.len(), 1);
        dns.remove("z.test");
        let r = ask("z.test.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn drop_stops_the_server() {
        let (dns, addr) = TestDns::start().unwrap();
        drop(dns);
        // The TCP port is closed once dropped.
        assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
    }
}
