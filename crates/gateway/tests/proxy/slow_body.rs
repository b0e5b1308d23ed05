//! Request bodies and their minimum rate (issue 16, item 6): `RequestReadTimeout body=T,MinRate=R`
//! as Apache's mod_reqtimeout reads it. A body that trickles below the rate is cut with `408`
//! and never reaches the origin whole; a steady body above the rate goes through however long
//! it takes. Small settings (1 s) keep these tests short; the assertions are on what arrived,
//! not on durations.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::origin::Origin;
use crate::*;

fn conf(o: &Origin, reqtimeout: &str) -> String {
    format!("Listen 127.0.0.1:0\nServerName gw.test\nRequestReadTimeout {reqtimeout}\nProxyPass / http://{}/ timeout=60\n", o.addr)
}

/// Send `head`, then `pieces` one every `every`, while reading the response; stop sending when
/// the gateway answers or closes. Returns the response bytes and how many pieces went out.
async fn paced(addr: SocketAddr, head: &str, pieces: Vec<Vec<u8>>, every: Duration) -> (Vec<u8>, usize) {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(head.as_bytes()).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut got)).await;
        got
    });
    let mut sent = 0;
    for p in pieces {
        if reader.is_finished() {
            break;
        }
        tokio::time::sleep(every).await;
        if wr.write_all(&p).await.is_err() {
            break;
        }
        sent += 1;
    }
    let got = reader.await.unwrap();
    (got, sent)
}

fn status(resp: &[u8]) -> String {
    String::from_utf8_lossy(&resp[..resp.len().min(12)]).into_owned()
}

/// 1 byte every 100 ms (10 B/s) against `body=1,MinRate=1000`: cut after about a second, for a
/// small body (read into a buffer), a large one (spliced socket to socket) and a chunked one.
#[tokio::test]
async fn a_body_trickling_below_the_minimum_rate_is_cut_with_408() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&conf(&o, "body=1,MinRate=1000"))).await;
    let cases = [
        ("small", "Content-Length: 600\r\n"),
        // 1 MiB: over the splice threshold, so the body goes through splice(2).
        ("large", "Content-Length: 1048576\r\n"),
        ("chunked", "Transfer-Encoding: chunked\r\n"),
    ];
    for (name, framing) in cases {
        let head = format!("POST /upload HTTP/1.1\r\nHost: a\r\nX-Test-Id: {name}\r\n{framing}\r\n");
        let mut pieces: Vec<Vec<u8>> = (0..600).map(|_| b"x".to_vec()).collect();
        if name == "chunked" {
            pieces.insert(0, b"258\r\n".to_vec());
        }
        let (resp, sent) = paced(gw.addr, &head, pieces, Duration::from_millis(100)).await;
        assert!(status(&resp).starts_with("HTTP/1.1 408"), "{name}: {:?}", String::from_utf8_lossy(&resp));
        assert!(sent < 600, "{name}: the whole body went out before the cut");
        assert!(o.by_id(name).is_empty(), "{name}: the origin got the request whole");
    }
}

