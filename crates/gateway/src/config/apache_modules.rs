//! Directives of Apache modules the gateway does not implement, each with its module and a
//! verdict: ignored (it cannot change what a proxied request or response looks like) or refused.
//!
//! Debian's and RHEL's stock configurations load modules for serving local files (mod_mime,
//! mod_autoindex, mod_negotiation, …). Their directives only act on requests that Apache maps to
//! files; a request that mod_proxy takes (its translate_name hook runs first, see
//! <https://httpd.apache.org/docs/2.4/mod/mod_proxy.html#proxypass>) never reaches them. Those
//! are listed once as ignored. A directive that would rewrite, authenticate, filter or cache a
//! proxied request is refused, so that trove never silently behaves differently from Apache.

/// What the gateway does with a directive of a module it does not implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Cannot change a proxied request or response: listed once as ignored, with why.
    Ignored(&'static str),
    /// Would change what a proxied request sees: an error, saying what Apache would do.
    Refused(&'static str),
}

/// A directive's module (as `mod_name`) and its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Known {
    pub module: &'static str,
    pub verdict: Verdict,
}

const LOCAL_TYPES: &str = "maps the file names of local files to types, languages, charsets and handlers; proxied responses keep the origin's headers";
const LOCAL_INDEX: &str = "formats listings of local directories, which the gateway does not serve";
const LOCAL_NEGOTIATION: &str = "chooses among local files by language; the origin negotiates proxied responses";
const LOCAL_DIR: &str = "serves index files of local directories";
const LOCAL_ALIAS: &str = "maps URLs to local files, which the gateway does not serve (a ProxyPass for the same path wins in Apache too)";
const BROWSER_QUIRKS: &str =
    "sets request variables that only Apache's other modules read (the stock file works around 1990s browsers); the gateway reads none";
const ENV_FOR_CGI: &str = "passes variables to CGI scripts and other local handlers";
const COMPRESSION: &str = "compresses responses for downstreams that ask for it; the gateway sends them as the origin made them, which every downstream accepts (RFC 9110 section 12.5.3)";
const STATUS_PAGE: &str = "configures Apache's own /server-status page (the gateway has /metrics instead)";
const LOCAL_FILES: &str = "governs local files, which the gateway does not serve";
const CGI: &str = "runs local CGI scripts";
const ERROR_PAGES: &str = "replaces the error pages Apache makes itself; proxied error responses pass through as the origin made them";

const REWRITE: &str = "rewrites or redirects requests before they are proxied";
const AUTH: &str = "asks the downstream for credentials before proxying";
const FILTER: &str = "filters response bodies";
const SUBSTITUTE: &str = "edits proxied response bodies";
const PROXY_HTML: &str = "rewrites links inside proxied HTML";
const EXPIRES: &str = "adds Expires and Cache-Control headers to proxied responses";
const CACHE: &str = "answers requests from a cache instead of the origin";
const REMOTE_IP: &str = "replaces the downstream address with one taken from a request header";
const REDIRECT: &str = "redirects requests by pattern";
const PROXY_ENV: &str = "sets a variable that changes how mod_proxy talks to the origin";

/// mod_proxy's request variables (<https://httpd.apache.org/docs/2.4/mod/mod_proxy.html#env>)
/// and the core's protocol ones (<https://httpd.apache.org/docs/2.4/env.html#special>) that
/// change a proxied exchange beyond 1990s browser quirks.
const PROXY_VARIABLES: &[&str] = &[
    "force-proxy-request-1.0",
    "proxy-nokeepalive",
    "proxy-sendchunked",
    "proxy-sendchunks",
    "proxy-sendcl",
    "proxy-chain-auth",
    "proxy-interim-response",
    "proxy-initial-not-pooled",
    "proxy-source-port",
    "proxy-status",
    "no-proxy",
];

