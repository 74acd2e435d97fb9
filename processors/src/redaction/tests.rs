use std::time::Duration;

use pipeline_core::proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as V,
};
use pipeline_core::proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use pipeline_core::proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary as SummaryData, SummaryDataPoint, metric::Data,
};
use pipeline_core::proto::tonic::resource::v1::Resource;
use pipeline_core::proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use pipeline_core::telemetry::Telemetry;
use pipeline_core::testing::{CollectingConsumer, check_processor};
use pipeline_core::{Batch, ComponentId, ComponentKind, Consumer, Payload};
use serde_json::json;
use tokio::time::Instant;

use super::detectors::{bit, open_gates};
use super::redactor::StrOutcome;
use super::*;
use pipeline_core::DynProcessorFactory;
use serde_json::Value;

// ---- helpers ----

/// Parses, checks and compiles a config.
fn build(config: &Value) -> Result<Redactor, pipeline_core::FieldError> {
    Redactor::new(&<RedactionConfig as pipeline_core::ComponentConfig>::parse(
        config,
    )?)
}

fn redactor(config: Value) -> Redactor {
    build(&config).unwrap_or_else(|e| panic!("config {config}: {e}"))
}

fn apply(r: &Redactor, s: &str) -> String {
    let mut counts = vec![0; r.rules().len()];
    match r.redact_str(s, &mut counts) {
        StrOutcome::Keep => s.to_string(),
        StrOutcome::Replace(x) => x,
        StrOutcome::Remove => "<removed>".to_string(),
    }
}

fn detect(detector: &str, s: &str) -> String {
    apply(
        &redactor(json!({"allow_all_keys": true, "detectors": [detector]})),
        s,
    )
}

fn assert_masks(detector: &str, cases: &[(&str, &str)]) {
    for (input, expected) in cases {
        assert_eq!(
            detect(detector, input),
            *expected,
            "{detector} on {input:?}"
        );
    }
}

fn assert_keeps(detector: &str, cases: &[&str]) {
    for input in cases {
        assert_eq!(
            detect(detector, input),
            *input,
            "{detector} must keep {input:?}"
        );
    }
}

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(V::StringValue(v.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

fn skv(key: &str, value: &str) -> KeyValue {
    kv(key, s(value))
}

fn ikv(key: &str, value: i64) -> KeyValue {
    kv(
        key,
        Some(AnyValue {
            value: Some(V::IntValue(value)),
        }),
    )
}

fn map(entries: Vec<KeyValue>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(V::KvlistValue(KeyValueList { values: entries })),
    })
}

