//! TCG PC Client crypto-agile event logs (the vTPM's UEFI log and the TDX CCEL): parsing with
//! every length checked, replay into PCRs / RTMRs, a writer for lab and test logs, and the
//! event-by-event PCR↔RTMR cross-check (UEFI 2.10 §38 / EDK2 TDVF mapping).
//!
//! Integers in event logs are little-endian. CCEL uses the same format with SHA-384 digests and
//! "MR index" 1..4 for RTMR0..3 (0 = MRTD).

use sha2::{Digest, Sha256, Sha384};
use thiserror::Error;

/// TPM_ALG_SHA256 / SHA384.
pub const ALG_SHA256: u16 = 0x000b;
pub const ALG_SHA384: u16 = 0x000c;
/// EV_NO_ACTION: logged, never extended.
pub const EV_NO_ACTION: u32 = 0x3;
/// EV_SEPARATOR.
pub const EV_SEPARATOR: u32 = 0x4;

const SPEC_ID_SIGNATURE: &[u8] = b"Spec ID Event03\0";
const STARTUP_LOCALITY: &[u8] = b"StartupLocality\0";
/// Caps parsing work on hostile input; real boot logs have a few hundred events.
pub const MAX_EVENTS: usize = 100_000;

/// Why a log could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventLogError {
    #[error("event log truncated at offset {at}: need {need} bytes, have {have}")]
    Truncated { at: usize, need: usize, have: usize },
    #[error("the first event is not a TCG crypto-agile Spec ID Event03 header")]
    NotCryptoAgile,
    #[error("event {index} uses algorithm {alg:#06x} that the header does not declare")]
    UnknownAlgorithm { index: usize, alg: u16 },
    #[error("more than {MAX_EVENTS} events")]
    TooManyEvents,
}

/// One measured event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// PCR index (TCG log) or MR index (CCEL).
    pub index: u32,
    pub event_type: u32,
    /// `(algorithm, digest)` per bank.
    pub digests: Vec<(u16, Vec<u8>)>,
    pub data: Vec<u8>,
}

impl Event {
    pub fn digest(&self, alg: u16) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, d)| d.as_slice())
    }
}

/// A parsed log: the algorithms its header declares and its events (header excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    pub algorithms: Vec<(u16, u16)>,
    pub events: Vec<Event>,
    /// PCR0's starting locality from a StartupLocality event, when present.
    pub startup_locality: Option<u8>,
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EventLogError> {
        let rest = self.buf.get(self.at..).unwrap_or(&[]);
        let s = rest.get(..n).ok_or(EventLogError::Truncated {
            at: self.at,
            need: n,
            have: rest.len(),
        })?;
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, EventLogError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, EventLogError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn remaining(&self) -> &'a [u8] {
        self.buf.get(self.at..).unwrap_or(&[])
    }
}

