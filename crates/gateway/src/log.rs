//! Access log in Apache's `LogFormat` language (the `%` codes people use; `combined` by
//! default) or JSON lines; written when a response body is finished, with the bytes sent.

use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderName;

use crate::config::{LogConfig, LogDest};

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Lit(String),
    RemoteHost,
    Ident,
    User,
    Time,
    RequestLine,
    FinalStatus,
    Status,
    BytesClf,
    Bytes,
    BytesOut,
    BytesIn,
    Micros,
    Secs,
    Millis,
    ReqHeader(usize),
    RespHeader(usize),
    ServerName,
    Port,
    Method,
    UrlPath,
    Query,
    Protocol,
    ConnStatus,
    Pid,
}

/// A parsed LogFormat: its tokens, then the request and the response header names it reads.
type Format = (Vec<Tok>, Vec<HeaderName>, Vec<HeaderName>);

/// Parse a LogFormat string; returns the tokens and the header names it reads.
fn parse_format(f: &str) -> Result<Format, String> {
    let mut toks = Vec::new();
    let mut req_h = Vec::new();
    let mut resp_h = Vec::new();
    let mut lit = String::new();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            lit.push(c);
            continue;
        }
        // Modifiers: `>` `<` and status conditions like `!200,304` are accepted and ignored.
        let mut arg = None;
        loop {
            match chars.peek() {
                Some('>') | Some('<') | Some('!') | Some(',') => {
                    chars.next();
                }
                Some(c) if c.is_ascii_digit() => {
                    chars.next();
                }
                Some('{') => {
                    chars.next();
                    let mut a = String::new();
                    for c in chars.by_ref() {
                        if c == '}' {
                            break;
                        }
                        a.push(c);
                    }
                    arg = Some(a);
                }
                _ => break,
            }
        }
        let Some(code) = chars.next() else { return Err("format ends with a lone '%'".into()) };
        if code == '%' {
            lit.push('%');
            continue;
        }
        if !lit.is_empty() {
            toks.push(Tok::Lit(std::mem::take(&mut lit)));
        }
        let t = match code {
            'h' | 'a' => Tok::RemoteHost,
            'l' => Tok::Ident,
            'u' => Tok::User,
            't' => Tok::Time,
            'r' => Tok::RequestLine,
            's' => Tok::FinalStatus,
            'b' => Tok::BytesClf,
            'B' => Tok::Bytes,
            'O' => Tok::BytesOut,
            'I' => Tok::BytesIn,
            'D' => Tok::Micros,
            'T' => Tok::Secs,
            'v' | 'V' => Tok::ServerName,
            'p' => Tok::Port,
            'm' => Tok::Method,
            'U' => Tok::UrlPath,
            'q' => Tok::Query,
            'H' => Tok::Protocol,
            'X' => Tok::ConnStatus,
            'P' => Tok::Pid,
            'i' | 'o' => {
                let name = arg.clone().ok_or_else(|| format!("%{code} needs a header name, like %{{User-Agent}}{code}"))?;
                let hn = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("'{name}' is not a header name"))?;
                if code == 'i' {
                    req_h.push(hn);
                    Tok::ReqHeader(req_h.len() - 1)
                } else {
                    resp_h.push(hn);
                    Tok::RespHeader(resp_h.len() - 1)
                }
            }
            'M' if arg.as_deref() == Some("ms") => Tok::Millis,
            other => return Err(format!("LogFormat code %{other} is not supported")),
        };
        let _ = Tok::Status;
        toks.push(t);
    }
    if !lit.is_empty() {
        toks.push(Tok::Lit(lit));
    }
    Ok((toks, req_h, resp_h))
}

/// The access log sink.
pub struct AccessLog {
    toks: Vec<Tok>,
    req_h: Vec<HeaderName>,
    resp_h: Vec<HeaderName>,
    json: bool,
    out: Option<Arc<Sink>>,
}

