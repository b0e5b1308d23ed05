//! Property tests for the engine's parsers: the chunked-body decoder and the origin's response
//! head (RFC 9112 §4 and §7.1). Kept apart from `h1.rs` so the engine's file stays about the
//! engine.

use bytes::{Buf, BytesMut};
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::{Chunks, OriginBody, Piece, find_head_end, parse_response, write_status_and_headers};
use crate::guard::tests::chunked::encoding;

/// Decodes `input` fed in reads of the given sizes (cycled): the data, and what follows the
/// body. `Err` for a malformed body or one cut short.
fn decode(input: &[u8], reads: &[usize]) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
    let mut c = Chunks::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut sizes = reads.iter().cycle();
    loop {
        match c.next(&mut buf)? {
            Piece::Data(n) => {
                assert!(n > 0 && n <= buf.len(), "data piece of {n} with {} buffered", buf.len());
                out.extend_from_slice(&buf[..n]);
                buf.advance(n);
            }
            Piece::End => return Ok((out, [&buf[..], rest].concat())),
            Piece::More => {
                if rest.is_empty() {
                    return Err("cut short");
                }
                let k = sizes.next().copied().unwrap_or(rest.len()).clamp(1, rest.len());
                buf.extend_from_slice(&rest[..k]);
                rest = &rest[k..];
            }
        }
    }
}

/// A response head's fields: unique names that are not framing or connection fields (those
/// are the table tests' job), with values of visible ASCII and inner spaces.
fn fields() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map("x-[a-z0-9-]{1,12}", "[!-~]([ !-~]{0,30}[!-~])?", 0..20).prop_map(|m| m.into_iter().collect())
}