/// Parses a crypto-agile log. Trailing 0xFF or zero fill (CCEL log areas) ends the log.
pub fn parse(bytes: &[u8]) -> Result<EventLog, EventLogError> {
    let mut r = Reader { buf: bytes, at: 0 };
    // TCG_PCClientPCREvent (SHA-1 format) carrying the Spec ID event.
    let _pcr = r.u32()?;
    let ty = r.u32()?;
    let _sha1 = r.take(20)?;
    let size = r.u32()? as usize;
    let spec = r.take(size)?;
    if ty != EV_NO_ACTION || !spec.starts_with(SPEC_ID_SIGNATURE) {
        return Err(EventLogError::NotCryptoAgile);
    }
    let mut s = Reader {
        buf: spec,
        at: SPEC_ID_SIGNATURE.len(),
    };
    let _platform_class = s.u32()?;
    let _versions = s.take(4)?;
    let count = s.u32()?;
    if count > 16 {
        return Err(EventLogError::NotCryptoAgile);
    }
    let mut algorithms = Vec::new();
    for _ in 0..count {
        let alg = s.u16()?;
        let len = s.u16()?;
        algorithms.push((alg, len));
    }

    let mut events = Vec::new();
    let mut startup_locality = None;
    loop {
        let rest = r.remaining();
        if rest.len() < 8
            || rest[..8].iter().all(|b| *b == 0xff)
            || rest[..8].iter().all(|b| *b == 0)
        {
            break;
        }
        if events.len() >= MAX_EVENTS {
            return Err(EventLogError::TooManyEvents);
        }
        let index = r.u32()?;
        let event_type = r.u32()?;
        let n = r.u32()?;
        if n as usize > algorithms.len() {
            return Err(EventLogError::Truncated {
                at: r.at,
                need: n as usize,
                have: algorithms.len(),
            });
        }
        let mut digests = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let alg = r.u16()?;
            let len = algorithms
                .iter()
                .find(|(a, _)| *a == alg)
                .map(|(_, l)| *l)
                .ok_or(EventLogError::UnknownAlgorithm {
                    index: events.len(),
                    alg,
                })?;
            digests.push((alg, r.take(usize::from(len))?.to_vec()));
        }
        let size = r.u32()? as usize;
        let data = r.take(size)?.to_vec();
        if event_type == EV_NO_ACTION && data.starts_with(STARTUP_LOCALITY) {
            startup_locality = data.get(STARTUP_LOCALITY.len()).copied();
        }
        events.push(Event {
            index,
            event_type,
            digests,
            data,
        });
    }
    Ok(EventLog {
        algorithms,
        events,
        startup_locality,
    })
}

fn extend(alg: u16, reg: &mut Vec<u8>, digest: &[u8]) {
    match alg {
        ALG_SHA256 => {
            let mut h = Sha256::new();
            h.update(&reg[..]);
            h.update(digest);
            *reg = h.finalize().to_vec();
        }
        ALG_SHA384 => {
            let mut h = Sha384::new();
            h.update(&reg[..]);
            h.update(digest);
            *reg = h.finalize().to_vec();
        }
        _ => {}
    }
}

fn digest_len(alg: u16) -> Option<usize> {
    match alg {
        ALG_SHA256 => Some(32),
        ALG_SHA384 => Some(48),
        _ => None,
    }
}

/// Hash of `data` with a supported algorithm.
pub fn hash(alg: u16, data: &[u8]) -> Option<Vec<u8>> {
    match alg {
        ALG_SHA256 => Some(Sha256::digest(data).to_vec()),
        ALG_SHA384 => Some(Sha384::digest(data).to_vec()),
        _ => None,
    }
}

impl EventLog {
    /// Replays the `alg` bank into registers `0..count` (PCR indices for a TCG log, MR indices
    /// for CCEL). Registers start at zero; PCR0 at its startup locality when logged.
    /// Returns `None` when `alg` is not supported.
    pub fn replay(&self, alg: u16, count: usize) -> Option<Vec<Vec<u8>>> {
        let len = digest_len(alg)?;
        let mut regs = vec![vec![0u8; len]; count];
        if let (Some(loc), Some(pcr0)) = (self.startup_locality, regs.first_mut()) {
            pcr0[len - 1] = loc;
        }
        for e in &self.events {
            if e.event_type == EV_NO_ACTION {
                continue;
            }
            let (Some(reg), Some(d)) = (regs.get_mut(e.index as usize), e.digest(alg)) else {
                continue;
            };
            extend(alg, reg, d);
        }
        Some(regs)
    }

    /// CCEL: RTMR0..3 replayed from MR indices 1..4.
    pub fn replay_rtmrs(&self) -> [[u8; 48]; 4] {
        let regs = self.replay(ALG_SHA384, 5).unwrap_or_default();
        let mut out = [[0u8; 48]; 4];
        for (i, o) in out.iter_mut().enumerate() {
            if let Some(r) = regs.get(i + 1) {
                o.copy_from_slice(r);
            }
        }
        out
    }
}

/// Writes crypto-agile logs (lab responder, tests).
#[derive(Debug, Clone)]
pub struct EventLogWriter {
    algs: Vec<u16>,
    out: Vec<u8>,
}

