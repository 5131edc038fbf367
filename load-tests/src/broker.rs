//! The Kafka-protocol broker tests and benchmarks use: `tansu` (in-memory
//! storage), one per test, started on a free port as a child process and
//! killed when dropped. Its path is `CARACAL_TANSU`, or
//! `/opt/caracal-tools/bin/tansu` (where `scripts/services.sh` builds it);
//! a test that needs it fails, saying how to get it, when it is not there.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::faults::FaultProxy;

const DEFAULT_TANSU: &str = "/opt/caracal-tools/bin/tansu";

/// A running broker; killed on drop.
pub struct Broker {
    child: Child,
    /// What clients bootstrap to (the proxy's address, behind one).
    pub brokers: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Broker {
    /// A broker clients reach directly.
    pub async fn start() -> Broker {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        spawn(addr, addr).await
    }

    /// A broker clients reach only through a fault proxy: it advertises
    /// the proxy's address, so every connection goes through it.
    pub async fn behind_proxy() -> (Broker, FaultProxy) {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let proxy = FaultProxy::start(addr).await.expect("fault proxy");
        (spawn(addr, proxy.addr()).await, proxy)
    }
}

async fn spawn(listen: SocketAddr, advertised: SocketAddr) -> Broker {
    let path = std::env::var("CARACAL_TANSU").unwrap_or_else(|_| DEFAULT_TANSU.into());
    let mut child = Command::new(&path)
        .arg("broker")
        .args(["--storage-engine", "memory://tansu/"])
        .args(["--listener-url", &format!("tcp://{listen}")])
        .args(["--advertised-listener-url", &format!("tcp://{advertised}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "the Kafka tests need the tansu broker at {path} ({e}); run scripts/services.sh \
                 (it builds it once into /opt/caracal-tools) or point CARACAL_TANSU at it"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tansu at {path} exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "tansu at {path} did not listen on {listen} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Broker {
        child,
        brokers: advertised.to_string(),
    }
}
