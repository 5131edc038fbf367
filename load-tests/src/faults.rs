//! A TCP fault proxy for tests: put it between a client and a server
//! (Kafka, Redis, PostgreSQL, …) and break the network between them at
//! run time.
//!
//! - [`Fault::Pass`]: bytes flow both ways.
//! - [`Fault::Blackhole`]: a network partition. Connections are accepted
//!   and held, but no byte moves either way (nothing is read, so the
//!   senders' buffers fill); new connections are not connected upstream
//!   yet. Back to `Pass`, held connections resume where they stopped, as
//!   TCP would once a partition heals, unless an end gave up meanwhile.
//! - [`Fault::Reset`]: every connection is closed with a reset, existing
//!   and new.
//!
//! The proxy knows nothing of the protocol. A server that advertises its
//! own address (Kafka) must be told to advertise the proxy's instead.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Blackhole,
    Reset,
}

/// A running proxy; dropping it closes every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards to `target`, passing.
    pub async fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::Pass);
        let accept = tokio::spawn(accept(listener, target, fault.subscribe()));
        Ok(Self {
            addr,
            fault,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches what happens to the traffic, for every connection at once.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Connections see the sender gone and close.
        self.fault.send_replace(Fault::Reset);
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, fault: watch::Receiver<Fault>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *fault.borrow() == Fault::Reset {
            reset(&client);
            continue;
        }
        tokio::spawn(serve(client, target, fault.clone()));
    }
}

/// Makes dropping `stream` send a reset instead of a FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn serve(client: TcpStream, target: SocketAddr, mut fault: watch::Receiver<Fault>) {
    if !passing(&mut fault).await {
        return reset(&client);
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return reset(&client);
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let (client_r, client_w) = client.into_split();
    let (upstream_r, upstream_w) = upstream.into_split();
    tokio::join!(
        pipe(client_r, upstream_w, fault.clone()),
        pipe(upstream_r, client_w, fault),
    );
}

/// Copies `from` to `to` while passing; holds while blackholed; on a
/// reset, makes `from`'s socket close with a reset.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut fault: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        if !passing(&mut fault).await {
            return reset(from.as_ref());
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    // The other side's read sees the end too.
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            () = until_reset(&mut fault) => return reset(from.as_ref()),
        };
        // Bytes read just as a blackhole began wait for it to end.
        if !passing(&mut fault).await {
            return reset(from.as_ref());
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits while blackholed: true once passing, false on a reset (or when
/// the proxy is gone).
async fn passing(fault: &mut watch::Receiver<Fault>) -> bool {
    loop {
        match *fault.borrow_and_update() {
            Fault::Pass => return true,
            Fault::Reset => return false,
            Fault::Blackhole => {}
        }
        if fault.changed().await.is_err() {
            return false;
        }
    }
}

async fn until_reset(fault: &mut watch::Receiver<Fault>) {
    loop {
        if *fault.borrow_and_update() == Fault::Reset {
            return;
        }
        if fault.changed().await.is_err() {
            return;
        }
    }
}

/// `url` (`scheme://[user@]host:port/path`) with its host and port
/// replaced by `proxy`: the same server, reached through a fault proxy.
pub fn url_through(url: &str, proxy: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = auth
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{proxy}/{path}")
}

/// The server `url` names, as an address a fault proxy can forward to
/// (`localhost` as 127.0.0.1, `default_port` when the URL names none).
pub fn server_of(url: &str, default_port: u16) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let auth = rest.split_once('/').map_or(rest, |(a, _)| a);
    let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    let host = host.replace("localhost", "127.0.0.1");
    let host = if host.contains(':') {
        host
    } else {
        format!("{host}:{default_port}")
    };
    host.parse().expect("the test server as ip:port")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut got = vec![0; msg.len()];
        s.read_exact(&mut got).await?;
        Ok(got)
    }

    #[tokio::test]
    async fn passes_holds_resumes_and_resets() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"one").await.unwrap(), b"one");

        proxy.set(Fault::Blackhole);
        let held = tokio::time::timeout(Duration::from_millis(200), round_trip(&mut s, b"two"));
        assert!(held.await.is_err(), "nothing moves while blackholed");
        // A new connection is accepted and held too.
        let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
        late.write_all(b"late").await.unwrap();

        proxy.set(Fault::Pass);
        let mut got = [0; 3];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"two", "held bytes resume in order");
        let mut got = [0; 4];
        late.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"late");

        proxy.set(Fault::Reset);
        let mut buf = [0; 1];
        let closed = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), round_trip(&mut fresh, b"x"))
            .await
            .expect("closed promptly");
        assert!(r.is_err(), "new connections are reset");

        proxy.set(Fault::Pass);
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"three").await.unwrap(), b"three");
    }
}
