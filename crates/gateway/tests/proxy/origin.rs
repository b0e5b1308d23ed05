//! A real origin on 127.0.0.1:0 that records the raw bytes of every request it gets and answers
//! by path, so tests can see exactly what crossed the gateway.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
pub struct Received {
    pub raw_head: String,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    #[allow(dead_code)]
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

#[derive(Clone)]
pub struct Origin {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Received>>>,
}

impl Origin {
    pub async fn start() -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let lg = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { continue };
                // Heads and bodies go in separate writes: without this, Nagle holds each body
                // for the gateway's delayed ACK (40 ms).
                let _ = s.set_nodelay(true);
                let lg = lg.clone();
                tokio::spawn(async move {
                    let _ = conn(s, lg).await;
                });
            }
        });
        Origin { addr, log }
    }

    pub fn all(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// Requests carrying `X-Test-Id: id`.
    pub fn by_id(&self, id: &str) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.header("x-test-id") == Some(id)).collect()
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut tmp = [0u8; 16384];
    let n = s.read(&mut tmp).await?;
    buf.extend_from_slice(&tmp[..n]);
    Ok(n > 0)
}

async fn conn(mut s: TcpStream, log: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if !read_more(&mut s, &mut buf).await? {
                return Ok(());
            }
        };
        let raw_head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut hs = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut hs);
        if req.parse(&buf[..head_end]).is_err() {
            s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
            return Ok(());
        }
        let method = req.method.unwrap_or("").to_string();
        let target = req.path.unwrap_or("").to_string();
        let headers: Vec<(String, String)> = req.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        buf.drain(..head_end);
        let chunked = get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let mut answered = false;
        if let Some(i) = target.find("/early/") {
            // `/early/NNN`: answer NNN before reading the body, and close with the body unread
            // (as an origin refusing a push does: 401, 403, 413); the kernel resets the
            // connection under the gateway still sending. `/early/NNN/read`: answer whole,
            // then read the body (as `git-receive-pack` may end its answer before the last
            // bytes of the request are in).
            let status = target[i + 7..i + 10].parse::<u16>().unwrap_or(500);
            let read = target[i + 10..].starts_with("/read");
            let text = format!("early {status}");
            let close = if read { "" } else { "connection: close\r\n" };
            let answer = if read {
                // Chunked, as `git-receive-pack`'s answer through the server is.
                format!("HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{text}\r\n0\r\n\r\n", text.len())
            } else {
                format!("HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{close}\r\n{text}", text.len())
            };
            s.write_all(answer.as_bytes()).await?;
            if !read {
                log.lock().unwrap().push(Received { raw_head, method, target: target.clone(), headers: headers.clone(), body: Vec::new(), chunked });
                return Ok(());
            }
            answered = true;
        }
        let mut body = Vec::new();
        let sink = target.contains("/sink");
        let mut sunk: u64 = 0;
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    if !read_more(&mut s, &mut buf).await? {
                        return Ok(());
                    }
                };
                let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap_or(0);
                buf.drain(..line_end + 2);
                if size == 0 {
                    // trailers
                    loop {
                        let e = loop {
                            if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                                break p;
                            }
                            if !read_more(&mut s, &mut buf).await? {
                                return Ok(());
                            }
                        };
                        buf.drain(..e + 2);
                        if e == 0 {
                            break;
                        }
                    }
                    break;
                }
                while buf.len() < size + 2 {
                    if !read_more(&mut s, &mut buf).await? {
                        return Ok(());
                    }
                }
                if &buf[size..size + 2] != b"\r\n" {
                    // Strict, so a gateway that frames chunks wrongly fails its tests.
                    s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 19\r\nconnection: close\r\n\r\nbad chunk framing\r\n").await?;
                    return Ok(());
                }
                if sink {
                    sunk += size as u64;
                } else {
                    body.extend_from_slice(&buf[..size]);
                }
                buf.drain(..size + 2);
            }
        } else if let Some(cl) = get("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
            if get("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
                s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            while buf.len() < cl {
                if !read_more(&mut s, &mut buf).await? {
                    return Ok(());
                }
            }
            body = buf.drain(..cl).collect();
        }
        let rec = Received { raw_head, method: method.clone(), target: target.clone(), headers: headers.clone(), body: body.clone(), chunked };
        log.lock().unwrap().push(rec);
        if answered {
            continue;
        }
        let host = get("host").unwrap_or_default();
        // Answer by path.
        if target.contains("/close") {
            return Ok(());
        }
        if target.contains("/stall-mid-body") {
            // A close-delimited body that stops coming, then the origin goes quiet.
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npartial-").await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            return Ok(());
        }
        if target.contains("/slow") {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        if target.contains("/badheader") {
            s.write_all(b"HTTP/1.1 200 OK\r\nX Bad Header\r\ncontent-length: 2\r\n\r\nok").await?;
            return Ok(());
        }
        if target.contains("/ws") && get("upgrade").is_some() {
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n").await?;
            // Echo whatever comes, prefixed, until close.
            let mut tmp = [0u8; 4096];
            if !buf.is_empty() {
                let b = std::mem::take(&mut buf);
                s.write_all(b"echo:").await?;
                s.write_all(&b).await?;
            }
            loop {
                let n = s.read(&mut tmp).await?;
                if n == 0 {
                    return Ok(());
                }
                s.write_all(b"echo:").await?;
                s.write_all(&tmp[..n]).await?;
            }
        }
        let mut extra = String::new();
        let mut status = 200u16;
        let mut resp_body: Vec<u8> = format!("ok {method} {target} len={}", if sink { sunk as usize } else { body.len() }).into_bytes();
        if target.contains("/eof") {
            // A close-delimited response: no Content-Length, no chunking.
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n").await?;
            s.write_all(&vec![b'e'; 100_000]).await?;
            return Ok(());
        }
        if let Some(i) = target.find("/status/") {
            status = target[i + 8..i + 11].parse().unwrap_or(500);
        }
        if target.contains("/redirect") {
            status = 302;
            let to = target.split("to=").nth(1).unwrap_or("/").replace("%3A", ":").replace("%2F", "/");
            extra.push_str(&format!("location: {to}\r\ncontent-location: {to}\r\n"));
        }
        if target.contains("/cookie") {
            extra.push_str("set-cookie: s=1; Path=/internal/x; Domain=backend.local; HttpOnly\r\nset-cookie: t=2; path=/other\r\n");
        }
        if target.contains("/hop") {
            extra.push_str("connection: x-private\r\nx-private: secret\r\nkeep-alive: timeout=5\r\n");
        }
        if let Some(spec) = target.split("/chunked-big/").nth(1) {
            // `/chunked-big/TOTAL/CHUNK`: TOTAL bytes of `pattern` in chunks of CHUNK, the first
            // with an extension; each size line goes out before its data, on its own.
            let mut nums = spec.split(['/', '?']).map(|n| n.parse::<usize>().unwrap_or(1));
            let (total, size) = (nums.next().unwrap_or(0), nums.next().unwrap_or(1).max(1));
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n").await?;
            let data = pattern(total);
            for (i, piece) in data.chunks(size).enumerate() {
                let ext = if i == 0 { ";name=value" } else { "" };
                s.write_all(format!("{:x}{ext}\r\n", piece.len()).as_bytes()).await?;
                tokio::time::sleep(Duration::from_millis(2)).await;
                s.write_all(piece).await?;
                s.write_all(b"\r\n").await?;
            }
            s.write_all(b"0\r\nx-trailer: t\r\n\r\n").await?;
            continue;
        }
        let big = target.contains("/big");
        if big {
            let n: usize = target.split("/big/").nth(1).and_then(|s| s.split(['?', '/']).next()).and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
            resp_body = vec![b'x'; n];
        }
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-origin-saw-host: {host}\r\nserver: test-origin\r\n{extra}\r\n",
            resp_body.len()
        );
        s.write_all(head.as_bytes()).await?;
        if method != "HEAD" {
            s.write_all(&resp_body).await?;
        }
        if get("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            return Ok(());
        }
    }
}

/// Bytes that show a shift or a swap: `i % 251`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
