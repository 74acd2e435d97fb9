//! A small glob matcher and directory walker: `*` and `?` within one path component,
//! `[a-z]` / `[!a-z]` classes, `{a,b}` alternatives and `**` for any number of directories.

use std::path::{Path, PathBuf};

/// Deepest `**` descends, so a symlink loop cannot run away.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    Any,
    One,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Pattern(Vec<Token>),
    DoubleStar,
}

/// One compiled pattern (after `{a,b}` expansion, several alternatives).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Glob {
    alternatives: Vec<Alternative>,
}

#[derive(Debug, Clone, PartialEq)]
struct Alternative {
    absolute: bool,
    segments: Vec<Segment>,
    /// The pattern's last component, for the compressed-file rule.
    last: String,
}

impl Glob {
    /// Compiles `pattern`; an error says what is wrong with it.
    pub(crate) fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.trim().is_empty() {
            return Err("empty pattern".into());
        }
        let alternatives = expand_braces(pattern)?
            .iter()
            .map(|p| compile(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Glob { alternatives })
    }

    /// Whether `path` matches.
    pub(crate) fn matches(&self, path: &Path) -> bool {
        self.matching_alternative(path).is_some()
    }

    /// Whether the alternative that matches `path` names `extension` in its last component
    /// (`*.gz` includes compressed files explicitly, `*` does not).
    pub(crate) fn names_extension(&self, path: &Path, extension: &str) -> bool {
        self.matching_alternative(path)
            .is_some_and(|a| a.last.ends_with(extension))
    }

    fn matching_alternative(&self, path: &Path) -> Option<&Alternative> {
        let text = path.to_string_lossy();
        let parts: Vec<&str> = text.split('/').filter(|p| !p.is_empty()).collect();
        self.alternatives
            .iter()
            .find(|a| a.absolute == text.starts_with('/') && match_segments(&a.segments, &parts))
    }

    /// Every regular file (following symlinks) the pattern matches now.
    pub(crate) fn walk(&self, out: &mut Vec<PathBuf>) {
        for a in &self.alternatives {
            let base = if a.absolute {
                PathBuf::from("/")
            } else {
                PathBuf::from(".")
            };
            walk(&base, !a.absolute, &a.segments, 0, out);
        }
    }
}

fn join(dir: &Path, relative_root: bool, name: &str) -> PathBuf {
    if relative_root && dir == Path::new(".") {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

fn walk(dir: &Path, rel: bool, segments: &[Segment], depth: usize, out: &mut Vec<PathBuf>) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    match first {
        Segment::Literal(name) => {
            let path = join(dir, rel, name);
            if rest.is_empty() {
                if path.is_file() {
                    out.push(path);
                }
            } else if path.is_dir() {
                walk(&path, false, rest, depth, out);
            }
        }
        Segment::Pattern(tokens) => {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !match_tokens(tokens, &name.chars().collect::<Vec<_>>()) {
                    continue;
                }
                let path = join(dir, rel, &name);
                if rest.is_empty() {
                    if path.is_file() {
                        out.push(path);
                    }
                } else if path.is_dir() {
                    walk(&path, false, rest, depth, out);
                }
            }
        }
        Segment::DoubleStar => {
            // Zero directories...
            walk(dir, rel, rest, depth, out);
            if depth >= MAX_DEPTH {
                return;
            }
            // ...or one more, then `**` again.
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let path = join(dir, rel, &name.to_string_lossy());
                if path.is_dir() {
                    walk(&path, false, segments, depth + 1, out);
                }
            }
        }
    }
}

fn match_segments(segments: &[Segment], parts: &[&str]) -> bool {
    match segments.split_first() {
        None => parts.is_empty(),
        Some((Segment::DoubleStar, rest)) => {
            (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..]))
        }
        Some((seg, rest)) => {
            let Some((part, parts_rest)) = parts.split_first() else {
                return false;
            };
            let ok = match seg {
                Segment::Literal(l) => l == part,
                Segment::Pattern(t) => match_tokens(t, &part.chars().collect::<Vec<_>>()),
                Segment::DoubleStar => true,
            };
            ok && match_segments(rest, parts_rest)
        }
    }
}

/// Wildcard matching with one backtracking point for `*`.
fn match_tokens(tokens: &[Token], name: &[char]) -> bool {
    let (mut t, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Any) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(tok) if token_matches(tok, name[n]) => {
                t += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((st, sn)) => {
                t = st + 1;
                n = sn + 1;
                star = Some((st, sn + 1));
            }
            None => return false,
        }
    }
    tokens[t.min(tokens.len())..]
        .iter()
        .all(|tok| *tok == Token::Any)
}

