//! mod_headers: `RequestHeader` edits the request sent to the origin, `Header` the answer
//! sent to the downstream (set, unset, append, add; no conditions or `%{…}` expansions).

use super::super::{HeaderEdit, HeaderEditOp};
use super::{Cx, Handler, Line};

pub(super) const DIRECTIVES: &[(&str, Handler)] = &[("requestheader", request_header), ("header", header)];

fn request_header(cx: &mut Cx<'_>, l: &Line) {
    match parse_header_edit(&l.args) {
        Ok(e) => cx.server().request_headers.push(e),
        Err(e) => cx.d.error(&l.origin, e, "write for example 'RequestHeader set X-Forwarded-Proto \"https\"'"),
    }
}

fn header(cx: &mut Cx<'_>, l: &Line) {
    match parse_header_edit(&l.args) {
        Ok(e) => cx.server().response_headers.push(e),
        Err(e) => {
            cx.d.error(&l.origin, e.replace("RequestHeader", "Header"), "write for example 'Header always set Strict-Transport-Security \"max-age=31536000\"'")
        }
    }
}

fn parse_header_edit(args: &[String]) -> Result<HeaderEdit, String> {
    let mut a = args.iter();
    let mut op = a.next().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    if op == "early" || op == "always" {
        op = a.next().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    }
    let op = match op.as_str() {
        "set" => HeaderEditOp::Set,
        "unset" => HeaderEditOp::Unset,
        "append" => HeaderEditOp::Append,
        "add" => HeaderEditOp::Add,
        other => return Err(format!("RequestHeader action '{other}' is not supported (set, unset, append, add are)")),
    };
    let name = a.next().ok_or("RequestHeader needs a header name")?;
    let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("'{name}' is not a valid header name"))?;
    let value = match op {
        HeaderEditOp::Unset => None,
        _ => {
            let v = a.next().ok_or("RequestHeader needs a value")?;
            if v.contains('%') && v.contains('{') {
                return Err(format!("RequestHeader value '{v}' uses %{{…}} expansions, which are not supported"));
            }
            Some(http::HeaderValue::from_str(v).map_err(|_| format!("'{v}' is not a valid header value"))?)
        }
    };
    if let Some(extra) = a.next() {
        return Err(format!("RequestHeader condition '{extra}' is not supported"));
    }
    Ok(HeaderEdit { op, name, value })
}