fn array(values: Vec<Option<AnyValue>>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(V::ArrayValue(ArrayValue {
            values: values.into_iter().flatten().collect(),
        })),
    })
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a V> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn get_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match get(attrs, key) {
        Some(V::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn processor(config: Value, signal: Signal) -> (RedactionProcessor, Telemetry) {
    let telemetry = Telemetry::new();
    let mut ctx = CreateContext::for_tests(ComponentKind::Processor, "redaction/test");
    ctx.telemetry = telemetry.component(
        ComponentKind::Processor,
        &ComponentId::parse("redaction/test").unwrap(),
    );
    let redactor = build(&config).unwrap();
    let family = ctx
        .telemetry
        .counter_family(REDACTIONS_METRIC, "help", &["signal", "rule", "action"])
        .unwrap();
    let counters = redactor
        .rules()
        .iter()
        .map(|r| {
            family.with_label_values(&[
                "redaction/test",
                signal.as_str(),
                &r.name,
                r.action.as_str(),
            ])
        })
        .collect();
    (
        RedactionProcessor::new(
            Arc::new(redactor),
            Arc::new(pipeline_core::testing::NopConsumer),
            counters,
        ),
        telemetry,
    )
}

fn one_span(attributes: Vec<KeyValue>) -> Payload {
    Payload::Traces(vec![ResourceSpans {
        resource: Some(Resource::default()),
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                name: "GET /users".into(),
                attributes,
                ..Default::default()
            }],
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

fn span_attrs(p: &Payload) -> &[KeyValue] {
    match p {
        Payload::Traces(rs) => &rs[0].scope_spans[0].spans[0].attributes,
        _ => panic!("not traces"),
    }
}

/// Redacts one span's attributes with `config` and returns them.
fn redact_span(config: Value, attributes: Vec<KeyValue>) -> Vec<KeyValue> {
    let (p, _) = processor(config, Signal::Traces);
    let mut payload = one_span(attributes);
    p.redact(&mut payload);
    span_attrs(&payload).to_vec()
}

fn all_detectors() -> Value {
    json!([
        "email",
        "credit_card",
        "ipv4",
        "ipv6",
        "jwt",
        "bearer_token",
        "aws_access_key",
        "url_credentials",
        "url_query"
    ])
}

// ---- lifecycle ----

#[tokio::test]
async fn conformance() {
    check_processor(&Factory).await;
}

#[tokio::test]
async fn redacts_and_passes_on() {
    let out = CollectingConsumer::new();
    let ctx = CreateContext::for_tests(ComponentKind::Processor, "redaction");
    let p = Factory
        .create(
            ctx,
            &json!({"allow_all_keys": true, "detectors": ["email"]}),
            Signal::Traces,
            out.clone(),
        )
        .unwrap();
    assert!(p.capabilities().mutates_data);
    p.consume(Batch::new(one_span(vec![skv("user", "bob@example.com")])))
        .await
        .unwrap();
    assert_eq!(out.wait_for_items(1, Duration::from_secs(5)).await, 1);
    let got = out.batches();
    assert_eq!(
        get_str(span_attrs(&got[0].payload_view()), "user"),
        Some(MASK)
    );
    p.shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}

// ---- detectors: true positives and true negatives ----

#[test]
fn email() {
    assert_masks(
        "email",
        &[
            ("bob@example.com", "****"),
            (
                "contact alice.smith+tag@mail.example.co.uk now",
                "contact **** now",
            ),
            ("<ops_team-1@corp.io>", "<****>"),
            ("a@b.com, c@d.org", "****, ****"),
            (
                "x@y then first.last@sub.domain.example.org",
                "x@y then ****",
            ),
            ("to:a@b.com2", "to:****2"),
            ("mailto:ops@corp.io?subject=hi", "mailto:****?subject=hi"),
        ],
    );
    // Policy: a domain without a dot and a letter top-level domain is not an address.
    assert_keeps(
        "email",
        &[
            "user@localhost",
            "root@10.0.0.1",
            "@example.com",
            "git clone repo",
            "price: 5 @ 3.50",
            "name@host.c",
        ],
    );
}

#[test]
fn credit_card() {
    assert_masks(
        "credit_card",
        &[
            ("4111111111111111", "****"),
            ("4111 1111 1111 1111", "****"),
            // A date before the card forms a Luhn-valid 16 digits with its first half: the
            // whole card is still masked (the date with it).
            ("2024-01-09 4111 1111 1111 1111", "****"),
            ("card 4111-1111-1111-1111 exp 12/27", "card **** exp 12/27"),
            ("5555555555554444", "****"),
            ("amex 378282246310005.", "amex ****."),
            ("6011111111111117", "****"),
            ("diners 30569309025904", "diners ****"),
            ("2223003122003222", "****"),
            ("txn_4111111111111111", "txn_****"),
            // The card is found inside a longer run of groups.
            ("4111 1111 1111 1111 12", "**** 12"),
            ("qty 2 4111 1111 1111 1111", "qty 2 ****"),
            ("4111111111111111 and 5555-5555-5555-4444", "**** and ****"),
        ],
    );
    assert_keeps(
        "credit_card",
        &[
            // 16 digits failing Luhn: an order number survives.
            "4111111111111112",
            "order 4111 1111 1111 1112",
            // Luhn-valid, but starting with 1: epoch timestamps in ms, us, ns.
            "1705314600123",
            "1705314600123456789",
            // Too short, too long, glued to more digits.
            "411111111111",
            "41111111111111110000",
            "x41111111111111119",
            "2024-01-15 10:30:00",
            "+1-555-123-4567",
        ],
    );
}

#[test]
fn ipv4() {
    assert_masks(
        "ipv4",
        &[
            ("192.168.1.10", "****"),
            ("client 10.42.7.19 connected", "client **** connected"),
            ("10.0.0.1:8080", "****:8080"),
            ("from=8.8.8.8,to=1.1.1.1", "from=****,to=****"),
            ("255.255.255.255.", "****."),
            ("10.0.0.0/24", "****/24"),
            ("ip=10.0.0.1;", "ip=****;"),
        ],
    );
    assert_keeps(
        "ipv4",
        &[
            "version 1.2.3.4.5",
            "999.1.1.1",
            "v1.2.3.4",
            "1.2.3",
            "3.14159",
            "10.0.0.256",
            "1234.1.1.1",
            "1.2.3.4567",
        ],
    );
}

#[test]
fn ipv6() {
    assert_masks(
        "ipv6",
        &[
            ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "****"),
            ("2001:db8::1", "****"),
            ("peer ::1 closed", "peer **** closed"),
            // Punctuation after the address and a label before it are not part of it.
            ("connected to 2001:db8::1.", "connected to ****."),
            ("peer 2001:db8::1: reset", "peer ****: reset"),
            ("ip:2001:db8::1", "ip:****"),
            ("addr:fe80::1 up", "addr:**** up"),
            ("ends in 2001:db8::", "ends in ****"),
            ("fe80::1%eth0", "****"),
            ("[2001:db8::ff00:42:8329]:443", "[****]:443"),
            ("::ffff:192.0.2.128", "****"),
            ("2001:db8:: and fe80::a:b", "**** and ****"),
        ],
    );
    assert_keeps(
        "ipv6",
        &[
            "10:30:00",
            "2024-01-15T10:30:00.123Z",
            "00:1A:2B:3C:4D:5E",
            "std::vector<int>",
            "Foo::bar()",
            "1:2:3",
        ],
    );
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

#[test]
fn jwt() {
    assert_masks(
        "jwt",
        &[
            (JWT, "****"),
            (&format!("token={JWT}&x=1"), "token=****&x=1"),
            ("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "****"),
        ],
    );
    assert_keeps(
        "jwt",
        &["eyJ", "hello.world.foo", "eyJhbGciOiJIUzI1NiJ9", "a.b.c.d"],
    );
}

#[test]
fn bearer_token() {
    assert_masks(
        "bearer_token",
        &[
            ("Bearer abc.DEF-123_xyz", "Bearer ****"),
            (
                "authorization: bearer tok3n==",
                "authorization: bearer ****",
            ),
            (&format!("Bearer {JWT}"), "Bearer ****"),
            // Basic credentials are base64 of user:password.
            ("Basic dXNlcjpwYXNzd29yZA==", "Basic ****"),
        ],
    );
    assert_keeps(
        "bearer_token",
        &[
            "basic authentication failed",
            "Basic aGVsbG8gd29ybGQ=",
            "unbearer tok",
            "Bearer",
        ],
    );
}

#[test]
fn aws_access_key() {
    assert_masks(
        "aws_access_key",
        &[
            ("AKIAIOSFODNN7EXAMPLE", "****"),
            ("key=ASIAY34FZKBOKMUTVV7A,", "key=****,"),
            ("A3T01234567890123456", "****"),
        ],
    );
    assert_keeps(
        "aws_access_key",
        &[
            "XAKIAIOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPLEX",
            "AKIA1234",
            "akiaiosfodnn7example",
        ],
    );
}

#[test]
fn url_credentials() {
    assert_masks(
        "url_credentials",
        &[
            (
                "postgres://u:p@ss@db.internal/app",
                "postgres://****@db.internal/app",
            ),
            (
                "postgres://admin:s3cr3t@db.internal:5432/app",
                "postgres://****@db.internal:5432/app",
            ),
            (
                "GET https://bob:hunter2@example.com/x failed",
                "GET https://****@example.com/x failed",
            ),
            ("redis://:pa55@cache:6379", "redis://****@cache:6379"),
        ],
    );
    assert_keeps(
        "url_credentials",
        &[
            "ssh://git@github.com/org/repo",
            "https://example.com/a:b@c",
            "https://example.com:8443/x",
        ],
    );
}

#[test]
fn url_query() {
    assert_masks(
        "url_query",
        &[
            (
                "https://api.example.com/v1?user=7&token=abc123&x=1",
                "https://api.example.com/v1?user=7&token=****&x=1",
            ),
            ("/login?API_KEY=zzz#frag", "/login?API_KEY=****#frag"),
            (
                "?password=p%40ss&access_token=t",
                "?password=****&access_token=****",
            ),
        ],
    );
    assert_keeps(
        "url_query",
        &[
            "/search?tokens=abc",
            "token=abc",
            "/x?token=",
            "/x?user=token",
        ],
    );
    let r = redactor(json!({
        "allow_all_keys": true,
        "detectors": ["url_query"],
        "url_query_params": ["session"],
    }));
    assert_eq!(
        apply(&r, "/a?session=42&token=t"),
        "/a?session=****&token=t"
    );
}

#[test]
fn multibyte_utf8_around_matches() {
    let r = redactor(json!({"allow_all_keys": true, "detectors": all_detectors()}));
    let cases = [
        (
            "név: jános.kovács@példa.hu — IP 10.1.2.3 ✓",
            "név: **** — IP **** ✓",
        ),
        ("カード番号4111111111111111です", "カード番号****です"),
        ("🙂bob@example.com🙂", "🙂****🙂"),
        ("адрес 2001:db8::1 ок", "адрес **** ок"),
        ("Ключ: Bearer абв", "Ключ: Bearer абв"),
        ("ünïcödé only", "ünïcödé only"),
    ];
    for (input, expected) in cases {
        assert_eq!(apply(&r, input), expected, "{input:?}");
    }
}

#[test]
fn gates_are_necessary_conditions() {
    // Every true positive above must get past its detector's gate (a gate that wrongly
    // closes would let PII through); a value without any marker passes no gate.
    for (d, samples) in [
        (Detector::Email, vec!["a@b.co", "jános.kovács@példa.hu"]),
        (
            Detector::CreditCard,
            vec!["4111 1111 1111 1111", "378282246310005"],
        ),
        (Detector::Ipv4, vec!["1.2.3.4"]),
        (Detector::Ipv6, vec!["::1", "fe80::1%eth0"]),
        (Detector::Jwt, vec![JWT]),
        (Detector::BearerToken, vec!["Bearer x", "basic dXNlcjpw"]),
        (
            Detector::AwsAccessKey,
            vec![
                "AKIAIOSFODNN7EXAMPLE",
                "A3T0IOSFODNN7EXAMPLE",
                "A3T01234567890123456",
            ],
        ),
        (Detector::UrlCredentials, vec!["s://u:p@h"]),
        (Detector::UrlQuery, vec!["?token=1"]),
    ] {
        let on = bit(d);
        let passes = |text: &str| open_gates(text, on) == on;
        for sample in samples {
            assert!(passes(sample), "{d:?} gate on {sample:?}");
            assert_ne!(detect(d.as_str(), sample), sample, "{d:?} on {sample:?}");
        }
        for clean in ["GET /api/users", "https://api.example.com/v1/orders/42"] {
            assert!(!passes(clean), "{d:?} on {clean:?}");
        }
        let agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)";
        assert_eq!(detect(d.as_str(), agent), agent);
    }
}

// ---- actions ----

#[test]
fn hash_is_stable_across_restarts_and_depends_on_the_key() {
    let config = |key: &str| {
        json!({
            "allow_all_keys": true,
            "detectors": [{"name": "email", "action": "hash"}],
            "hash_key": key,
        })
    };
    // Two processors built apart (as after a restart) with the same key agree.
    let first = apply(&redactor(config("k1")), "user bob@example.com logged in");
    let again = apply(&redactor(config("k1")), "user bob@example.com logged in");
    let other_key = apply(&redactor(config("k2")), "user bob@example.com logged in");
    let other_value = apply(&redactor(config("k1")), "user eve@example.com logged in");
    assert_eq!(first, again);
    assert_ne!(first, other_key);
    assert_ne!(first, other_value);
    let pseudonym = first
        .strip_prefix("user ")
        .and_then(|s| s.strip_suffix(" logged in"))
        .unwrap();
    assert_eq!(pseudonym.len(), 16);
    assert!(pseudonym.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!first.contains("bob"));
    // HMAC-SHA256("k1", "bob@example.com"), first 16 hex characters.
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k1"),
        b"bob@example.com",
    );
    let hex: String = tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(pseudonym, hex);
    // Within one batch the second occurrence comes from the pass's memo: the same pseudonym.
    let (p, _) = processor(config("k1"), Signal::Traces);
    let mut payload = one_span(vec![
        skv("a", "bob@example.com"),
        skv("b", "bob@example.com"),
    ]);
    p.redact(&mut payload);
    let attrs = span_attrs(&payload);
    assert_eq!(get_str(attrs, "a"), Some(hex.as_str()));
    assert_eq!(get_str(attrs, "b"), Some(hex.as_str()));
    // hash_length sets the prefix length.
    let mut long = config("k1");
    long["hash_length"] = json!(64);
    let full = apply(&redactor(long), "bob@example.com");
    assert_eq!(full.len(), 64);
    assert!(full.starts_with(&hex));
}

#[test]
fn hash_key_may_be_a_number_from_the_environment() {
    // `hash_key: ${env:KEY}` with KEY=12345 arrives as a YAML number.
    let a = apply(
        &redactor(
            json!({"allow_all_keys": true, "blocked_values": ["x+"], "action": "hash", "hash_key": 12345}),
        ),
        "xx",
    );
    let b = apply(
        &redactor(
            json!({"allow_all_keys": true, "blocked_values": ["x+"], "action": "hash", "hash_key": "12345"}),
        ),
        "xx",
    );
    assert_eq!(a, b);
    assert_ne!(a, "xx");
    assert!(
        !format!(
            "{:?}",
            RedactionConfig {
                hash_key: Some(HashKey::from("topsecret")),
                ..Default::default()
            }
        )
        .contains("topsecret")
    );
}

#[test]
fn per_rule_actions_and_blocked_keys() {
    let attrs = redact_span(
        json!({
            "allow_all_keys": true,
            "blocked_keys": [
                "(?i)password",
                {"pattern": "(?i)^secret", "action": "remove"},
                {"pattern": "^user\\.id$", "action": "hash", "name": "user_id"},
            ],
            "blocked_values": [{"pattern": "ssn-\\d{3}-\\d{2}-\\d{4}", "name": "ssn"}],
            "detectors": ["email", {"name": "ipv4", "action": "remove"}],
            "hash_key": "k",
            "summary": "silent",
        }),
        vec![
            skv("db.password", "hunter2"),
            ikv("PASSWORD_LEN", 7),
            skv("secret.token", "abc"),
            skv("user.id", "42"),
            skv("note", "customer ssn-123-45-6789 called"),
            skv("client.address", "10.0.0.7"),
            skv("contact", "mail bob@example.com"),
            skv("http.route", "/users/{id}"),
        ],
    );
    assert_eq!(get_str(&attrs, "db.password"), Some(MASK));
    assert_eq!(
        get_str(&attrs, "PASSWORD_LEN"),
        Some(MASK),
        "non-strings too"
    );
    assert!(get(&attrs, "secret.token").is_none());
    let hashed = get_str(&attrs, "user.id").unwrap();
    assert_eq!(hashed.len(), 16);
    assert_ne!(hashed, "42");
    assert_eq!(get_str(&attrs, "note"), Some("customer **** called"));
    assert!(get(&attrs, "client.address").is_none());
    assert_eq!(get_str(&attrs, "contact"), Some("mail ****"));
    assert_eq!(get_str(&attrs, "http.route"), Some("/users/{id}"));
}

#[test]
fn remembered_clean_values_never_hide_pii() {
    // Positions remember the value last found clean; a different value in the same place
    // (and the same value once it carries PII) must still be scanned, across records and
    // across batches.
    let (p, _) = processor(
        json!({"allow_all_keys": true, "detectors": ["email", "credit_card"], "summary": "silent"}),
        Signal::Traces,
    );
    let values = [
        ("fine", "fine"),
        ("fine", "fine"),
        ("bob@example.com", MASK),
        ("fine", "fine"),
        ("eve@example.com", MASK),
        ("eve@example.com", MASK),
    ];
    for (input, expected) in values {
        let mut payload = one_span(vec![
            skv("user", input),
            ikv("n", 4111111111111111),
            ikv("m", 200),
        ]);
        p.redact(&mut payload);
        let attrs = span_attrs(&payload);
        assert_eq!(get_str(attrs, "user"), Some(expected), "{input}");
        assert_eq!(get_str(attrs, "n"), Some(MASK));
        assert_eq!(get(attrs, "m"), Some(&V::IntValue(200)));
    }
}

#[test]
fn integer_values_are_scanned() {
    let attrs = redact_span(
        json!({"allow_all_keys": true, "detectors": ["credit_card"], "summary": "silent"}),
        vec![
            ikv("card", 4111111111111111),
            ikv("status", 200),
            ikv("ts", 1705314600123),
        ],
    );
    assert_eq!(get_str(&attrs, "card"), Some(MASK));
    assert_eq!(get(&attrs, "status"), Some(&V::IntValue(200)));
    assert_eq!(get(&attrs, "ts"), Some(&V::IntValue(1705314600123)));
}

#[test]
fn named_redact_group_limits_the_replacement() {
    let r = redactor(json!({
        "allow_all_keys": true,
        "blocked_values": ["session=(?P<redact>[0-9a-f]+)"],
    }));
    assert_eq!(
        apply(&r, "id=1 session=deadbeef ok"),
        "id=1 session=**** ok"
    );
}

// ---- keys ----

#[test]
fn allowed_keys_removes_every_other_attribute() {
    let attrs = redact_span(
        json!({
            "allowed_keys": ["http.route", "http.response.status_code"],
            "ignored_keys": ["trace.note"],
            "summary": "debug",
        }),
        vec![
            skv("http.route", "/users/{id}"),
            ikv("http.response.status_code", 200),
            skv("user.email", "bob@example.com"),
            skv("enduser.id", "bob"),
            skv("trace.note", "kept as is"),
        ],
    );
    let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "http.route",
            "http.response.status_code",
            "trace.note",
            REMOVED_COUNT,
            REMOVED_KEYS
        ]
    );
    assert_eq!(get(&attrs, REMOVED_COUNT), Some(&V::IntValue(2)));
    assert_eq!(get_str(&attrs, REMOVED_KEYS), Some("enduser.id,user.email"));
}

#[test]
fn ignored_keys_are_never_touched() {
    let attrs = redact_span(
        json!({
            "allow_all_keys": true,
            "ignored_keys": ["debug.password"],
            "blocked_keys": ["password"],
            "detectors": ["email"],
        }),
        vec![
            skv("debug.password", "bob@example.com"),
            skv("password", "x"),
        ],
    );
    assert_eq!(get_str(&attrs, "debug.password"), Some("bob@example.com"));
    assert_eq!(get_str(&attrs, "password"), Some(MASK));
}

#[test]
fn allowed_values_are_left_alone() {
    let r = redactor(json!({
        "allow_all_keys": true,
        "detectors": ["email"],
        "allowed_values": ["@mycompany\\.com$"],
    }));
    assert_eq!(apply(&r, "ops@mycompany.com"), "ops@mycompany.com");
    assert_eq!(apply(&r, "bob@example.com"), MASK);
}

// ---- log bodies ----

#[test]
fn nested_log_bodies() {
    let (p, _) = processor(
        json!({
            "allow_all_keys": true,
            "blocked_keys": ["(?i)password"],
            "detectors": ["email", "ipv4", {"name": "credit_card", "action": "remove"}],
            "summary": "debug",
        }),
        Signal::Logs,
    );
    let body = map(vec![
        skv("msg", "login by bob@example.com from 10.0.0.1"),
        kv(
            "user",
            map(vec![
                skv("name", "Bob"),
                skv("password", "hunter2"),
                kv("emails", array(vec![s("b@example.com"), s("not an email")])),
            ]),
        ),
        kv("cards", array(vec![s("4111111111111111"), s("none")])),
        skv("card_text", "pay 4111 1111 1111 1111"),
    ]);
    let mut payload = Payload::Logs(vec![ResourceLogs {
        resource: None,
        scope_logs: vec![ScopeLogs {
            log_records: vec![
                LogRecord {
                    body,
                    ..Default::default()
                },
                LogRecord {
                    body: s("card 5555555555554444"),
                    ..Default::default()
                },
                LogRecord {
                    body: s("hello from 192.168.0.1"),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        schema_url: String::new(),
    }]);
    p.redact(&mut payload);
    let Payload::Logs(rl) = &payload else {
        panic!()
    };
    let records = &rl[0].scope_logs[0].log_records;
    let Some(V::KvlistValue(body)) = records[0].body.as_ref().and_then(|b| b.value.as_ref()) else {
        panic!("body is still a map")
    };
    assert_eq!(
        get_str(&body.values, "msg"),
        Some("login by **** from ****")
    );
    let Some(V::KvlistValue(user)) = get(&body.values, "user") else {
        panic!()
    };
    assert_eq!(get_str(&user.values, "name"), Some("Bob"));
    assert_eq!(get_str(&user.values, "password"), Some(MASK));
    let Some(V::ArrayValue(emails)) = get(&user.values, "emails") else {
        panic!()
    };
    assert_eq!(emails.values[0].value, Some(V::StringValue(MASK.into())));
    assert_eq!(
        emails.values[1].value,
        Some(V::StringValue("not an email".into()))
    );
    let Some(V::ArrayValue(cards)) = get(&body.values, "cards") else {
        panic!()
    };
    assert_eq!(cards.values.len(), 1, "the card element is removed");
    assert!(
        get(&body.values, "card_text").is_none(),
        "the entry is removed"
    );
    let attrs = &records[0].attributes;
    assert_eq!(get(attrs, MASKED_COUNT), Some(&V::IntValue(3)));
    assert_eq!(
        get_str(attrs, MASKED_KEYS),
        Some("body.msg,body.user.emails[0],body.user.password")
    );
    assert_eq!(
        get_str(attrs, REMOVED_KEYS),
        Some("body.card_text,body.cards[0]")
    );
    assert!(
        records[1].body.is_none(),
        "a string body a remove rule hits goes"
    );
    assert_eq!(get_str(&records[1].attributes, REMOVED_KEYS), Some("body"));
    assert_eq!(
        records[2].body.as_ref().and_then(|b| b.value.clone()),
        Some(V::StringValue("hello from ****".into()))
    );
}

// ---- summary ----

#[test]
fn summary_levels() {
    let attrs = || {
        vec![
            skv("email", "bob@example.com"),
            skv("ip", "10.0.0.1"),
            skv("gone", "x"),
            skv("keep", "fine"),
        ]
    };
    let config = |summary: &str| {
        json!({
            "allowed_keys": ["email", "ip", "keep"],
            "detectors": ["email", "ipv4"],
            "summary": summary,
        })
    };
    let silent = redact_span(config("silent"), attrs());
    assert_eq!(silent.len(), 3);
    assert!(silent.iter().all(|kv| !kv.key.starts_with("redaction.")));

    let info = redact_span(config("info"), attrs());
    assert_eq!(get(&info, MASKED_COUNT), Some(&V::IntValue(2)));
    assert_eq!(get_str(&info, MASKED_KEYS), Some("email,ip"));
    assert!(get(&info, REMOVED_KEYS).is_none());
    assert!(get(&info, REMOVED_COUNT).is_none());

    let debug = redact_span(config("debug"), attrs());
    assert_eq!(get(&debug, MASKED_COUNT), Some(&V::IntValue(2)));
    assert_eq!(get_str(&debug, REMOVED_KEYS), Some("gone"));
    assert_eq!(get(&debug, REMOVED_COUNT), Some(&V::IntValue(1)));

    // An unchanged record gets no summary.
    let clean = redact_span(config("debug"), vec![skv("keep", "fine")]);
    assert_eq!(clean.len(), 1);
}

// ---- every signal ----

#[test]
fn traces_everywhere() {
    let (p, _) = processor(
        json!({
            "allow_all_keys": true,
            "detectors": ["email"],
            "redact_span_names": true,
            "summary": "info",
        }),
        Signal::Traces,
    );
    let mut payload = Payload::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![skv("owner", "ops@example.com")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                attributes: vec![skv("author", "dev@example.com")],
                ..Default::default()
            }),
            spans: vec![Span {
                name: "notify bob@example.com".into(),
                attributes: vec![skv("to", "bob@example.com")],
                events: vec![span::Event {
                    name: "sent".into(),
                    attributes: vec![skv("cc", "eve@example.com")],
                    ..Default::default()
                }],
                links: vec![span::Link {
                    attributes: vec![skv("from", "amy@example.com")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        schema_url: String::new(),
    }]);
    let counts = p.redact(&mut payload);
    let text = format!("{payload:?}");
    assert!(!text.contains("@example.com"), "{text}");
    let Payload::Traces(rs) = &payload else {
        panic!()
    };
    let span = &rs[0].scope_spans[0].spans[0];
    assert_eq!(span.name, "notify ****");
    assert_eq!(
        get_str(&span.attributes, MASKED_KEYS),
        Some("events[0].cc,links[0].from,name,to")
    );
    assert_eq!(get(&span.attributes, MASKED_COUNT), Some(&V::IntValue(4)));
    let resource = rs[0].resource.as_ref().unwrap();
    assert_eq!(get_str(&resource.attributes, MASKED_KEYS), Some("owner"));
    let scope = rs[0].scope_spans[0].scope.as_ref().unwrap();
    assert_eq!(get_str(&scope.attributes, MASKED_KEYS), Some("author"));
    assert_eq!(counts.iter().sum::<u64>(), 6);

    // Span names are left alone unless asked.
    let (p, _) = processor(
        json!({"allow_all_keys": true, "detectors": ["email"]}),
        Signal::Traces,
    );
    let mut payload = one_span(vec![]);
    if let Payload::Traces(rs) = &mut payload {
        rs[0].scope_spans[0].spans[0].name = "notify bob@example.com".into();
    }
    p.redact(&mut payload);
    let Payload::Traces(rs) = &payload else {
        panic!()
    };
    assert_eq!(rs[0].scope_spans[0].spans[0].name, "notify bob@example.com");
}

#[test]
fn logs_everywhere() {
    let (p, _) = processor(
        json!({"allow_all_keys": true, "detectors": ["ipv4"], "summary": "info"}),
        Signal::Logs,
    );
    let mut payload = Payload::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![skv("host.ip", "10.0.0.1")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                attributes: vec![skv("origin", "10.0.0.2")],
                ..Default::default()
            }),
            log_records: vec![LogRecord {
                body: s("request from 10.0.0.3"),
                attributes: vec![skv("client.address", "10.0.0.4")],
                ..Default::default()
            }],
            ..Default::default()
        }],
        schema_url: String::new(),
    }]);
    p.redact(&mut payload);
    let text = format!("{payload:?}");
    assert!(!text.contains("10.0.0."), "{text}");
    let Payload::Logs(rl) = &payload else {
        panic!()
    };
    assert_eq!(
        get_str(&rl[0].scope_logs[0].log_records[0].attributes, MASKED_KEYS),
        Some("body,client.address")
    );
}