/// Look a directive (lower case) up; `None` for directives of no module listed here.
pub(crate) fn lookup(name: &str, args: &[String]) -> Option<Known> {
    let k = |module, verdict| Some(Known { module, verdict });
    let sets_proxy_variable = |vars: &[String]| {
        vars.iter().any(|v| {
            let v = v.trim_start_matches('!').split('=').next().unwrap_or("").to_ascii_lowercase();
            PROXY_VARIABLES.contains(&v.as_str())
        })
    };
    match name {
        "addcharset" | "addencoding" | "addhandler" | "addinputfilter" | "addlanguage" | "addoutputfilter" | "addtype" | "defaultlanguage"
        | "modmimeusepathinfo" | "multiviewsmatch" | "removecharset" | "removeencoding" | "removehandler" | "removeinputfilter" | "removelanguage"
        | "removeoutputfilter" | "removetype" | "typesconfig" => k("mod_mime", Verdict::Ignored(LOCAL_TYPES)),
        "mimemagicfile" => k("mod_mime_magic", Verdict::Ignored(LOCAL_TYPES)),
        "addalt" | "addaltbyencoding" | "addaltbytype" | "adddescription" | "addicon" | "addiconbyencoding" | "addiconbytype" | "defaulticon"
        | "headername" | "indexheadinsert" | "indexignore" | "indexignorereset" | "indexoptions" | "indexorderdefault" | "indexstylesheet" | "readmename" => {
            k("mod_autoindex", Verdict::Ignored(LOCAL_INDEX))
        }
        "cachenegotiateddocs" | "forcelanguagepriority" | "languagepriority" => k("mod_negotiation", Verdict::Ignored(LOCAL_NEGOTIATION)),
        "directorycheckhandler" | "directoryindex" | "directoryindexredirect" | "directoryslash" | "fallbackresource" => {
            k("mod_dir", Verdict::Ignored(LOCAL_DIR))
        }
        "alias" | "aliasmatch" | "scriptalias" | "scriptaliasmatch" => k("mod_alias", Verdict::Ignored(LOCAL_ALIAS)),
        "redirectmatch" | "redirecttemp" => k("mod_alias", Verdict::Refused(REDIRECT)),
        "browsermatch" | "browsermatchnocase" | "setenvif" | "setenvifnocase" | "setenvifexpr" => {
            // The first argument is the attribute (or the regex, for BrowserMatch), the second
            // the regex, the rest the variables set.
            let skip = if name.starts_with("browsermatch") { 1 } else { 2 };
            if sets_proxy_variable(args.get(skip..).unwrap_or(&[])) {
                k("mod_setenvif", Verdict::Refused(PROXY_ENV))
            } else {
                k("mod_setenvif", Verdict::Ignored(BROWSER_QUIRKS))
            }
        }
        "setenv" | "unsetenv" | "passenv" => {
            if sets_proxy_variable(args.get(..1).unwrap_or(&[])) {
                k("mod_env", Verdict::Refused(PROXY_ENV))
            } else {
                k("mod_env", Verdict::Ignored(ENV_FOR_CGI))
            }
        }
        "addoutputfilterbytype" => {
            // `AddOutputFilterByType DEFLATE text/html …`: only compression is transparent.
            let filters = args.first().map(|s| s.to_ascii_uppercase()).unwrap_or_default();
            if !filters.is_empty() && filters.split(';').all(|f| f == "DEFLATE" || f == "BROTLI_COMPRESS") {
                k("mod_filter", Verdict::Ignored(COMPRESSION))
            } else {
                k("mod_filter", Verdict::Refused(FILTER))
            }
        }
        "filterchain" | "filterdeclare" | "filterprotocol" | "filterprovider" | "filtertrace" => k("mod_filter", Verdict::Refused(FILTER)),
        "deflatealteretag"
        | "deflatebuffersize"
        | "deflatecompressionlevel"
        | "deflatefilternote"
        | "deflateinflatelimitrequestbody"
        | "deflateinflateratioburst"
        | "deflateinflateratiolimit"
        | "deflatememlevel"
        | "deflatewindowsize" => k("mod_deflate", Verdict::Ignored(COMPRESSION)),
        "brotlialteretag" | "brotlicompressionmaxinputblock" | "brotlicompressionquality" | "brotlicompressionwindow" | "brotlifilternote" => {
            k("mod_brotli", Verdict::Ignored(COMPRESSION))
        }
        "extendedstatus" | "seerequesttail" => k("mod_status", Verdict::Ignored(STATUS_PAGE)),
        "proxystatus" => k("mod_proxy", Verdict::Ignored(STATUS_PAGE)),
        "addmoduleinfo" => k("mod_info", Verdict::Ignored(STATUS_PAGE)),
        "userdir" => k("mod_userdir", Verdict::Ignored(LOCAL_FILES)),
        "scriptlog" | "scriptloglength" | "scriptlogbuffer" | "scriptsock" | "cgidscripttimeout" => k("mod_cgi", Verdict::Ignored(CGI)),
        "options" | "allowoverride" | "allowoverridelist" | "fileetag" | "contentdigest" | "enableexceptionhook" => k("core", Verdict::Ignored(LOCAL_FILES)),
        "errordocument" => k("core", Verdict::Ignored(ERROR_PAGES)),
        "setoutputfilter" | "setinputfilter" => k("core", Verdict::Refused(FILTER)),
        "rewriteengine" if args.first().is_some_and(|a| a.eq_ignore_ascii_case("off")) => k("mod_rewrite", Verdict::Ignored("is off")),
        "rewriteengine" | "rewriterule" | "rewritecond" | "rewritebase" | "rewritemap" | "rewriteoptions" => k("mod_rewrite", Verdict::Refused(REWRITE)),
        "authtype" | "authname" => k("mod_authn_core", Verdict::Refused(AUTH)),
        "authbasicprovider" | "authbasicauthoritative" | "authbasicfake" | "authbasicusedigestalgorithm" => k("mod_auth_basic", Verdict::Refused(AUTH)),
        "authdigestprovider" | "authdigestalgorithm" | "authdigestdomain" | "authdigestnoncelifetime" | "authdigestqop" | "authdigestshmemsize" => {
            k("mod_auth_digest", Verdict::Refused(AUTH))
        }
        "authuserfile" => k("mod_authn_file", Verdict::Refused(AUTH)),
        "authgroupfile" => k("mod_authz_groupfile", Verdict::Refused(AUTH)),
        "substitute" | "substituteinheritbefore" | "substitutemaxlinelength" => k("mod_substitute", Verdict::Refused(SUBSTITUTE)),
        n if n.starts_with("proxyhtml") => k("mod_proxy_html", Verdict::Refused(PROXY_HTML)),
        "expiresactive" | "expiresbytype" | "expiresdefault" => k("mod_expires", Verdict::Refused(EXPIRES)),
        n if n.starts_with("cache") => k("mod_cache", Verdict::Refused(CACHE)),
        n if n.starts_with("remoteip") => k("mod_remoteip", Verdict::Refused(REMOTE_IP)),
        _ => None,
    }
}

