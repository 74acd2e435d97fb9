//! "Did you mean" for misspelled component types and config keys.

/// The known name closest to `input`, when it is close enough to be a likely typo.
pub fn closest<'a>(input: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (input.len() / 3).max(2);
    known
        .into_iter()
        .map(|k| (edit_distance(input, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// ", did you mean \"x\"?" or nothing.
pub fn did_you_mean<'a>(input: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(input, known)
        .map(|k| format!(", did you mean {k:?}?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_names() {
        assert_eq!(closest("otlpp", ["otlp", "batch"]), Some("otlp"));
        assert_eq!(closest("endpont", ["endpoint", "tls"]), Some("endpoint"));
        assert_eq!(closest("zzzzzz", ["otlp", "batch"]), None);
    }
}
