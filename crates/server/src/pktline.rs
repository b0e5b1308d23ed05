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

/// Whether a request body is git's "probe": a lone flush packet sent before a large chunked
/// push to find out whether authentication is needed (remote-curl.c `probe_rpc`).
pub(crate) fn is_probe(body: &[u8]) -> bool {
    body == FLUSH
}

/// Whether a request body is a protocol v2 `ls-refs` command: its first pkt-line is
/// `command=ls-refs` (gitprotocol-v2, "Command Request"; the newline is optional).
pub(crate) fn is_ls_refs(body: &[u8]) -> bool {
    let Some(len) = body.get(..4).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| usize::from_str_radix(h, 16).ok()) else {
        return false;
    };
    let Some(payload) = (len >= 4).then(|| body.get(4..len)).flatten() else {
        return false;
    };
    payload == b"command=ls-refs\n" || payload == b"command=ls-refs"
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