/// Lines are gathered in memory and written by whole buffers: one `write` per request was the
/// largest syscall cost on the proxy path after the sockets themselves (nginx's
/// `access_log … buffer= flush=`, Apache's `BufferedLogs On`). Only the writer thread touches
/// the file: a full buffer is handed to it through a bounded queue, so a slow disk never blocks
/// a request's worker; when the queue is full the buffer's lines are dropped and counted
/// (`trove_gateway_access_log_dropped_lines_total`). The writer also takes what has gathered
/// every `FLUSH_EVERY`, on `flush()` (shutdown) and when the log is dropped (reload), so a line
/// appears at most `FLUSH_EVERY` late.
struct Sink {
    buf: Mutex<Vec<u8>>,
    queue: std::sync::mpsc::SyncSender<ToWriter>,
}

enum ToWriter {
    Lines(Vec<u8>),
    /// Write everything gathered so far, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
}

const FLUSH_BYTES: usize = 32 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Full buffers the writer may be behind by (2 MiB) before lines are dropped.
const QUEUE_BUFFERS: usize = 64;

/// Access-log lines dropped because the writer could not keep up, since the process started.
pub static DROPPED_LINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Sink {
    fn take(&self) -> Option<Vec<u8>> {
        match self.buf.lock() {
            Ok(mut b) if !b.is_empty() => Some(std::mem::replace(&mut *b, Vec::with_capacity(FLUSH_BYTES + 1024))),
            _ => None,
        }
    }

    /// Hands a full buffer to the writer without waiting; drops it (counted) when the writer
    /// is behind.
    fn hand_over(&self) {
        let Some(taken) = self.take() else { return };
        if let Err(std::sync::mpsc::TrySendError::Full(ToWriter::Lines(lost)) | std::sync::mpsc::TrySendError::Disconnected(ToWriter::Lines(lost))) =
            self.queue.try_send(ToWriter::Lines(taken))
        {
            let lines = lost.iter().filter(|&&c| c == b'\n').count() as u64;
            DROPPED_LINES.fetch_add(lines, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Writes everything gathered so far and waits until it is written (shutdown, reload).
    fn flush(&self) {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if self.queue.send(ToWriter::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(10));
        }
    }
}

/// The writer thread: the only one that writes the file. It holds the sink weakly, so it ends
/// when the log is dropped.
fn writer(sink: std::sync::Weak<Sink>, queue: std::sync::mpsc::Receiver<ToWriter>, mut out: Box<dyn Write + Send>) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        match queue.recv_timeout(FLUSH_EVERY) {
            Ok(ToWriter::Lines(b)) => {
                let _ = out.write_all(&b);
                let _ = out.flush();
            }
            Ok(ToWriter::Flush(ack)) => {
                if let Some(b) = sink.upgrade().and_then(|s| s.take()) {
                    let _ = out.write_all(&b);
                }
                let _ = out.flush();
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => match sink.upgrade() {
                Some(s) => {
                    if let Some(b) = s.take() {
                        let _ = out.write_all(&b);
                        let _ = out.flush();
                    }
                }
                None => return,
            },
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One request's facts for the log line. Made for every request, so it holds no text of its
/// own: the method and target are the request's (a clone shares their bytes), names from the
/// configuration are shared per worker thread ([`shared`]).
#[derive(Debug, Default)]
pub struct Entry {
    pub peer: Option<IpAddr>,
    pub port: u16,
    pub time: Option<SystemTime>,
    pub elapsed: Duration,
    pub method: http::Method,
    /// The request target as received.
    pub uri: http::Uri,
    pub version: &'static str,
    pub status: u16,
    pub bytes: u64,
    pub header_bytes: u64,
    pub server_name: Arc<str>,
    /// The `%{…}i` headers' values (shared with the request, not copied).
    pub req_vals: Vec<Option<http::HeaderValue>>,
    /// The `%{…}o` headers' values.
    pub resp_vals: Vec<Option<http::HeaderValue>>,
    pub route: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
}

fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_09 => "HTTP/0.9",
        _ => "HTTP/1.1",
    }
}

/// `s` as a shared string: names from the configuration (server name, route, origin URL) go
/// into every request's [`Entry`], so each worker thread keeps the last few it was given and
/// hands out a reference count instead of a copy.
pub fn shared(s: &str) -> Arc<str> {
    const SLOTS: usize = 8;
    thread_local! {
        static NAMES: std::cell::RefCell<([Option<Arc<str>>; SLOTS], usize)> = const { std::cell::RefCell::new(([const { None }; SLOTS], 0)) };
    }
    NAMES.with(|n| {
        let (names, next) = &mut *n.borrow_mut();
        if let Some(found) = names.iter().flatten().find(|n| &***n == s) {
            return found.clone();
        }
        let made: Arc<str> = Arc::from(s);
        names[*next] = Some(made.clone());
        *next = (*next + 1) % SLOTS;
        made
    })
}

impl Entry {
    pub fn start(log: &AccessLog, req: &http::request::Parts, peer: IpAddr, port: u16, server_name: &str, time: SystemTime) -> Entry {
        let hv = |n: &HeaderName| req.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Entry {
            peer: Some(peer),
            port,
            time: Some(time),
            method: req.method.clone(),
            uri: req.uri.clone(),
            version: version_str(req.version),
            server_name: shared(server_name),
            req_vals: log.req_h.iter().map(|n| req.headers.get(n).cloned()).collect(),
            user_agent: if log.json { hv(&http::header::USER_AGENT) } else { None },
            referer: if log.json { hv(&http::header::REFERER) } else { None },
            ..Default::default()
        }
    }

    /// The request target as received: origin-form (the usual case) is its path and query,
    /// without a formatter. HTTP/2 has no request line: its `:scheme` and `:authority` are not
    /// part of the target, so it is logged as a path too, as Apache's `%r` does ("GET /x
    /// HTTP/2.0"); only an HTTP/1.1 absolute-form target is logged whole.
    pub fn target(&self) -> std::borrow::Cow<'_, str> {
        match (self.uri.scheme(), self.uri.authority(), self.uri.path_and_query()) {
            (None, None, Some(pq)) => std::borrow::Cow::Borrowed(pq.as_str()),
            (_, _, Some(pq)) if self.version == "HTTP/2.0" => std::borrow::Cow::Borrowed(pq.as_str()),
            _ => std::borrow::Cow::Owned(self.uri.to_string()),
        }
    }

    pub fn finish_headers<B>(&mut self, log: &AccessLog, resp: &http::Response<B>) {
        self.finish_head(log, resp.status(), resp.headers());
    }

    pub fn finish_head(&mut self, log: &AccessLog, status: http::StatusCode, headers: &http::HeaderMap) {
        self.status = status.as_u16();
        self.resp_vals = log.resp_h.iter().map(|n| headers.get(n).cloned()).collect();
        // %O counts headers too; estimate them as written on the wire.
        self.header_bytes = 17 + headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>() as u64 + 2;
    }
}

/// `[28/Nov/2026:16:13:23 +0000]` without a date library: civil date from days since epoch.
pub fn clf_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("[{:02}/{}/{}:{:02}:{:02}:{:02} +0000]", d, MON[(m - 1) as usize], y, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `clf_time`, remembered per thread for the current second (every line of a busy second
/// shares it).
fn push_clf_time(out: &mut String, t: SystemTime) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        if l.0 != secs {
            *l = (secs, clf_time(t));
        }
        out.push_str(&l.1);
    });
}

