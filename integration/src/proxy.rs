//! A TCP proxy to put between weir and a broker, so a test can cut the network for a
//! while (every open connection dropped, new ones refused) and then restore it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy from a local port to an upstream address.
#[derive(Debug)]
pub struct TcpProxy {
    address: SocketAddr,
    open: Arc<AtomicBool>,
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
        let (generation, _) = watch::channel(0_u64);
        let accept_open = Arc::clone(&open);
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
                tokio::spawn(forward(client, upstream, cut));
            }
        });
        Self {
            address,
            open,
            generation,
        }
    }

    /// The `host:port` clients connect to.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// Drops every connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
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
