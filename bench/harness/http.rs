//! A minimal blocking HTTP/1.1 client: keep-alive, Content-Length bodies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One keep-alive connection.
pub(crate) struct Http {
    pub(crate) reader: BufReader<TcpStream>,
}

impl Http {
    pub(crate) fn connect(addr: SocketAddr) -> std::io::Result<Http> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Http {
            reader: BufReader::with_capacity(64 * 1024, stream),
        })
    }

    /// GETs `path`; returns the status and the body.
    pub(crate) fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut body = Vec::new();
        match length {
            Some(length) => {
                body.resize(length, 0);
                self.reader.read_exact(&mut body)?;
            }
            None => {
                self.reader.read_to_end(&mut body)?;
            }
        }
        Ok((status, body))
    }
}

/// One GET on a fresh connection.
pub(crate) fn get_once(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    Http::connect(addr)?.get(path)
}

/// `total` GETs of `/metrics` over `connections` keep-alive connections; returns the elapsed
/// time. Every answer must be 200.
pub(crate) fn scrape_many(
    addr: SocketAddr,
    total: u64,
    connections: usize,
) -> Result<Duration, String> {
    let next = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(|| -> Result<(), String> {
                    let mut http = Http::connect(addr).map_err(|e| e.to_string())?;
                    while next.fetch_add(1, Ordering::Relaxed) < total {
                        match http.get("/metrics") {
                            Ok((200, _)) => {}
                            Ok((status, _)) => return Err(format!("/metrics answered {status}")),
                            Err(error) => return Err(error.to_string()),
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("scraper thread"))
    })?;
    Ok(started.elapsed())
}
