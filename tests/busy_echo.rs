//! The busy-polling (precision mode) drivers, end to end over loopback: handshake with the
//! pinned session key, sequential echoes whose nonces match, a wrong pin refused, and a
//! responder that stops when asked; the same with both ends parking in the kernel between
//! datagrams. No timing assertions.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use locus_prober::busy::{BusyError, BusyTarget};
use locus_prober::SpkiPolicy;
use locus_responder::busy::{serve_busy, serve_parked, BusyReport};
use locus_responder::session_key::SessionKey;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Each test spins two threads; on two cores, running them one at a time keeps them quick.
static SERIAL: Mutex<()> = Mutex::new(());

/// A busy responder on its own thread; its result arrives on a channel, so a responder that
/// ignores `stop` fails the test instead of hanging it.
struct Responder {
    addr: SocketAddr,
    key: Arc<SessionKey>,
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<Result<BusyReport, String>>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start() -> Self {
        Self::start_with(None)
    }

    /// `Some(spin)`: a responder that spins `spin` after each datagram, then parks.
    fn start_with(spin: Option<Duration>) -> Self {
        let key = SessionKey::generate().unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, done) = mpsc::channel();
        let thread = std::thread::spawn({
            let key = key.clone();
            let stop = stop.clone();
            move || {
                let served = match spin {
                    None => serve_busy(socket, &key, &stop),
                    Some(spin) => serve_parked(socket, &key, &stop, spin),
                };
                let _ = tx.send(served.map_err(|e| e.to_string()));
            }
        });
        Self {
            addr,
            key,
            stop,
            done,
            thread: Some(thread),
        }
    }

    fn connect(&self, policy: SpkiPolicy) -> Result<BusyTarget, BusyError> {
        BusyTarget::connect(
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            self.addr,
            policy,
            TIMEOUT,
        )
    }

    fn pin(&self) -> SpkiPolicy {
        SpkiPolicy::Pinned(self.key.spki_der().to_vec())
    }

    fn stop(mut self) -> BusyReport {
        self.stop.store(true, Ordering::Relaxed);
        let report = self
            .done
            .recv_timeout(TIMEOUT)
            .expect("the busy responder did not stop when asked")
            .expect("the busy responder failed");
        self.thread.take().unwrap().join().unwrap();
        report
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn nonce(i: u64) -> [u8; 32] {
    let mut n = [0u8; 32];
    n[..8].copy_from_slice(&i.to_be_bytes());
    n[8..16].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes());
    n
}

#[test]
fn pinned_handshake_then_matching_echoes() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let responder = Responder::start();
    let mut target = responder.connect(responder.pin()).unwrap();
    assert!(target.pinned());
    assert_eq!(target.spki(), responder.key.spki_der());

    const N: u64 = 200;
    let mut arrivals = Vec::new();
    for i in 0..N {
        let sample = target.echo(nonce(i), TIMEOUT).unwrap();
        assert_eq!(sample.seq, i);
        assert_eq!(sample.nonce, nonce(i));
        assert!(!sample.out_of_order);
        arrivals.push(sample.arrival);
    }
    assert_eq!(arrivals, (0..N).collect::<Vec<_>>());
    let c = target.counters();
    assert_eq!((c.sent, c.answered, c.lost, c.violations), (N, N, 0, 0));
    target.close().unwrap();

    let report = responder.stop();
    assert_eq!(report.connections, 1);
    assert_eq!(report.answered, N);
    assert_eq!(report.rejected, 0);
}

#[test]
fn wrong_pin_is_refused_and_the_responder_keeps_serving() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let responder = Responder::start();
    let other = SessionKey::generate().unwrap();
    match responder.connect(SpkiPolicy::Pinned(other.spki_der().to_vec())) {
        Err(BusyError::Handshake { addr, .. }) => assert_eq!(addr, responder.addr),
        Err(e) => panic!("expected a failed handshake, got {e}"),
        Ok(_) => panic!("a responder with another key was accepted"),
    }

    // Trust on first use learns the real key; the responder still answers.
    let mut target = responder.connect(SpkiPolicy::TrustOnFirstUse).unwrap();
    assert!(!target.pinned());
    assert_eq!(target.spki(), responder.key.spki_der());
    let sample = target.echo(nonce(7), TIMEOUT).unwrap();
    assert_eq!(sample.nonce, nonce(7));
    target.close().unwrap();

    let report = responder.stop();
    assert_eq!(report.connections, 2);
    assert_eq!(report.answered, 1);
}

#[test]
fn stops_when_asked_and_closes_its_connections() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let responder = Responder::start();
    let mut target = responder.connect(responder.pin()).unwrap();
    target.echo(nonce(1), TIMEOUT).unwrap();

    let report = responder.stop();
    assert_eq!(report.answered, 1);
    // The responder said goodbye: the next echo finds the connection closed, not just silent.
    match target.echo(nonce(2), TIMEOUT) {
        Err(BusyError::Lost(_)) => {}
        Err(e) => panic!("expected the connection closed by the responder, got {e}"),
        Ok(s) => panic!("a stopped responder answered {s:?}"),
    }
}

/// Both ends parked (spin zero: every read sleeps in the kernel) still echo every challenge in
/// order, and a parked responder still stops when asked.
#[test]
fn parked_drivers_echo_and_stop() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for spin in [Duration::ZERO, Duration::from_micros(200)] {
        let responder = Responder::start_with(Some(spin));
        let mut target = responder.connect(responder.pin()).unwrap();
        target.set_spin(spin);
        const N: u64 = 100;
        for i in 0..N {
            let sample = target.echo(nonce(i), TIMEOUT).unwrap();
            assert_eq!((sample.seq, sample.nonce), (i, nonce(i)), "spin {spin:?}");
        }
        let c = target.counters();
        assert_eq!((c.sent, c.answered, c.lost, c.violations), (N, N, 0, 0));
        target.close().unwrap();
        let report = responder.stop();
        assert_eq!(
            (report.connections, report.answered),
            (1, N),
            "spin {spin:?}"
        );
    }
}