#[test]
fn metrics_everywhere() {
    let (p, _) = processor(
        json!({"allow_all_keys": true, "detectors": ["email"], "summary": "info"}),
        Signal::Metrics,
    );
    let attrs = || vec![skv("user", "bob@example.com")];
    let exemplars = || {
        vec![Exemplar {
            filtered_attributes: vec![skv("user", "eve@example.com")],
            ..Default::default()
        }]
    };
    let number = || NumberDataPoint {
        attributes: attrs(),
        exemplars: exemplars(),
        ..Default::default()
    };
    let metric = |data| Metric {
        name: "m".into(),
        data: Some(data),
        ..Default::default()
    };
    let mut payload = Payload::Metrics(vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![skv("owner", "ops@example.com")],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                attributes: vec![skv("author", "dev@example.com")],
                ..Default::default()
            }),
            metrics: vec![
                metric(Data::Gauge(Gauge {
                    data_points: vec![number()],
                })),
                metric(Data::Sum(Sum {
                    data_points: vec![number()],
                    ..Default::default()
                })),
                metric(Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes: attrs(),
                        exemplars: exemplars(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
                metric(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        attributes: attrs(),
                        exemplars: exemplars(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })),
                metric(Data::Summary(SummaryData {
                    data_points: vec![SummaryDataPoint {
                        attributes: attrs(),
                        ..Default::default()
                    }],
                })),
            ],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }]);
    let counts = p.redact(&mut payload);
    let text = format!("{payload:?}");
    assert!(!text.contains("@example.com"), "{text}");
    // resource + scope + 5 points + 4 exemplars
    assert_eq!(counts.iter().sum::<u64>(), 11);
    let Payload::Metrics(rm) = &payload else {
        panic!()
    };
    let Some(Data::Histogram(h)) = &rm[0].scope_metrics[0].metrics[2].data else {
        panic!()
    };
    assert_eq!(
        get_str(&h.data_points[0].attributes, MASKED_KEYS),
        Some("exemplars[0].user,user")
    );
}