fn token_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Char(x) => *x == c,
        Token::One => true,
        Token::Any => true,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
        }
    }
}

fn compile(pattern: &str) -> Result<Alternative, String> {
    let absolute = pattern.starts_with('/');
    let mut segments = Vec::new();
    let parts: Vec<&str> = pattern
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        return Err(format!("{pattern:?} names no file"));
    }
    for part in &parts {
        if *part == "**" {
            if segments.last() != Some(&Segment::DoubleStar) {
                segments.push(Segment::DoubleStar);
            }
            continue;
        }
        if part.contains("**") {
            return Err(format!(
                "{pattern:?}: `**` must be a whole path component, as in dir/**/*.log"
            ));
        }
        let tokens = tokenize(part).map_err(|e| format!("{pattern:?}: {e}"))?;
        if tokens.iter().all(|t| matches!(t, Token::Char(_))) {
            segments.push(Segment::Literal((*part).to_string()));
        } else {
            segments.push(Segment::Pattern(tokens));
        }
    }
    if segments.last() == Some(&Segment::DoubleStar) {
        return Err(format!(
            "{pattern:?} ends in `**`: name the files, as in dir/**/*.log"
        ));
    }
    Ok(Alternative {
        absolute,
        segments,
        last: parts.last().map(|s| s.to_string()).unwrap_or_default(),
    })
}

fn tokenize(part: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = part.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if out.last() != Some(&Token::Any) {
                    out.push(Token::Any);
                }
            }
            '?' => out.push(Token::One),
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push(Token::Char(chars[i]));
            }
            '[' => {
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('!') | Some('^'));
                if negated {
                    j += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(&c) = chars.get(j) else {
                        return Err("unclosed `[`".into());
                    };
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    if chars.get(j + 1) == Some(&'-') && chars.get(j + 2).is_some_and(|c| *c != ']')
                    {
                        let hi = chars[j + 2];
                        if hi < c {
                            return Err(format!("bad range {c}-{hi}"));
                        }
                        ranges.push((c, hi));
                        j += 3;
                    } else {
                        ranges.push((c, c));
                        j += 1;
                    }
                }
                out.push(Token::Class { negated, ranges });
                i = j;
            }
            c => out.push(Token::Char(c)),
        }
        i += 1;
    }
    Ok(out)
}

/// `a{b,c}d` -> `abd`, `acd` (nested braces work; an unbalanced one is an error).
fn expand_braces(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err(format!("{pattern:?}: `}}` without `{{`"));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let mut depth = 0;
    let mut close = None;
    let mut commas = Vec::new();
    for (i, c) in pattern[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(open + i),
            _ => {}
        }
    }
    let close = close.ok_or_else(|| format!("{pattern:?}: unclosed `{{`"))?;
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let choice = &pattern[w[0] + 1..w[1]];
        out.extend(expand_braces(&format!("{head}{choice}{tail}"))?);
    }
    if out.len() > 1024 {
        return Err(format!("{pattern:?}: too many `{{,}}` alternatives"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_components() {
        let g = Glob::new("/var/log/app/*.log").unwrap();
        assert!(g.matches(Path::new("/var/log/app/a.log")));
        assert!(!g.matches(Path::new("/var/log/app/sub/a.log")));
        assert!(!g.matches(Path::new("/var/log/app/a.log.1")));
        let g = Glob::new("/var/log/**/*.{log,txt}").unwrap();
        assert!(g.matches(Path::new("/var/log/a.log")));
        assert!(g.matches(Path::new("/var/log/x/y/a.txt")));
        assert!(!g.matches(Path::new("/var/log/x/y/a.gz")));
        let g = Glob::new("/l/app-[0-9]?.log").unwrap();
        assert!(g.matches(Path::new("/l/app-1x.log")));
        assert!(!g.matches(Path::new("/l/app-ax.log")));
        let g = Glob::new("/l/[!a]*").unwrap();
        assert!(g.matches(Path::new("/l/b")));
        assert!(!g.matches(Path::new("/l/abc")));
        assert!(Glob::new("/l/[abc").is_err());
        assert!(Glob::new("/l/{a,b").is_err());
        assert!(Glob::new("/l/**").is_err());
        assert!(Glob::new("/l/a**b/x").is_err());
    }

    #[test]
    fn names_extension_only_when_explicit() {
        let g = Glob::new("/l/app.log*").unwrap();
        assert!(!g.names_extension(Path::new("/l/app.log.1.gz"), ".gz"));
        let g = Glob::new("/l/{*.log,*.gz}").unwrap();
        assert!(g.names_extension(Path::new("/l/app.log.1.gz"), ".gz"));
        assert!(!g.names_extension(Path::new("/l/app.log"), ".gz"));
    }
}