fn head_bytes(version: &str, code: u16, reason: &str, fields: &[(String, String)], length: Option<u64>) -> Vec<u8> {
    let mut h = format!("{version} {code} {reason}\r\n");
    for (n, v) in fields {
        h.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(l) = length {
        h.push_str(&format!("Content-Length: {l}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

fn sorted(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any valid chunked encoding of any bytes, read in any sizes, decodes to those bytes and
    /// leaves what follows the body in place.
    #[test]
    fn any_valid_chunked_body_decodes_to_its_bytes((data, wire) in encoding(), reads in prop::collection::vec(1usize..700, 1..8), next in "[A-Z]{0,5}") {
        let input = [&wire[..], next.as_bytes()].concat();
        let (got, rest) = decode(&input, &reads).map_err(|e| TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&wire))))?;
        prop_assert_eq!(got, data);
        prop_assert_eq!(rest, next.as_bytes());
    }

    /// A valid body cut anywhere before its end asks for more; it is never taken as complete.
    #[test]
    fn a_cut_chunked_body_is_never_complete((_, wire) in encoding(), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(wire.len());
        prop_assert_eq!(decode(&wire[..cut], &[1000]), Err("cut short"));
    }

    /// Chunk data must be followed by CRLF (RFC 9112 §7.1): any other two bytes are refused,
    /// never read as the start of the next size line.
    #[test]
    fn chunk_data_not_followed_by_crlf_is_refused(
        data in prop::collection::vec(any::<u8>(), 1..100),
        after in prop::collection::vec(any::<u8>(), 2).prop_filter("not CRLF", |b| b != b"\r\n"),
        reads in prop::collection::vec(1usize..50, 1..4),
    ) {
        let wire = [format!("{:x}\r\n", data.len()).as_bytes(), &data, &after, b"0\r\n\r\n"].concat();
        prop_assert_eq!(decode(&wire, &reads), Err("chunk data not followed by CRLF"));
    }

    /// Arbitrary bytes, read in any sizes, never panic the decoder.
    #[test]
    fn the_chunked_decoder_never_panics(input in prop::collection::vec(any::<u8>(), 0..800), reads in prop::collection::vec(1usize..100, 1..4)) {
        let _ = decode(&input, &reads);
    }

    /// Mostly well-formed input (hex, CRLF, `;`) reaches every state of the decoder.
    #[test]
    fn near_valid_chunked_input_never_panics(input in "([0-9a-fA-F]{1,3}(;[a-z]{1,2}(=\"?[a-z]{0,2}\"?)?)?\r?\n?[a-z]{0,20}\r?\n?){0,8}(0\r\n([A-Za-z]{1,3}: ?[a-z]{0,3}\r?\n)*\r?\n)?", reads in prop::collection::vec(1usize..10, 1..4)) {
        let _ = decode(input.as_bytes(), &reads);
    }

    /// Arbitrary bytes with a head's end never panic the response parser.
    #[test]
    fn the_response_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), head_method in any::<bool>()) {
        let mut buf = BytesMut::from(&bytes[..]);
        if let Some(end) = find_head_end(&buf) {
            let _ = parse_response(&mut buf, end, head_method);
        }
    }

    /// Response-shaped text (a status line, fields, framing fields) never panics the parser.
    #[test]
    fn response_shaped_text_never_panics(head in "HTTP/1\\.[01] [0-9]{3}( [ -~]{0,10})?\r\n((Content-Length|Transfer-Encoding|Connection|X-[a-z]): ?[ -~]{0,12}\r\n){0,6}\r\n", head_method in any::<bool>()) {
        let mut buf = BytesMut::from(head.as_bytes());
        let end = find_head_end(&buf).expect("generated with an end");
        let _ = parse_response(&mut buf, end, head_method);
    }

    /// A generated head parses to its status, fields and framing; written back by the engine
    /// and parsed again it is the same response.
    #[test]
    fn generated_response_heads_round_trip(
        code in prop_oneof![200u16..=206, 300u16..=308, 400u16..=451, 500u16..=511],
        reason in "[A-Za-z]{0,10}( [A-Za-z]{1,10}){0,2}",
        http10 in any::<bool>(),
        fields in fields(),
        length in prop::option::of(prop_oneof![Just(0u64), 1u64..1 << 40]),
        tail in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let head = head_bytes(version, code, &reason, &fields, length);
        let mut buf = BytesMut::from(&[&head[..], &tail[..]].concat()[..]);
        let end = find_head_end(&buf).expect("end");
        prop_assert_eq!(end, head.len());
        let r = parse_response(&mut buf, end, false).map_err(TestCaseError::fail)?.expect("final response");
        prop_assert_eq!(&buf[..], &tail[..], "the head is consumed, the body left");
        prop_assert_eq!(r.status, StatusCode::from_u16(code).unwrap());
        let no_body = code == 204 || code == 304;
        let want_body = match length {
            _ if no_body => OriginBody::None,
            Some(0) => OriginBody::None,
            Some(n) => OriginBody::Length(n),
            None => OriginBody::UntilClose,
        };
        prop_assert_eq!(r.body, want_body);
        prop_assert_eq!(r.keep, !http10);
        let mut want = HeaderMap::new();
        for (n, v) in &fields {
            want.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        if let Some(l) = length {
            want.append(http::header::CONTENT_LENGTH, HeaderValue::from(l));
        }
        prop_assert_eq!(sorted(&r.headers), sorted(&want));

        let mut again = Vec::new();
        write_status_and_headers(&mut again, r.status, &r.headers);
        let mut buf = BytesMut::from(&again[..]);
        let end = find_head_end(&buf).expect("the engine ends what it writes");
        prop_assert_eq!(end, again.len());
        let r2 = parse_response(&mut buf, end, false).map_err(TestCaseError::fail)?.expect("final response");
        prop_assert_eq!(r2.status, r.status);
        prop_assert_eq!(r2.body, r.body);
        prop_assert!(r2.keep, "written as HTTP/1.1 without Connection: close");
        prop_assert_eq!(sorted(&r2.headers), sorted(&r.headers));
    }
}