// ---- self-metrics ----

#[tokio::test]
async fn redactions_are_counted_per_rule() {
    let (p, telemetry) = processor(
        json!({
            "allowed_keys": ["a", "b", "c"],
            "blocked_keys": [{"pattern": "^c$", "name": "c_key"}],
            "detectors": ["email", "ipv4"],
        }),
        Signal::Traces,
    );
    p.consume(Batch::new(one_span(vec![
        skv("a", "bob@example.com and eve@example.com"),
        skv("b", "10.0.0.1"),
        skv("c", "x"),
        skv("d", "y"),
        skv("e", "z"),
    ])))
    .await
    .unwrap();
    let text = telemetry.render();
    for line in [
        r#"sightline_redaction_redactions_total{action="mask",component_id="redaction/test",rule="email",signal="traces"} 2"#,
        r#"sightline_redaction_redactions_total{action="mask",component_id="redaction/test",rule="ipv4",signal="traces"} 1"#,
        r#"sightline_redaction_redactions_total{action="mask",component_id="redaction/test",rule="c_key",signal="traces"} 1"#,
        r#"sightline_redaction_redactions_total{action="remove",component_id="redaction/test",rule="allowed_keys",signal="traces"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

// ---- config errors ----

/// `records` in one resource and scope, through `p`.
fn redact_logs(p: &RedactionProcessor, records: Vec<LogRecord>) -> Vec<LogRecord> {
    let mut payload = Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }]);
    p.redact(&mut payload);
    match payload {
        Payload::Logs(rl) => rl
            .into_iter()
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn keys_of_maps_inside_bodies_are_scanned_like_values() {
    let (p, _) = processor(
        json!({"allow_all_keys": true, "detectors": ["email", "ipv4"], "summary": "info"}),
        Signal::Logs,
    );
    let records = redact_logs(
        &p,
        vec![LogRecord {
            body: map(vec![skv("bob@example.com", "10.0.0.1"), skv("visits", "3")]),
            ..Default::default()
        }],
    );
    let record = &records[0];
    let Some(V::KvlistValue(body)) = record.body.as_ref().and_then(|b| b.value.as_ref()) else {
        panic!("body is still a map")
    };
    let keys: Vec<&str> = body.values.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, vec![MASK, "visits"]);
    assert_eq!(
        get_str(&body.values, MASK),
        Some(MASK),
        "the value is masked too"
    );
    let listed = get_str(&record.attributes, MASKED_KEYS).unwrap_or_default();
    assert!(!listed.contains("bob@example.com"), "{listed}");
    assert_eq!(get(&record.attributes, MASKED_COUNT), Some(&V::IntValue(2)));
}

