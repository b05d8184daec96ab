//! Talking to Redis-protocol servers in tests: a raw connection (bytes in, whole replies
//! out), a real `redis-server` as the oracle, and the Redis tools by name.

use super::{TEST_TOKEN, free_port};
use hydra_resp::{Limits, encode_command, parse_value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis tool (`redis-server`, `redis-cli`, ...); a missing one fails with its name.
pub fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed; install Debian's redis-server and redis-tools (see .ci/run)"
    );
    Command::new(name)
}

/// A raw connection: bytes in, whole replies out.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// A connection logged in with the test token.
    pub fn connect(addr: &str) -> Raw {
        let mut raw = Raw::anonymous(addr);
        assert_eq!(raw.command(&[b"AUTH", TEST_TOKEN.as_bytes()]), b"+OK\r\n");
        raw
    }

    /// A connection that has not logged in.
    pub fn anonymous(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `bytes` and returns the raw bytes of the next `replies` replies.
    pub fn send(&mut self, bytes: &[u8], replies: usize) -> Vec<u8> {
        self.stream.write_all(bytes).expect("write");
        let mut at = 0;
        for _ in 0..replies {
            loop {
                match parse_value(&self.buf[at..], &Limits::default()).expect("valid reply") {
                    Some((_, used)) => {
                        at += used;
                        break;
                    }
                    None => {
                        let mut chunk = [0u8; 65536];
                        let n = self.stream.read(&mut chunk).expect("read");
                        assert!(
                            n > 0,
                            "connection closed; got {:?}",
                            String::from_utf8_lossy(&self.buf)
                        );
                        self.buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
        self.buf.drain(..at).collect()
    }

    pub fn command(&mut self, args: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_command(args, &mut bytes);
        self.send(&bytes, 1)
    }

    pub fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 16];
        matches!(self.stream.read(&mut chunk), Ok(0))
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `redis-server` on a free loopback port, with the test token as its password; killed on
/// drop.
pub struct RedisServer {
    child: Child,
    pub addr: String,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = free_port();
        let child = tool("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                TEST_TOKEN,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { child, addr }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
