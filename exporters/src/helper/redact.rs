//! Keeping credentials out of what exporters log and report: URLs are shown without their
//! query string, fragment and user info, where API keys and passwords travel.

/// `url` as it may appear in logs, health reasons and error messages: scheme, host, port and
/// path only (`https://user:pw@otlp.example/v1/logs?api_key=k` ->
/// `https://otlp.example/v1/logs`). Anything after a `?` or `#` and before an `@` in the
/// authority is removed, also from text that is not a valid URL.
pub fn redact_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn keeps_scheme_host_port_and_path_only() {
        for (url, shown) in [
            (
                "https://otlp.example:4318/v1/logs?api_key=12345&x=1",
                "https://otlp.example:4318/v1/logs",
            ),
            (
                "http://user:s3cret@collector:4318/otlp/v1/traces",
                "http://collector:4318/otlp/v1/traces",
            ),
            ("https://h/v1/metrics#token=9", "https://h/v1/metrics"),
            ("http://u:p@h:1?k=v", "http://h:1"),
            ("host:4317", "host:4317"),
            ("key@host:4317?x", "host:4317"),
            ("http://h/path/with@sign", "http://h/path/with@sign"),
            ("not a url ?secret", "not a url "),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
