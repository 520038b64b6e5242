//! A small TCP proxy for network faults the kernel here cannot make (no netem): forward, delay,
//! slow every request (a far or overloaded RPC that still answers), blackhole (accept and never
//! answer) or refuse, switchable at run time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Pass bytes both ways (after the configured delay).
    Forward,
    /// Accept and hold the connection without ever answering.
    Blackhole,
    /// Close every new connection at once.
    Refuse,
}

impl ProxyMode {
    fn to_u8(self) -> u8 {
        match self {
            Self::Forward => 0,
            Self::Blackhole => 1,
            Self::Refuse => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Blackhole,
            2 => Self::Refuse,
            _ => Self::Forward,
        }
    }
}

/// A running proxy in front of `target`; stops when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    latency_ms: Arc<AtomicU64>,
    switch: tokio::sync::watch::Sender<u64>,
    task: JoinHandle<()>,
}

/// Copy `from` to `to` until either ends.
async fn pump(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

/// Copy `from` to `to` until either ends, each chunk passed on `latency` (read when the chunk
/// arrives) after it was read: a delay line, so a request that arrives in several chunks waits
/// the latency once, not once per chunk.
async fn delayed_pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    latency: &AtomicU64,
) {
    let (line, mut out) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let due = tokio::time::Instant::now()
                + Duration::from_millis(latency.load(Ordering::Relaxed));
            if line.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let write = async {
        while let Some((due, chunk)) = out.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

impl TcpProxy {
    /// Listen on a free loopback port and proxy to `target` in `mode`.
    pub async fn start(target: SocketAddr, mode: ProxyMode) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(AtomicU8::new(mode.to_u8()));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let latency_ms = Arc::new(AtomicU64::new(0));
        let (m, d, l) = (mode.clone(), delay_ms.clone(), latency_ms.clone());
        let (switch, _) = tokio::sync::watch::channel(0u64);
        let e = switch.clone();
        let task = tokio::spawn(async move {
            // Held connections of blackhole mode live as long as the proxy.
            let mut held: Vec<TcpStream> = Vec::new();
            while let Ok((inbound, _)) = listener.accept().await {
                match ProxyMode::from_u8(m.load(Ordering::Relaxed)) {
                    ProxyMode::Refuse => drop(inbound),
                    ProxyMode::Blackhole => held.push(inbound),
                    ProxyMode::Forward => {
                        let delay = Duration::from_millis(d.load(Ordering::Relaxed));
                        let mut switched = e.subscribe();
                        let m = m.clone();
                        let latency = l.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let Ok(mut outbound) = TcpStream::connect(target).await else {
                                return;
                            };
                            let mut inbound = inbound;
                            let cut = {
                                let (from_client, to_client) = inbound.split();
                                let (from_node, to_node) = outbound.split();
                                let both = async {
                                    tokio::join!(
                                        delayed_pump(from_client, to_node, &latency),
                                        pump(from_node, to_client),
                                    )
                                };
                                tokio::select! {
                                    _ = both => false,
                                    _ = switched.changed() => true,
                                }
                            };
                            // A switch to blackhole silences open connections too (a client's
                            // pooled keep-alive connection must not slip through); they are
                            // closed at the next switch. Refuse closes them at once.
                            if cut
                                && ProxyMode::from_u8(m.load(Ordering::Relaxed))
                                    == ProxyMode::Blackhole
                            {
                                drop(outbound);
                                let _ = switched.changed().await;
                            }
                        });
                    }
                }
            }
        });
        Ok(Self {
            addr,
            mode,
            delay_ms,
            latency_ms,
            switch,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switch what happens to new connections and to forwarded ones still open: leaving
    /// forward mode blackholes (or, for refuse, closes) them as well.
    pub fn set_mode(&self, mode: ProxyMode) {
        let previous = self.mode.swap(mode.to_u8(), Ordering::Relaxed);
        if previous != mode.to_u8() {
            self.switch
                .send_modify(|epoch| *epoch = epoch.wrapping_add(1));
        }
    }

    /// Delay before each new forwarded connection is connected.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Hold everything a client sends this long before passing it on, on open connections
    /// too: every request over the proxy answers `latency` later (0: at once).
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms.store(
            u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