/// The module whose handler `SetHandler NAME` names (mod_status's `server-status`, …).
pub(crate) fn handler_module(handler: &str) -> &'static str {
    match handler.to_ascii_lowercase().as_str() {
        "server-status" => "mod_status",
        "server-info" => "mod_info",
        "balancer-manager" => "mod_proxy_balancer",
        "cgi-script" => "mod_cgi",
        "ldap-status" => "mod_ldap",
        "imap-file" => "mod_imagemap",
        "send-as-is" => "mod_asis",
        "type-map" => "mod_negotiation",
        _ => "core",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(line: &str) -> Option<(&'static str, bool)> {
        let mut w = line.split_whitespace().map(String::from);
        let name = w.next().unwrap().to_ascii_lowercase();
        let args: Vec<String> = w.collect();
        lookup(&name, &args).map(|k| (k.module, matches!(k.verdict, Verdict::Ignored(_))))
    }

    #[test]
    fn local_file_directives_are_ignored_and_request_changing_ones_refused() {
        // (directive line, Some((module, ignored?)) or None for not in this table)
        let rows: &[(&str, Option<(&str, bool)>)] = &[
            ("AddLanguage da .dk", Some(("mod_mime", true))),
            ("AddCharset UTF-8 .utf8", Some(("mod_mime", true))),
            ("AddIcon /icons/a.gif .bin", Some(("mod_autoindex", true))),
            ("LanguagePriority en ca", Some(("mod_negotiation", true))),
            ("BrowserMatch Mozilla/2 nokeepalive", Some(("mod_setenvif", true))),
            ("BrowserMatch \"MSIE 4\\.0b2;\" nokeepalive downgrade-1.0 force-response-1.0", Some(("mod_setenvif", true))),
            ("BrowserMatch Java/1\\.0 force-proxy-request-1.0", Some(("mod_setenvif", false))),
            ("SetEnvIf Request_URI ^/git proxy-sendchunked", Some(("mod_setenvif", false))),
            ("SetEnv proxy-nokeepalive 1", Some(("mod_env", false))),
            ("SetEnv FOO bar", Some(("mod_env", true))),
            ("AddOutputFilterByType DEFLATE text/html text/plain", Some(("mod_filter", true))),
            ("AddOutputFilterByType SUBSTITUTE text/html", Some(("mod_filter", false))),
            ("Alias /icons/ /usr/share/apache2/icons/", Some(("mod_alias", true))),
            ("RedirectMatch ^/old /new", Some(("mod_alias", false))),
            ("ExtendedStatus On", Some(("mod_status", true))),
            ("RewriteEngine Off", Some(("mod_rewrite", true))),
            ("RewriteEngine On", Some(("mod_rewrite", false))),
            ("RewriteRule ^/a /b [R]", Some(("mod_rewrite", false))),
            ("AuthType Basic", Some(("mod_authn_core", false))),
            ("CacheEnable disk /", Some(("mod_cache", false))),
            ("RemoteIPHeader X-Forwarded-For", Some(("mod_remoteip", false))),
            ("ProxyHTMLEnable On", Some(("mod_proxy_html", false))),
            ("ProxyPass / http://127.0.0.1:1/", None),
            ("Frobnicate on", None),
        ];
        for (line, want) in rows {
            assert_eq!(verdict(line), *want, "{line}");
        }
    }
}