fn json_escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The sink and its writer thread for `out`.
fn start_writer(out: Box<dyn Write + Send>) -> Result<Arc<Sink>, String> {
    let (queue, rx) = std::sync::mpsc::sync_channel(QUEUE_BUFFERS);
    let sink = Arc::new(Sink { buf: Mutex::new(Vec::with_capacity(FLUSH_BYTES + 1024)), queue });
    let weak = Arc::downgrade(&sink);
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || writer(weak, rx, out))
        .map_err(|e| format!("cannot start the access log writer: {e}"))?;
    Ok(sink)
}

impl AccessLog {
    pub fn new(cfg: &LogConfig) -> Result<AccessLog, String> {
        let (toks, req_h, resp_h) = parse_format(&cfg.access_format)?;
        let out: Option<Box<dyn Write + Send>> = match &cfg.access {
            LogDest::Off => None,
            LogDest::Stdout => Some(Box::new(std::io::stdout())),
            LogDest::Stderr => Some(Box::new(std::io::stderr())),
            LogDest::File(p) => {
                let f = std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| format!("{}: cannot open access log: {e}", p.display()))?;
                Some(Box::new(f))
            }
        };
        let out = match out {
            Some(w) => Some(start_writer(w)?),
            None => None,
        };
        Ok(AccessLog { toks, req_h, resp_h, json: cfg.json, out })
    }

    pub fn disabled() -> AccessLog {
        AccessLog { toks: vec![], req_h: vec![], resp_h: vec![], json: false, out: None }
    }

    pub fn format(&self, e: &Entry) -> String {
        let mut s = String::with_capacity(160);
        self.format_into(e, &mut s);
        s
    }

    /// `format`, appending to `s`.
    fn format_into(&self, e: &Entry, s: &mut String) {
        if self.json {
            s.push('{');
            let _ = write!(s, "\"time\":");
            json_escape(&clf_time(e.time.unwrap_or(UNIX_EPOCH)), s);
            s.push_str(",\"remote\":");
            let mut peer = String::new();
            if let Some(p) = e.peer {
                crate::forward::push_ip(&mut peer, p);
            }
            json_escape(&peer, s);
            s.push_str(",\"method\":");
            json_escape(e.method.as_str(), s);
            s.push_str(",\"uri\":");
            json_escape(&e.target(), s);
            let _ = write!(s, ",\"proto\":\"{}\",\"status\":{},\"bytes\":{},\"duration_us\":{}", e.version, e.status, e.bytes, e.elapsed.as_micros());
            s.push_str(",\"server\":");
            json_escape(&e.server_name, s);
            for (k, v) in
                [("route", e.route.as_deref()), ("upstream", e.upstream.as_deref()), ("referer", e.referer.as_deref()), ("user_agent", e.user_agent.as_deref())]
            {
                if let Some(v) = v {
                    let _ = write!(s, ",\"{k}\":");
                    json_escape(v, s);
                }
            }
            s.push('}');
            return;
        }
        for t in &self.toks {
            match t {
                Tok::Lit(l) => s.push_str(l),
                Tok::RemoteHost => match e.peer {
                    Some(p) => crate::forward::push_ip(s, p),
                    None => s.push('-'),
                },
                Tok::Ident | Tok::User => s.push('-'),
                Tok::Time => push_clf_time(s, e.time.unwrap_or(UNIX_EPOCH)),
                Tok::RequestLine => {
                    s.push_str(e.method.as_str());
                    s.push(' ');
                    push_escaped(s, &e.target());
                    s.push(' ');
                    s.push_str(e.version);
                }
                Tok::FinalStatus | Tok::Status => push_u64(s, e.status.into()),
                Tok::BytesClf => {
                    if e.bytes == 0 {
                        s.push('-');
                    } else {
                        push_u64(s, e.bytes);
                    }
                }
                Tok::Bytes => push_u64(s, e.bytes),
                Tok::BytesOut => push_u64(s, e.bytes + e.header_bytes),
                Tok::BytesIn => s.push('-'),
                Tok::Micros => push_u64(s, e.elapsed.as_micros() as u64),
                Tok::Millis => push_u64(s, e.elapsed.as_millis() as u64),
                Tok::Secs => push_u64(s, e.elapsed.as_secs()),
                Tok::ReqHeader(i) => match e.req_vals.get(*i).and_then(Option::as_ref).and_then(|v| v.to_str().ok()) {
                    Some(v) => push_escaped(s, v),
                    None => s.push('-'),
                },
                Tok::RespHeader(i) => s.push_str(e.resp_vals.get(*i).and_then(Option::as_ref).and_then(|v| v.to_str().ok()).unwrap_or("-")),
                Tok::ServerName => s.push_str(&e.server_name),
                Tok::Port => push_u64(s, e.port.into()),
                Tok::Method => s.push_str(e.method.as_str()),
                Tok::UrlPath => s.push_str(e.uri.path()),
                Tok::Query => {
                    if let Some(q) = e.uri.query() {
                        s.push('?');
                        s.push_str(q);
                    }
                }
                Tok::Protocol => s.push_str(e.version),
                Tok::ConnStatus => s.push('+'),
                Tok::Pid => {
                    let _ = write!(s, "{}", std::process::id());
                }
            }
        }
    }

    pub fn write(&self, e: &Entry) {
        let Some(sink) = &self.out else { return };
        thread_local! {
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        let full = LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            self.format_into(e, &mut line);
            line.push('\n');
            match sink.buf.lock() {
                Ok(mut b) => {
                    b.extend_from_slice(line.as_bytes());
                    b.len() >= FLUSH_BYTES
                }
                Err(_) => false,
            }
        });
        if full {
            sink.hand_over();
        }
    }

    /// Write out the lines gathered so far (at shutdown; the flusher does it otherwise).
    pub fn flush(&self) {
        if let Some(sink) = &self.out {
            sink.flush();
        }
    }
}

