//! The origin every contender of `bench/run` proxies to: a small, fast hyper server on
//! 127.0.0.1 so that the proxies, not the origin, are what the benchmark measures.
//!
//! - `GET /big` (or `/big?bytes=N`): N bytes (default 256 MiB) streamed in 64 KiB frames
//!   of one shared buffer, with `Content-Length`.
//! - `POST`/`PUT` with a body: the body is read and thrown away; the answer says how many
//!   bytes arrived (so the harness can check nothing was lost).
//! - anything else: 1 KiB with `Content-Length`.
//!
//! Usage: `bench_origin [ADDR] [THREADS]` (default `127.0.0.1:0`, 1 worker thread). It prints
//! `listening on 127.0.0.1:PORT` on stdout once bound.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const SMALL: usize = 1024;
const BIG: u64 = 256 * 1024 * 1024;
const FRAME: usize = 64 * 1024;

/// `remaining` bytes of `chunk`, repeated; no copies (a `Bytes` clone is a reference count).
struct Repeat {
    chunk: Bytes,
    remaining: u64,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = (self.remaining as usize).min(self.chunk.len());
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

type Out = UnsyncBoxBody<Bytes, Infallible>;

async fn answer(req: Request<Incoming>, small: Bytes, frame: Bytes) -> Result<Response<Out>, Infallible> {
    let path = req.uri().path();
    if path.starts_with("/big") {
        let n = req.uri().query().and_then(|q| q.strip_prefix("bytes=")).and_then(|v| v.parse().ok()).unwrap_or(BIG);
        let mut r = Response::new(Repeat { chunk: frame, remaining: n }.boxed_unsync());
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/octet-stream"));
        return Ok(r);
    }
    let (parts, mut body) = req.into_parts();
    if matches!(parts.method, http::Method::POST | http::Method::PUT) {
        let mut got: u64 = 0;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => got += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        let text = Bytes::from(format!("received {got} bytes\n"));
        return Ok(Response::new(http_body_util::Full::new(text).boxed_unsync()));
    }
    let mut r = Response::new(http_body_util::Full::new(small).boxed_unsync());
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    Ok(r)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().unwrap_or_else(|| "127.0.0.1:0".into()).parse().expect("ADDR like 127.0.0.1:0");
    let threads: usize = args.next().map(|t| t.parse().expect("THREADS is a number")).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let l = TcpListener::bind(addr).await.expect("bind");
        println!("listening on {}", l.local_addr().expect("addr"));
        let small = Bytes::from(vec![b'x'; SMALL]);
        let frame = Bytes::from(vec![b'y'; FRAME]);
        loop {
            let Ok((s, _)) = l.accept().await else { continue };
            let _ = s.set_nodelay(true);
            let (small, frame) = (small.clone(), frame.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| answer(req, small.clone(), frame.clone()));
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
}