/// 1,000 B/s, ten times `MinRate=100`, for about 5 s against `body=2`: well past the initial
/// timeout, never cut (the deadline moves 1 s per 100 bytes, ten times faster than the clock).
/// Small, spliced and chunked.
#[tokio::test]
async fn a_steady_body_above_the_minimum_rate_outlasts_the_initial_timeout() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&conf(&o, "body=2,MinRate=100"))).await;
    // (name, bytes per piece, pieces): 100 B every 100 ms, and 100 KiB every 100 ms.
    for (name, piece, n) in [("small", 100usize, 50usize), ("large", 100 * 1024, 50), ("chunked", 100, 50)] {
        let body = crate::origin::pattern(piece * n);
        let (framing, pieces): (String, Vec<Vec<u8>>) = if name == "chunked" {
            let mut p: Vec<Vec<u8>> = body.chunks(piece).map(|c| [format!("{:x}\r\n", c.len()).as_bytes(), c, b"\r\n"].concat()).collect();
            p.push(b"0\r\n\r\n".to_vec());
            ("Transfer-Encoding: chunked\r\n".into(), p)
        } else {
            (format!("Content-Length: {}\r\n", body.len()), body.chunks(piece).map(<[u8]>::to_vec).collect())
        };
        let head = format!("POST /upload HTTP/1.1\r\nHost: a\r\nX-Test-Id: {name}\r\nConnection: close\r\n{framing}\r\n");
        let count = pieces.len();
        let (resp, sent) = paced(gw.addr, &head, pieces, Duration::from_millis(100)).await;
        assert_eq!(sent, count, "{name}: the gateway stopped reading: {:?}", String::from_utf8_lossy(&resp[..resp.len().min(200)]));
        assert!(status(&resp).starts_with("HTTP/1.1 200"), "{name}: {:?}", String::from_utf8_lossy(&resp[..resp.len().min(200)]));
        let seen = o.by_id(name);
        assert_eq!(seen.len(), 1, "{name}");
        assert!(seen[0].body == body, "{name}: the origin got {} bytes, not the {} sent", seen[0].body.len(), body.len());
    }
}

/// `body=0` turns the deadline off: the same trickle is only bound by `Timeout` (a stall).
#[tokio::test]
async fn body_zero_turns_the_minimum_rate_off() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&conf(&o, "body=0"))).await;
    let head = "POST /upload HTTP/1.1\r\nHost: a\r\nX-Test-Id: off\r\nConnection: close\r\nContent-Length: 20\r\n\r\n";
    let pieces: Vec<Vec<u8>> = (0..20).map(|_| b"x".to_vec()).collect();
    let (resp, sent) = paced(gw.addr, head, pieces, Duration::from_millis(100)).await;
    assert_eq!(sent, 20);
    assert!(status(&resp).starts_with("HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&resp));
    assert_eq!(o.by_id("off")[0].body, vec![b'x'; 20]);
}

/// A request body fed from a channel, one piece per message (the HTTP/2 client's side).
struct ChanBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// POST `pieces` over HTTP/2 with prior knowledge (h2c), one every `every`, as `X-Test-Id: id`:
/// the response status, and how many pieces went out before it.
async fn h2_paced(addr: SocketAddr, id: &str, pieces: Vec<Vec<u8>>, every: Duration) -> (u16, usize) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp)).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
    let req = http::Request::post(format!("http://{addr}/upload")).header("x-test-id", id).body(ChanBody(rx)).unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let feeder = tokio::spawn(async move {
        for p in pieces {
            tokio::time::sleep(every).await;
            if tx.send(bytes::Bytes::from(p)).await.is_err() {
                break;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    });
    let resp = tokio::time::timeout(Duration::from_secs(60), send.send_request(req)).await.expect("an answer").expect("a response");
    let status = resp.status().as_u16();
    let n = sent.load(std::sync::atomic::Ordering::Acquire);
    feeder.abort();
    conn.abort();
    (status, n)
}

/// HTTP/2 streams, whose bodies hyper reads, have the same deadline: a trickle is cut with
/// `408` and never reaches the origin whole; a steady body past the initial timeout is not.
#[tokio::test]
async fn http2_bodies_have_the_same_minimum_rate() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&conf(&o, "body=2,MinRate=100"))).await;
    let (status, sent) = h2_paced(gw.addr, "h2-trickle", (0..600).map(|_| b"x".to_vec()).collect(), Duration::from_millis(100)).await;
    assert_eq!(status, 408, "after {sent} pieces");
    assert!(sent < 600);
    assert!(o.by_id("h2-trickle").is_empty(), "the origin got the request whole");
    let body = crate::origin::pattern(100 * 50);
    let (status, sent) = h2_paced(gw.addr, "h2-steady", body.chunks(100).map(<[u8]>::to_vec).collect(), Duration::from_millis(100)).await;
    assert_eq!((status, sent), (200, 50));
    let seen = o.by_id("h2-steady");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].body == body, "the origin got {} bytes", seen[0].body.len());
}