impl EventLogWriter {
    /// A log whose events carry digests in `algs` (SHA-256 and/or SHA-384).
    pub fn new(algs: &[u16]) -> Self {
        let algs: Vec<u16> = algs
            .iter()
            .copied()
            .filter(|a| digest_len(*a).is_some())
            .collect();
        let mut spec = SPEC_ID_SIGNATURE.to_vec();
        spec.extend_from_slice(&0u32.to_le_bytes()); // platform class: client
        spec.extend_from_slice(&[0, 2, 0, 2]); // spec 2.0, errata 0, uintn size 2 (u64)
        spec.extend_from_slice(&(algs.len() as u32).to_le_bytes());
        for a in &algs {
            spec.extend_from_slice(&a.to_le_bytes());
            spec.extend_from_slice(&(digest_len(*a).unwrap_or(0) as u16).to_le_bytes());
        }
        spec.push(0); // no vendor info
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        out.extend_from_slice(&[0u8; 20]);
        out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        out.extend_from_slice(&spec);
        Self { algs, out }
    }

    /// Appends an event whose digests are the hashes of `data` (the usual case for
    /// EV_SEPARATOR, EFI variables, actions).
    pub fn push(&mut self, index: u32, event_type: u32, data: &[u8]) -> &mut Self {
        let digests: Vec<(u16, Vec<u8>)> = self
            .algs
            .iter()
            .filter_map(|a| Some((*a, hash(*a, data)?)))
            .collect();
        self.push_with_digests(index, event_type, &digests, data)
    }

    /// Appends an event with explicit digests.
    pub fn push_with_digests(
        &mut self,
        index: u32,
        event_type: u32,
        digests: &[(u16, Vec<u8>)],
        data: &[u8],
    ) -> &mut Self {
        self.out.extend_from_slice(&index.to_le_bytes());
        self.out.extend_from_slice(&event_type.to_le_bytes());
        self.out
            .extend_from_slice(&(digests.len() as u32).to_le_bytes());
        for (a, d) in digests {
            self.out.extend_from_slice(&a.to_le_bytes());
            self.out.extend_from_slice(d);
        }
        self.out
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.extend_from_slice(data);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.out.clone()
    }
}

/// Which RTMR a PCR's events go to in TDVF (UEFI 2.10 §38): PCR1,7→RTMR0, PCR2-6→RTMR1,
/// PCR8-15→RTMR2. PCR0 corresponds to MRTD (not an event log), the rest to nothing.
pub fn rtmr_for_pcr(pcr: u32) -> Option<usize> {
    match pcr {
        1 | 7 => Some(0),
        2..=6 => Some(1),
        8..=15 => Some(2),
        _ => None,
    }
}

/// Why the TCG log and the CCEL disagree.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CrossCheckError {
    #[error("RTMR{rtmr}: the TCG log has {tcg} events for its PCRs, the CCEL {ccel}")]
    EventCount {
        rtmr: usize,
        tcg: usize,
        ccel: usize,
    },
    #[error("RTMR{rtmr} event {position}: TCG log (PCR{pcr}, type {tcg_type:#x}) and CCEL (type {ccel_type:#x}) record different events")]
    EventMismatch {
        rtmr: usize,
        position: usize,
        pcr: u32,
        tcg_type: u32,
        ccel_type: u32,
    },
    #[error("RTMR{rtmr} event {position}: the SHA-256 and SHA-384 digests measure different data")]
    DigestMismatch { rtmr: usize, position: usize },
}

