//! A Kafka-protocol broker for tests: `tansu` (its memory engine) on a
//! free IPv4 port, killed when dropped. The binary is `$CARACAL_TANSU`, or
//! `/opt/caracal-tools/bin/tansu`; a missing one fails the test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_TANSU: &str = "/opt/caracal-tools/bin/tansu";

pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
}

impl Broker {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Broker {
        let bin = std::env::var("CARACAL_TANSU").unwrap_or_else(|_| DEFAULT_TANSU.to_string());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting the Kafka broker {bin}: {e}. The ledger writer tests need tansu; set CARACAL_TANSU")
            });
        let broker = Broker {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&broker.addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {url} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// The bootstrap servers string.
    pub fn brokers(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
