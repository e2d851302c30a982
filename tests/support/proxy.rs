//! A fault-injecting TCP proxy between one replica and etcd. `cut()` black-holes traffic in both
//! directions (connections stay open, bytes vanish, as in a network partition); `heal()` restores it.
//! `set_delay()` adds latency to every chunk in both directions (a slow link; chunks keep their
//! order and are not slowed down by each other). Threads stop when the proxy is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub struct FaultProxy {
    pub url: String,
    cut: Arc<AtomicBool>,
    /// One-way latency added to every chunk, in microseconds.
    delay_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

/// What the pump threads of one proxy share.
#[derive(Clone)]
struct Faults {
    cut: Arc<AtomicBool>,
    delay_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target` ("http://127.0.0.1:PORT").
    pub fn start(target: &str) -> FaultProxy {
        Self::start_on("127.0.0.1", target)
    }

    /// Listens on a free port of `host` and forwards to `target`.
    pub fn start_on(host: &str, target: &str) -> FaultProxy {
        let target = target.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind((host, 0)).expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let faults = Faults {
            cut: Arc::new(AtomicBool::new(false)),
            delay_us: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (f, k) = (faults.clone(), conns.clone());
        std::thread::spawn(move || {
            while !f.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((down, _)) => {
                        let _ = down.set_nonblocking(false);
                        let Ok(up) = TcpStream::connect(&target) else {
                            continue;
                        };
                        for st in [&down, &up] {
                            if let Ok(clone) = st.try_clone() {
                                k.lock().unwrap().push(clone);
                            }
                        }
                        pump(
                            down.try_clone().unwrap(),
                            up.try_clone().unwrap(),
                            f.clone(),
                        );
                        pump(up, down, f.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            url,
            cut: faults.cut,
            delay_us: faults.delay_us,
            stop: faults.stop,
            conns,
        }
    }

    /// Black-hole all traffic.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Let traffic through again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Delay every chunk by `d` in each direction from now on (zero: no delay). A chunk read before
    /// the change keeps the delay it was read with.
    pub fn set_delay(&self, d: Duration) {
        self.delay_us.store(d.as_micros() as u64, Ordering::SeqCst);
    }
}

/// Forwards `from` → `to`: a reader thread stamps each chunk with its due time, a writer thread
/// writes it then. Bytes read or due while cut are dropped.
fn pump(mut from: TcpStream, mut to: TcpStream, f: Faults) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let fw = f.clone();
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            if fw.stop.load(Ordering::SeqCst) {
                break;
            }
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if !fw.cut.load(Ordering::SeqCst) && to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = [0u8; 16384];
        loop {
            if f.stop.load(Ordering::SeqCst) {
                break;
            }
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if f.cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    let due =
                        Instant::now() + Duration::from_micros(f.delay_us.load(Ordering::SeqCst));
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        // Dropping `tx` lets the writer flush what is due, then shut the other side down.
    });
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}
