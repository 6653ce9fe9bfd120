//! A TCP proxy to put between weir and a broker, so a test can cut the network for a
//! while (every open connection dropped, new ones refused) and then restore it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy from a local port to an upstream address.
#[derive(Debug)]
pub struct TcpProxy {
    address: SocketAddr,
    open: Arc<AtomicBool>,
    /// Connections being forwarded right now.
    active: Arc<AtomicUsize>,
    /// Bumped on every cut; connections end when it changes.
    generation: watch::Sender<u64>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("proxy cannot listen: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy has no address: {e}"));
        let open = Arc::new(AtomicBool::new(true));
        let active = Arc::new(AtomicUsize::new(0));
        let (generation, _) = watch::channel(0_u64);
        let accept_open = Arc::clone(&open);
        let accept_active = Arc::clone(&active);
        let accept_generation = generation.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !accept_open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let cut = accept_generation.subscribe();
                let active = Arc::clone(&accept_active);
                tokio::spawn(async move {
                    active.fetch_add(1, Ordering::SeqCst);
                    forward(client, upstream, cut).await;
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            address,
            open,
            active,
            generation,
        }
    }

    /// The `host:port` clients connect to.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Drops every connection and refuses new ones until [`TcpProxy::restore`].
    /// Returns how many connections were open (and are now dropped).
    pub fn cut(&self) -> usize {
        self.open.store(false, Ordering::SeqCst);
        let open = self.active.load(Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
        open
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

async fn forward(mut client: TcpStream, upstream: String, mut cut: watch::Receiver<u64>) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.changed() => {}
    }
}
