//! mod_alias: only the whole-site redirect that sends plain HTTP to HTTPS
//! (`Redirect permanent / https://host/`).

use super::{Cx, Handler, Line};

pub(super) const DIRECTIVES: &[(&str, Handler)] = &[("redirect", redirect), ("redirectpermanent", redirect_permanent)];

fn redirect(cx: &mut Cx<'_>, l: &Line) {
    let a: Vec<&str> = l.args.iter().map(String::as_str).collect();
    let rest: &[&str] = match a.first().map(|s| s.to_ascii_lowercase()) {
        Some(ref k) if k == "permanent" || k == "301" => &a[1..],
        _ => &[],
    };
    whole_site(cx, l, rest);
}

fn redirect_permanent(cx: &mut Cx<'_>, l: &Line) {
    let a: Vec<&str> = l.args.iter().map(String::as_str).collect();
    whole_site(cx, l, &a);
}

/// `/ https://…` after the status: the site's HTTPS address; anything else is refused.
fn whole_site(cx: &mut Cx<'_>, l: &Line, rest: &[&str]) {
    match rest {
        ["/", url] if url.starts_with("https://") => cx.server().redirect = Some(url.trim_end_matches('/').to_string()),
        _ => cx.d.error(
            &l.origin,
            format!("{} {} is not supported", l.name, l.args.join(" ")),
            "only the whole-site HTTPS redirect is: 'Redirect permanent / https://host[:port]/'",
        ),
    }
}