/// Compares the vTPM's TCG log with the CCEL event by event, per RTMR0-2: the same events (type
/// and data) in the same order; where the TCG digest is the hash of the event data, the CCEL
/// digest must be the SHA-384 of that same data.
pub fn cross_check(tcg: &EventLog, ccel: &EventLog) -> Result<(), CrossCheckError> {
    for rtmr in 0..3usize {
        let t: Vec<&Event> = tcg
            .events
            .iter()
            .filter(|e| e.event_type != EV_NO_ACTION && rtmr_for_pcr(e.index) == Some(rtmr))
            .collect();
        let c: Vec<&Event> = ccel
            .events
            .iter()
            .filter(|e| e.event_type != EV_NO_ACTION && e.index as usize == rtmr + 1)
            .collect();
        if t.len() != c.len() {
            return Err(CrossCheckError::EventCount {
                rtmr,
                tcg: t.len(),
                ccel: c.len(),
            });
        }
        for (position, (te, ce)) in t.iter().zip(&c).enumerate() {
            if te.event_type != ce.event_type || te.data != ce.data {
                return Err(CrossCheckError::EventMismatch {
                    rtmr,
                    position,
                    pcr: te.index,
                    tcg_type: te.event_type,
                    ccel_type: ce.event_type,
                });
            }
            let data_hashed = te.digest(ALG_SHA256) == Some(&Sha256::digest(&te.data)[..]);
            if data_hashed && ce.digest(ALG_SHA384) != Some(&Sha384::digest(&ce.data)[..]) {
                return Err(CrossCheckError::DigestMismatch { rtmr, position });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_logs_parse_and_replay() {
        let mut w = EventLogWriter::new(&[ALG_SHA256]);
        w.push(0, 0x8, b"crtm").push(7, EV_SEPARATOR, &[0; 4]);
        let log = parse(&w.bytes()).unwrap();
        assert_eq!(log.events.len(), 2);
        let pcrs = log.replay(ALG_SHA256, 24).unwrap();
        let mut pcr7 = vec![0u8; 32];
        extend(ALG_SHA256, &mut pcr7, &Sha256::digest([0u8; 4]));
        assert_eq!(pcrs[7], pcr7);
        // Every strict prefix that cuts an event fails; fill after the log is accepted.
        let bytes = w.bytes();
        let header_len = parse(&bytes[..]).map(|_| ()).ok();
        assert!(header_len.is_some());
        let mut filled = bytes.clone();
        filled.extend_from_slice(&[0xff; 64]);
        assert_eq!(parse(&filled).unwrap().events.len(), 2);
        for n in 0..bytes.len() - 1 {
            let r = parse(&bytes[..n]);
            // A cut exactly at an event boundary is a shorter valid log.
            if let Ok(l) = r {
                assert!(l.events.len() < 2, "prefix {n}");
            }
        }
    }

    #[test]
    fn cross_check_finds_an_inserted_event() {
        let mut tcg = EventLogWriter::new(&[ALG_SHA256]);
        let mut ccel = EventLogWriter::new(&[ALG_SHA384]);
        for (pcr, data) in [(1u32, &b"a"[..]), (4, b"b"), (9, b"c")] {
            tcg.push(pcr, 0x8000_0001, data);
            ccel.push(rtmr_for_pcr(pcr).unwrap() as u32 + 1, 0x8000_0001, data);
        }
        let t = parse(&tcg.bytes()).unwrap();
        let c = parse(&ccel.bytes()).unwrap();
        assert_eq!(cross_check(&t, &c), Ok(()));
        tcg.push(5, 0x8000_0001, b"extra");
        let t = parse(&tcg.bytes()).unwrap();
        assert_eq!(
            cross_check(&t, &c),
            Err(CrossCheckError::EventCount {
                rtmr: 1,
                tcg: 2,
                ccel: 1
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            if let Ok(log) = parse(&bytes) {
                let _ = log.replay(ALG_SHA256, 24);
                let _ = log.replay_rtmrs();
            }
        }

        #[test]
        fn written_events_round_trip(events in proptest::collection::vec(
            (0u32..24, 1u32..0x8000_00ff, proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
            0..20,
        )) {
            let mut w = EventLogWriter::new(&[ALG_SHA256, ALG_SHA384]);
            for (i, t, d) in &events {
                w.push(*i, *t, d);
            }
            let log = parse(&w.bytes()).unwrap();
            proptest::prop_assert_eq!(log.events.len(), events.len());
            for (e, (i, t, d)) in log.events.iter().zip(&events) {
                proptest::prop_assert_eq!((e.index, e.event_type, &e.data), (*i, *t, d));
            }
        }
    }
}
