//! pkt-line framing (gitprotocol-common): just the pieces the HTTP layer itself writes or reads.

/// The flush packet.
pub(crate) const FLUSH: &[u8] = b"0000";

/// Encodes one pkt-line: four hex digits giving the length including themselves, then `data`.
/// Returns `None` for payloads larger than the protocol allows (65516 bytes).
pub(crate) fn encode(data: &[u8]) -> Option<Vec<u8>> {
    const MAX_DATA: usize = 65516;
    if data.len() > MAX_DATA {
        return None;
    }
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    Some(out)
}

/// The `# service=git-upload-pack` preamble plus flush that smart HTTP puts before a v0/v1
/// advertisement (gitprotocol-http, "Smart Clients").
pub(crate) fn service_preamble(service: &str) -> Vec<u8> {
    let mut out = encode(format!("# service={service}\n").as_bytes()).expect("short line");
    out.extend_from_slice(FLUSH);
    out
}

/// One pkt-line read from the front of a buffer (gitprotocol-common, "pkt-line Format";
/// gitprotocol-v2 adds the delimiter and response-end packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    /// `0000`: the end of a message.
    Flush,
    /// `0001`: separates sections of a protocol v2 command.
    Delim,
    /// `0002`: the end of a protocol v2 stateless response.
    ResponseEnd,
    /// A line's payload, its length prefix removed (it may be empty: `0004`).
    Data(&'a [u8]),
}

/// A pkt-line that no git writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PktLineError {
    #[error("pkt-line length {0:?} is not four hexadecimal digits; the body is not git protocol")]
    BadLength([u8; 4]),
    #[error("pkt-line length 0003 is reserved and never sent by git; the body is not git protocol")]
    Reserved,
}

