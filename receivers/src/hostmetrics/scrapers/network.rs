//! `network` (/proc/net/dev, /proc/net/tcp, /proc/net/tcp6): traffic, errors, drops and TCP
//! connections by state.

use super::{Host, ScrapeError, malformed, numbers};
use crate::hostmetrics::config::NetworkOptions;
use crate::hostmetrics::emit::{Emitter, Num};

/// TCP states by their /proc/net/tcp code (1..=11).
const TCP_STATES: [&str; 11] = [
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT_1",
    "FIN_WAIT_2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
];

/// Interface counters: receive bytes, packets, errors, drops; transmit the same.
fn interfaces(
    host: &Host,
    options: &NetworkOptions,
) -> Result<Vec<(String, [u64; 8])>, ScrapeError> {
    let text = host.read("network", "/proc/net/dev")?;
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if options.exclude_devices.iter().any(|d| d == name) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let n = numbers(&fields)
            .filter(|n| n.len() >= 12)
            .ok_or_else(|| malformed("network", "/proc/net/dev line"))?;
        out.push((
            name.to_string(),
            [n[0], n[1], n[2], n[3], n[8], n[9], n[10], n[11]],
        ));
    }
    Ok(out)
}

fn connections(host: &Host) -> Result<[i64; 11], ScrapeError> {
    let mut counts = [0i64; 11];
    let mut read_any = false;
    let mut last_error = None;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match host.read("network", file) {
            Ok(text) => {
                read_any = true;
                for line in text.lines().skip(1) {
                    let state = line
                        .split_whitespace()
                        .nth(3)
                        .and_then(|s| u8::from_str_radix(s, 16).ok());
                    match state {
                        Some(s @ 1..=11) => counts[usize::from(s - 1)] += 1,
                        _ => return Err(malformed("network", &format!("{file} line"))),
                    }
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    match (read_any, last_error) {
        (false, Some(e)) => Err(e),
        _ => Ok(counts),
    }
}

/// `system.network.io`, `.packets`, `.errors`, `.dropped` by device and direction;
/// `system.network.connections` by protocol and state.
pub(crate) fn scrape(host: &Host, options: &NetworkOptions, out: &mut Emitter) -> Vec<ScrapeError> {
    let mut errors = Vec::new();
    match interfaces(host, options) {
        Ok(ifaces) => {
            let labels: Vec<[[(&str, &str); 2]; 2]> = ifaces
                .iter()
                .map(|(name, _)| {
                    [
                        [("device", name.as_str()), ("direction", "receive")],
                        [("device", name.as_str()), ("direction", "transmit")],
                    ]
                })
                .collect();
            for (metric, unit, description, offset) in [
                (
                    "system.network.io",
                    "By",
                    "Bytes received and transmitted.",
                    0,
                ),
                (
                    "system.network.packets",
                    "{packet}",
                    "Packets received and transmitted.",
                    1,
                ),
                (
                    "system.network.errors",
                    "{error}",
                    "Receive and transmit errors.",
                    2,
                ),
                (
                    "system.network.dropped",
                    "{packet}",
                    "Packets dropped on receive and transmit.",
                    3,
                ),
            ] {
                let points: Vec<_> = ifaces
                    .iter()
                    .zip(&labels)
                    .flat_map(|((_, c), l)| {
                        [
                            (&l[0][..], Num::Int(c[offset] as i64)),
                            (&l[1][..], Num::Int(c[4 + offset] as i64)),
                        ]
                    })
                    .collect();
                out.sum(metric, unit, description, true, &points);
            }
        }
        Err(e) => errors.push(e),
    }
    if !options.connections {
        return errors;
    }
    match connections(host) {
        Ok(counts) => {
            let labels: Vec<[(&str, &str); 2]> = TCP_STATES
                .iter()
                .map(|s| [("protocol", "tcp"), ("state", *s)])
                .collect();
            let points: Vec<_> = labels
                .iter()
                .zip(counts)
                .map(|(l, c)| (&l[..], Num::Int(c)))
                .collect();
            out.sum(
                "system.network.connections",
                "{connection}",
                "TCP connections by state.",
                false,
                &points,
            );
        }
        Err(e) => errors.push(e),
    }
    errors
}