/// A decimal number, without the formatter (which showed in profiles of the access log).
fn push_u64(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    s.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
}

/// Text as `str::escape_default` writes it; plain printable ASCII (the usual request target) is
/// copied as it is.
fn push_escaped(s: &mut String, t: &str) {
    if t.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\' && b != b'"' && b != b'\'') {
        s.push_str(t);
    } else {
        s.extend(t.escape_default());
    }
}

/// Validate a LogFormat string (used by the config front-ends).
pub fn check_format(f: &str) -> Result<(), String> {
    parse_format(f).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_line_matches_apache() {
        let cfg = LogConfig { access: LogDest::Off, ..Default::default() };
        let log = AccessLog::new(&cfg).unwrap();
        let req = http::Request::builder().method("GET").uri("/app/echo?q=1").header("referer", "http://ref/").header("user-agent", "UA/1").body(()).unwrap();
        let (parts, _) = req.into_parts();
        let t = UNIX_EPOCH + Duration::from_secs(1_795_882_403); // 2026-11-28 16:13:23 UTC
        let mut e = Entry::start(&log, &parts, "127.0.0.1".parse().unwrap(), 80, "gw", t);
        e.status = 200;
        e.bytes = 300;
        e.header_bytes = 166;
        assert_eq!(log.format(&e), "127.0.0.1 - - [28/Nov/2026:16:13:23 +0000] \"GET /app/echo?q=1 HTTP/1.1\" 200 466 \"http://ref/\" \"UA/1\"");
    }

    /// `%{…}i` values are escaped as before (quotes and backslashes), absent or non-ASCII ones
    /// are `-`, and `%{…}o` values are logged as sent.
    #[test]
    fn header_values_in_the_line() {
        let cfg = LogConfig { access: LogDest::Off, ..Default::default() };
        let mut log = AccessLog::new(&cfg).unwrap();
        (log.toks, log.req_h, log.resp_h) = parse_format("%{User-Agent}i|%{X-Absent}i|%{X-Bin}i|%{Location}o|%{X-None}o").unwrap();
        let (parts, _) = http::Request::builder()
            .uri("/")
            .header("user-agent", "a \"quoted\" \\ agent")
            .header("x-bin", http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap())
            .body(())
            .unwrap()
            .into_parts();
        let mut e = Entry::start(&log, &parts, "127.0.0.1".parse().unwrap(), 80, "gw", UNIX_EPOCH);
        let mut h = http::HeaderMap::new();
        h.insert(http::header::LOCATION, http::HeaderValue::from_static("https://h/x"));
        e.finish_head(&log, http::StatusCode::FOUND, &h);
        assert_eq!(log.format(&e), "a \\\"quoted\\\" \\\\ agent|-|-|https://h/x|-");
    }

    #[test]
    fn shared_names_are_reused_and_always_right() {
        let a = shared("gw.example");
        assert!(Arc::ptr_eq(&a, &shared("gw.example")));
        // More names than the table holds: each answer is still its own text.
        let names: Vec<String> = (0..20).map(|i| format!("http://127.0.0.1:{i}/")).collect();
        for _ in 0..3 {
            for n in &names {
                assert_eq!(&*shared(n), n.as_str());
            }
        }
    }

    #[test]
    fn absolute_form_target_and_url_parts_are_logged_as_received() {
        let cfg = LogConfig { access: LogDest::Off, ..Default::default() };
        let mut log = AccessLog::new(&cfg).unwrap();
        log.toks = parse_format("%r|%U|%q|%m|%v").unwrap().0;
        let (parts, _) = http::Request::builder().method("PROPFIND").uri("http://h.example/a%20b?x=1").body(()).unwrap().into_parts();
        let e = Entry::start(&log, &parts, "::1".parse().unwrap(), 80, "gw", UNIX_EPOCH);
        assert_eq!(log.format(&e), "PROPFIND http://h.example/a%20b?x=1 HTTP/1.1|/a%20b|?x=1|PROPFIND|gw");
    }

    #[test]
    fn http2_requests_log_their_path_as_http1_requests_do() {
        let cfg = LogConfig { access: LogDest::Off, ..Default::default() };
        let mut log = AccessLog::new(&cfg).unwrap();
        log.toks = parse_format("%r").unwrap().0;
        let (parts, _) =
            http::Request::builder().method("GET").version(http::Version::HTTP_2).uri("https://h.example:8443/scm/tp/x.git?y=1").body(()).unwrap().into_parts();
        let e = Entry::start(&log, &parts, "::1".parse().unwrap(), 443, "gw", UNIX_EPOCH);
        assert_eq!(log.format(&e), "GET /scm/tp/x.git?y=1 HTTP/2.0");
    }

    /// A file that blocks every write until the test opens the gate, as a stalled disk would.
    struct Stalled {
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.gate;
            let mut g = open.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_log_file_never_blocks_a_request_lines_beyond_the_queue_are_dropped_and_counted() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let cfg = LogConfig { access: LogDest::Off, ..Default::default() };
        let mut log = AccessLog::new(&cfg).unwrap();
        log.toks = parse_format("%r").unwrap().0;
        log.out = Some(start_writer(Box::new(Stalled { gate: gate.clone(), written: written.clone() })).unwrap());
        let path = format!("/{}", "x".repeat(1000));
        let (parts, _) = http::Request::builder().uri(path.as_str()).body(()).unwrap().into_parts();
        let e = Entry::start(&log, &parts, "::1".parse().unwrap(), 80, "gw", UNIX_EPOCH);
        // 5,000 lines of 1 KiB: more than the queue (2 MiB) holds while the file is stalled.
        // Every write returns: this loop finishing is the test that requests never wait.
        let lines = 5_000u64;
        for _ in 0..lines {
            log.write(&e);
        }
        let dropped = DROPPED_LINES.load(std::sync::atomic::Ordering::Relaxed);
        assert!(dropped > 0, "nothing was dropped though the file was stalled");
        {
            let (open, cv) = &*gate;
            *open.lock().unwrap() = true;
            cv.notify_all();
        }
        log.flush();
        let got = written.lock().unwrap().iter().filter(|&&c| c == b'\n').count() as u64;
        assert_eq!(got + dropped, lines, "every line is either written or counted as dropped");
    }

    #[test]
    fn format_codes() {
        assert!(parse_format("%h %l %u %t \"%r\" %>s %b %D %{X-Req}i %{Location}o %v %p %m %U%q %H %T %{ms}M %%").is_ok());
        assert!(parse_format("%Z").unwrap_err().contains("%Z"));
        assert!(parse_format("%{}i").is_err());
    }

    #[test]
    fn clf_time_known_dates() {
        assert_eq!(clf_time(UNIX_EPOCH), "[01/Jan/1970:00:00:00 +0000]");
        assert_eq!(clf_time(UNIX_EPOCH + Duration::from_secs(951_782_400)), "[29/Feb/2000:00:00:00 +0000]");
    }
}