/// Reads the pkt-line at the front of `buf`: the packet and how many bytes it took, or
/// `Ok(None)` while `buf` holds only part of it. The inverse of [`encode`].
pub(crate) fn read(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>, PktLineError> {
    let Some(head) = buf.first_chunk::<4>() else { return Ok(None) };
    // Exactly four hex digits: `from_str_radix` alone would also take a leading `+`.
    if !head.iter().all(u8::is_ascii_hexdigit) {
        return Err(PktLineError::BadLength(*head));
    }
    let len = head.iter().fold(0usize, |n, &b| n * 16 + (b as char).to_digit(16).unwrap_or(0) as usize);
    let packet = match len {
        0 => Packet::Flush,
        1 => Packet::Delim,
        2 => Packet::ResponseEnd,
        3 => return Err(PktLineError::Reserved),
        _ => match buf.get(4..len) {
            Some(payload) => Packet::Data(payload),
            None => return Ok(None),
        },
    };
    Ok(Some((packet, len.max(4))))
}

/// Whether a request body is git's "probe": a lone flush packet sent before a large chunked
/// push to find out whether authentication is needed (remote-curl.c `probe_rpc`).
pub(crate) fn is_probe(body: &[u8]) -> bool {
    body == FLUSH
}

/// Whether a request body is a protocol v2 `ls-refs` command: its first pkt-line is
/// `command=ls-refs` (gitprotocol-v2, "Command Request"; the newline is optional).
pub(crate) fn is_ls_refs(body: &[u8]) -> bool {
    matches!(read(body), Ok(Some((Packet::Data(b"command=ls-refs\n" | b"command=ls-refs"), _))))
}

/// Whether a `Git-Protocol` header value may be passed on as `GIT_PROTOCOL`: colon-separated
/// `key=value` pairs of alphanumerics only, as git http-backend requires, so nothing a client
/// sends can smuggle other syntax into the child's environment.
pub(crate) fn valid_git_protocol(value: &str) -> bool {
    !value.is_empty()
        && value.split(':').all(|pair| match pair.split_once('=') {
            Some((k, v)) => {
                let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
                ok(k) && ok(v)
            }
            None => false,
        })
}

/// Whether a validated `Git-Protocol` value asks for protocol v2.
pub(crate) fn wants_v2(value: &str) -> bool {
    value.split(':').any(|pair| pair == "version=2")
}

/// Follows `git receive-pack`'s output as it streams by and notes whether its report refused
/// anything (gitprotocol-pack, "Report Status"): an `unpack <error>` line or an `ng <ref>
/// <reason>` line, plain or inside side-band channel 1 (channels 2 and 3 are progress and
/// errors). A session's output starts with the ref advertisement, which ends at its flush and
/// is skipped. Holds at most one pkt-line of each layer.
pub(crate) struct PushReport {
    outer: Vec<u8>,
    inner: Vec<u8>,
    in_advertisement: bool,
    refused: bool,
    /// Not git protocol after all: nothing more is read.
    broken: bool,
}

impl PushReport {
    /// `advertisement`: the output starts with the ref advertisement (a session, not
    /// `--stateless-rpc`).
    pub(crate) fn new(advertisement: bool) -> PushReport {
        PushReport { outer: Vec::new(), inner: Vec::new(), in_advertisement: advertisement, refused: false, broken: false }
    }

    pub(crate) fn feed(&mut self, data: &[u8]) {
        if self.broken || self.refused {
            return;
        }
        self.outer.extend_from_slice(data);
        let mut outer = std::mem::take(&mut self.outer);
        let mut at = 0;
        loop {
            match read(&outer[at..]) {
                Ok(Some((packet, used))) => {
                    at += used;
                    match packet {
                        Packet::Flush if self.in_advertisement => self.in_advertisement = false,
                        _ if self.in_advertisement => {}
                        Packet::Data([1, rest @ ..]) => {
                            self.inner.extend_from_slice(rest);
                            let mut inner = std::mem::take(&mut self.inner);
                            let mut at = 0;
                            loop {
                                match read(&inner[at..]) {
                                    Ok(Some((Packet::Data(line), used))) => {
                                        self.line(line);
                                        at += used;
                                    }
                                    Ok(Some((_, used))) => at += used,
                                    Ok(None) => break,
                                    Err(_) => {
                                        self.broken = true;
                                        break;
                                    }
                                }
                            }
                            inner.drain(..at);
                            self.inner = inner;
                        }
                        Packet::Data([2 | 3, ..]) => {}
                        Packet::Data(line) => self.line(line),
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    self.broken = true;
                    break;
                }
            }
        }
        outer.drain(..at);
        self.outer = outer;
        if self.broken || self.refused {
            self.outer = Vec::new();
            self.inner = Vec::new();
        }
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if (line.starts_with(b"unpack ") && line != b"unpack ok") || line.starts_with(b"ng ") {
            self.refused = true;
        }
    }

    /// Whether the report refused the pack or any ref.
    pub(crate) fn refused(&self) -> bool {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads every packet of `buf`; `Err` on a malformed one, and what is left incomplete.
    fn read_all(mut buf: &[u8]) -> Result<(Vec<Packet<'_>>, &[u8]), PktLineError> {
        let mut out = Vec::new();
        while let Some((p, n)) = read(buf)? {
            out.push(p);
            buf = &buf[n..];
        }
        Ok((out, buf))
    }

    #[test]
    fn read_table() {
        type Want = Result<Option<(Packet<'static>, usize)>, PktLineError>;
        let rows: &[(&[u8], Want)] = &[
            (b"0000", Ok(Some((Packet::Flush, 4)))),
            (b"0001rest", Ok(Some((Packet::Delim, 4)))),
            (b"0002", Ok(Some((Packet::ResponseEnd, 4)))),
            (b"0003", Err(PktLineError::Reserved)),
            (b"0004", Ok(Some((Packet::Data(b""), 4)))),
            (b"0006a\n0000", Ok(Some((Packet::Data(b"a\n"), 6)))),
            (b"0006a", Ok(None)),
            (b"00", Ok(None)),
            (b"", Ok(None)),
            (b"+006a\n", Err(PktLineError::BadLength(*b"+006"))),
            (b"zzzz", Err(PktLineError::BadLength(*b"zzzz"))),
            (b"000A0123456789", Ok(Some((Packet::Data(b"012345"), 10)))),
        ];
        for (input, want) in rows {
            assert_eq!(&read(input), want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// What `encode` writes, `read` gives back, packet by packet, whatever the payloads.
        #[test]
        fn encode_then_read_round_trips(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let mut wire = Vec::new();
            for p in &payloads {
                wire.extend(encode(p).expect("short payload"));
            }
            wire.extend_from_slice(FLUSH);
            let (got, rest) = read_all(&wire).expect("well-formed");
            let mut want: Vec<Packet> = payloads.iter().map(|p| Packet::Data(p)).collect();
            want.push(Packet::Flush);
            prop_assert_eq!(got, want);
            prop_assert!(rest.is_empty());
        }

        /// Any prefix of a well-formed stream reads as its whole packets, then waits for more.
        #[test]
        fn a_cut_stream_waits_for_more(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 1..8), cut in any::<prop::sample::Index>()) {
            let wire: Vec<u8> = payloads.iter().flat_map(|p| encode(p).expect("short payload")).collect();
            let cut = cut.index(wire.len() + 1);
            let (got, rest) = read_all(&wire[..cut]).expect("well-formed");
            prop_assert!(got.len() <= payloads.len());
            prop_assert!(rest.len() < 4 || read(rest) == Ok(None));
        }

        /// Arbitrary bytes never panic the reader, and every packet it returns lies inside them.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(Some((p, n))) = read(&bytes) {
                prop_assert!(n >= 4 && n <= bytes.len());
                if let Packet::Data(d) = p {
                    prop_assert_eq!(d.len() + 4, n);
                }
            }
            let _ = read_all(&bytes);
            let _ = is_ls_refs(&bytes);
        }

        /// Mostly-hex input reaches the length and payload paths, not only the bad-length one.
        #[test]
        fn hex_heavy_bytes_never_panic(bytes in "[0-9a-fA-F]{0,12}[\\x00-\\xff]{0,40}") {
            let _ = read_all(bytes.as_bytes());
            let _ = is_ls_refs(bytes.as_bytes());
        }
    }

    #[test]
    fn pkt_lines_carry_their_length_in_hex() {
        let cases: &[(&[u8], &[u8])] = &[(b"", b"0004"), (b"a\n", b"0006a\n"), (b"# service=git-upload-pack\n", b"001e# service=git-upload-pack\n")];
        for (input, want) in cases {
            assert_eq!(encode(input).unwrap(), *want, "input {input:?}");
        }
        assert!(encode(&[b'x'; 65516]).is_some());
        assert!(encode(&[b'x'; 65517]).is_none());
        assert_eq!(service_preamble("git-receive-pack"), b"001f# service=git-receive-pack\n0000");
    }

    #[test]
    fn only_a_lone_flush_is_a_probe() {
        let cases: &[(&[u8], bool)] = &[(b"0000", true), (b"", false), (b"00000000", false), (b"0004", false), (b"0000\n", false)];
        for (input, want) in cases {
            assert_eq!(is_probe(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn only_a_first_pkt_line_of_command_ls_refs_is_ls_refs() {
        let cases: &[(&[u8], bool)] = &[
            (b"0014command=ls-refs\n0014agent=git/2.47.300010009peel\n0000", true),
            (b"0013command=ls-refs0000", true),
            (b"0012command=fetch\n0000", false),
            (b"0014command=ls-refs\n", true),
            (b"0015command=ls-refsx\n0000", false),
            (b"0032want 0123456789012345678901234567890123456789\n0000", false),
            (b"0014command=ls-ref", false),
            (b"0000", false),
            (b"0003", false),
            (b"zzzz", false),
            (b"", false),
        ];
        for (input, want) in cases {
            assert_eq!(is_ls_refs(input), *want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn git_protocol_values_are_validated_strictly() {
        let cases: &[(&str, bool, bool)] = &[
            ("version=2", true, true),
            ("version=1", true, false),
            ("version=2:object-format=sha1", false, false),
            ("version=2:foo=bar", true, true),
            ("version=", false, false),
            ("=2", false, false),
            ("", false, false),
            ("version=2;rm -rf", false, false),
            ("version=2\nX=1", false, false),
            ("version=2:", false, false),
            ("a=b:version=2", true, true),
        ];
        for (input, valid, v2) in cases {
            assert_eq!(valid_git_protocol(input), *valid, "valid {input:?}");
            if *valid {
                assert_eq!(wants_v2(input), *v2, "v2 {input:?}");
            }
        }
    }

    #[test]
    fn push_reports_that_refuse_a_pack_or_a_ref_are_noticed_in_every_framing() {
        fn band1(lines: &[&str]) -> Vec<u8> {
            let mut inner = Vec::new();
            for l in lines {
                inner.extend_from_slice(&encode(l.as_bytes()).unwrap());
            }
            inner.extend_from_slice(FLUSH);
            let mut b = vec![1u8];
            b.extend_from_slice(&inner);
            let mut out = encode(b"\x02Resolving deltas\n").unwrap();
            out.extend_from_slice(&encode(&b).unwrap());
            out.extend_from_slice(FLUSH);
            out
        }
        fn plain(lines: &[&str]) -> Vec<u8> {
            let mut out = Vec::new();
            for l in lines {
                out.extend_from_slice(&encode(l.as_bytes()).unwrap());
            }
            out.extend_from_slice(FLUSH);
            out
        }
        let advert = {
            let mut a = encode(b"0000000000000000000000000000000000000000 capabilities^{}\0report-status\n").unwrap();
            // A ref named like a refusal, inside the advertisement: not a report.
            a.extend_from_slice(&encode(b"ng refs/heads/x\n").unwrap());
            a.extend_from_slice(FLUSH);
            a
        };
        let cases: &[(&[&str], bool)] = &[
            (&["unpack ok\n", "ok refs/heads/main\n"], false),
            (&["unpack ok\n", "ng refs/pull-requests/1/from pre-receive hook declined\n"], true),
            (&["unpack index-pack abnormal exit\n", "ng refs/heads/main unpacker error\n"], true),
            (&["unpack ok", "ok refs/heads/a", "ng refs/heads/b non-fast-forward"], true),
        ];
        for (lines, refused) in cases {
            for (framed, advertisement) in [(band1(lines), false), (plain(lines), false), ([advert.clone(), band1(lines)].concat(), true)] {
                // Whole, and one byte at a time (as a stream may cut it anywhere).
                let mut whole = PushReport::new(advertisement);
                whole.feed(&framed);
                assert_eq!(whole.refused(), *refused, "{lines:?} advertisement={advertisement}");
                let mut bytes = PushReport::new(advertisement);
                for b in &framed {
                    bytes.feed(std::slice::from_ref(b));
                }
                assert_eq!(bytes.refused(), *refused, "{lines:?} byte by byte");
            }
        }
        let mut garbage = PushReport::new(false);
        garbage.feed(b"not git at all, ng ");
        assert!(!garbage.refused());
    }
}