#[test]
fn invalid_configs() {
    let err = |v: Value| Factory.validate(&v).unwrap_err();

    let e = err(json!({"blocked_values": ["ok", "email"]}));
    assert_eq!(e.path, "blocked_values[1]");
    assert!(e.message.contains("detectors: [email]"), "{}", e.message);

    let e = err(json!({"blocked_values": ["ok", "(?i)pass(word"]}));
    assert_eq!(e.path, "blocked_values[1]");
    assert!(e.message.contains("unclosed group"), "{}", e.message);
    assert!(e.message.contains("position 9"), "{}", e.message);

    let e = err(json!({"blocked_keys": [{"pattern": "a{2,1}"}]}));
    assert_eq!(e.path, "blocked_keys[0]");
    assert!(e.message.contains("position"), "{}", e.message);

    let e = err(json!({"allowed_values": ["[z-a]"]}));
    assert_eq!(e.path, "allowed_values[0]");

    let e = err(json!({"blocked_values": ["\\p{Nope}"]}));
    assert_eq!(e.path, "blocked_values[0]");
    assert!(e.message.contains("position 1"), "{}", e.message);

    let e = err(json!({"detectors": ["email", "credit_crad"]}));
    assert_eq!(e.path, "detectors[1]");
    assert!(
        e.message.contains("did you mean \"credit_card\""),
        "{}",
        e.message
    );

    let e = err(json!({"detectors": [{"name": "email", "acton": "hash"}]}));
    assert_eq!(e.path, "detectors[0].acton");
    assert!(
        e.message.contains("did you mean \"action\""),
        "{}",
        e.message
    );

    let e = err(json!({"blocked_values": [{"patern": "x"}]}));
    assert_eq!(e.path, "blocked_values[0].patern");

    let e = err(json!({"blocked_values": [{"pattern": "x", "action": "hash"}]}));
    assert_eq!(e.path, "hash_key");
    assert!(e.message.contains("blocked_values[0]"), "{}", e.message);

    let e = err(json!({"detectors": ["email"], "action": "hash", "hash_key": ""}));
    assert_eq!(e.path, "hash_key");

    let e = err(json!({"hash_length": 4}));
    assert_eq!(e.path, "hash_length");

    let e = err(json!({"detectors": ["email", "email"]}));
    assert_eq!(e.path, "detectors[1]");

    let e = err(json!({"detectors": ["url_query"], "url_query_params": []}));
    assert_eq!(e.path, "url_query_params");

    let e = err(json!({"summary": "verbose"}));
    assert_eq!(e.path, "summary");

    let e = err(json!({"action": "drop"}));
    assert_eq!(e.path, "action");

    let e = err(
        json!({"blocked_keys": [{"pattern": "a", "name": "x"}, {"pattern": "b", "name": "x"}]}),
    );
    assert_eq!(e.path, "blocked_keys[1].name");

    let e = err(json!({"alow_all_keys": true}));
    assert!(
        e.message.contains("did you mean \"allow_all_keys\""),
        "{}",
        e.message
    );

    // The issue's example config is valid.
    Factory
        .validate(&json!({
            "allow_all_keys": true,
            "blocked_keys": ["(?i)password", "(?i)secret"],
            "detectors": ["email", "credit_card", "ipv4", "jwt", "bearer_token"],
            "blocked_values": ["\\bssn-\\d{3}-\\d{2}-\\d{4}\\b"],
            "action": "mask",
            "hash_key": "from-env",
            "summary": "info",
        }))
        .unwrap();
}
