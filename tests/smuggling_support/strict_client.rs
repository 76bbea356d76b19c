//! The strict client: a raw socket to rgate that sends exactly the bytes a case holds and
//! reads responses with `wire::parse_message`, so a response relayed with broken or
//! ambiguous framing is an error, not a guess. Interim (1xx) responses are skipped and kept.
//! Every read is bounded by the client's timeout.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::wire::{parse_message, Message, Role};

/// How reading a response ended, when it did not end with a response.
#[derive(Debug)]
pub enum Failure {
    /// The connection closed or was reset before a complete response (`got` bytes of it).
    Cut { got: usize },
    /// Nothing (more) arrived within the timeout.
    TimedOut { got: usize },
    /// The bytes broke HTTP/1.1's framing rules.
    Protocol(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Cut { got } => write!(f, "connection cut after {got} bytes"),
            Failure::TimedOut { got } => write!(f, "timed out after {got} bytes"),
            Failure::Protocol(e) => write!(f, "protocol violation: {e}"),
        }
    }
}

pub struct StrictClient {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    /// Interim responses read so far.
    pub interim: Vec<Message>,
}

impl StrictClient {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<StrictClient> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(StrictClient {
            stream,
            buf: Vec::new(),
            eof: false,
            interim: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads more; false at EOF or reset.
    fn fill(&mut self) -> Result<bool, Failure> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(Failure::TimedOut {
                    got: self.buf.len(),
                })
            }
            Err(_) => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// Reads the next final response (skipping 1xx other than 101).
    pub fn read_response(&mut self, to_head: bool) -> Result<Message, Failure> {
        for _ in 0..100 {
            let msg = loop {
                match parse_message(&self.buf, Role::Response { to_head }, self.eof) {
                    Ok(Some((msg, used))) => {
                        self.buf.drain(..used);
                        break msg;
                    }
                    Ok(None) if self.eof => {
                        return Err(Failure::Cut {
                            got: self.buf.len(),
                        })
                    }
                    Ok(None) => {
                        self.fill()?;
                    }
                    Err(e) => return Err(Failure::Protocol(e)),
                }
            };
            let status = msg.status();
            if (100..200).contains(&status) && status != 101 {
                self.interim.push(msg);
                continue;
            }
            return Ok(msg);
        }
        Err(Failure::Protocol("more than 100 interim responses".into()))
    }

    /// Whether the peer closes without sending anything more (within the timeout).
    pub fn closes_cleanly(&mut self) -> Result<(), String> {
        while !self.eof {
            match self.fill() {
                Ok(_) => {}
                Err(e) => return Err(format!("expected the connection to close: {e}")),
            }
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "bytes after the response before the close: {:?}",
                String::from_utf8_lossy(&self.buf)
            ))
        }
    }
}
