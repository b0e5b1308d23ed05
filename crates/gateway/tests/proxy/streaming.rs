//! Bodies are streamed, never held whole (issue 16, item 2): the origin sees the start of a
//! request body while the downstream still holds the rest back, and the downstream sees the
//! start of a response while the origin still holds the rest back. A gateway that waited for
//! the whole body would wait forever here (each side sends the rest only once the other end
//! has seen the start), so these tests need no timing.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::*;

const TOTAL: usize = 64 * 1024 * 1024;
const FIRST: usize = 1024 * 1024;

/// The end of a head in `buf`, if there.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// An origin for one request: it reports (on `seen`) once it has `FIRST / 2` bytes of the
/// request body after the head, then reads to the end of a body of `TOTAL` bytes (decoding
/// chunks if `chunked`) and answers with the number of body bytes it got.
async fn counting_origin(chunked: bool) -> (SocketAddr, oneshot::Receiver<()>, tokio::task::JoinHandle<usize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut tmp = vec![0u8; 256 * 1024];
        let start = loop {
            let n = s.read(&mut tmp).await.unwrap();
            assert!(n > 0, "closed before the head");
            buf.extend_from_slice(&tmp[..n]);
            if let Some(e) = head_end(&buf) {
                break e;
            }
        };
        let mut raw = buf.split_off(start);
        let mut tx = Some(tx);
        // Raw bytes after the head: with chunked framing, the size lines are a few bytes per
        // chunk, so "half of FIRST" is still well inside what the downstream has sent.
        let done = |raw: &[u8]| if chunked { raw.ends_with(b"0\r\n\r\n") } else { raw.len() >= TOTAL };
        while !done(&raw) {
            if raw.len() >= FIRST / 2
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
            let n = s.read(&mut tmp).await.unwrap();
            assert!(n > 0, "the gateway closed after {} body bytes", raw.len());
            raw.extend_from_slice(&tmp[..n]);
        }
        let got = if chunked { dechunk(&raw) } else { raw.len() };
        s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{got}", got.to_string().len()).as_bytes()).await.unwrap();
        got
    });
    (addr, rx, task)
}

/// Data bytes of a complete chunked body.
fn dechunk(mut b: &[u8]) -> usize {
    let mut n = 0;
    loop {
        let p = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&b[..p]).unwrap().split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            return n;
        }
        n += size;
        b = &b[p + 2 + size + 2..];
    }
}

async fn upload_streams(chunked: bool) {
    let (origin, seen, origin_task) = counting_origin(chunked).await;
    let gw = start(parse_apache(&format!("Listen 127.0.0.1:0\nProxyPass / http://{origin}/ timeout=60\n"))).await;
    let framing = if chunked { "Transfer-Encoding: chunked".to_string() } else { format!("Content-Length: {TOTAL}") };
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("POST /up HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{framing}\r\n\r\n").as_bytes()).await.unwrap();
    let piece = vec![7u8; 64 * 1024];
    let chunk = [format!("{:x}\r\n", piece.len()).into_bytes(), piece.clone(), b"\r\n".to_vec()].concat();
    let one = if chunked { &chunk } else { &piece };
    for _ in 0..FIRST / piece.len() {
        s.write_all(one).await.unwrap();
    }
    // The rest only once the origin has seen the start: a gateway holding the body would wait
    // for the rest forever.
    tokio::time::timeout(Duration::from_secs(60), seen).await.expect("the origin saw the start of the body while the rest was held back").unwrap();
    for _ in FIRST / piece.len()..TOTAL / piece.len() {
        s.write_all(one).await.unwrap();
    }
    if chunked {
        s.write_all(b"0\r\n\r\n").await.unwrap();
    }
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut resp)).await.unwrap().unwrap();
    let r = parse_responses(&resp);
    assert_eq!(r[0].status, 200, "{r:?}");
    assert_eq!(origin_task.await.unwrap(), TOTAL);
    assert_eq!(r[0].body_str(), TOTAL.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_with_a_length_reaches_the_origin_before_it_is_all_sent() {
    upload_streams(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_request_body_reaches_the_origin_before_it_is_all_sent() {
    upload_streams(true).await;
}

/// The origin sends `FIRST` bytes of a `TOTAL`-byte response (with a length, or chunked), and
/// the rest only once the downstream has `FIRST / 2` of them.
async fn download_streams(chunked: bool) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = l.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let origin_task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let mut got = Vec::new();
        while head_end(&got).is_none() {
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        let framing = if chunked { "Transfer-Encoding: chunked".to_string() } else { format!("Content-Length: {TOTAL}") };
        s.write_all(format!("HTTP/1.1 200 OK\r\n{framing}\r\n\r\n").as_bytes()).await.unwrap();
        let piece = vec![9u8; 64 * 1024];
        let chunk = [format!("{:x}\r\n", piece.len()).into_bytes(), piece.clone(), b"\r\n".to_vec()].concat();
        let one = if chunked { &chunk } else { &piece };
        for _ in 0..FIRST / piece.len() {
            s.write_all(one).await.unwrap();
        }
        rx.await.expect("the downstream saw the start of the response");
        for _ in FIRST / piece.len()..TOTAL / piece.len() {
            s.write_all(one).await.unwrap();
        }
        if chunked {
            s.write_all(b"0\r\n\r\n").await.unwrap();
        }
    });
    let gw = start(parse_apache(&format!("Listen 127.0.0.1:0\nProxyPass / http://{origin}/ timeout=60\n"))).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /down HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut tmp = vec![0u8; 256 * 1024];
    let mut tx = Some(tx);
    let mut body = 0usize;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut tmp))
            .await
            .expect("the start of the response arrived while the rest was held back")
            .unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&tmp[..n]);
        if let Some(e) = head_end(&got) {
            body = got.len() - e;
            if body >= FIRST / 2
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    }
    assert!(tx.is_none(), "the response ended before the origin sent the rest");
    let r = parse_responses(&got);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body.len(), TOTAL, "framing overhead {body}");
    assert!(r[0].body.iter().all(|&b| b == 9));
    drop(s);
    let _ = origin_task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_a_length_reaches_the_downstream_before_it_is_all_sent() {
    download_streams(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_response_reaches_the_downstream_before_it_is_all_sent() {
    download_streams(true).await;
}
