//! The documentation's links hold: every relative link and image in `README.md`, `SECURITY.md`
//! and `docs/**/*.md` names a file or directory of the repository, and every `#anchor` (alone or
//! after a Markdown file) names a heading of its target, by GitHub's slug rules.
//!
//! Links are Markdown inline links and images, `[text](target)` and `![alt](target)`, and
//! reference definitions, `[label]: target`; those inside fenced code blocks and inline code are
//! not links. `http://`, `https://` and `mailto:` targets are not checked (no network here). A
//! file outside the repository (such as the design beside it, `../shared/DESIGN.md`) cannot be
//! checked and so must be named as text, not linked.
//!
//! Also: `README.md` stays a front page (at most 300 lines) and links every file under `docs/`.
//!
//! Plain std: a small Markdown scanner, not a Markdown parser; it knows fences, code spans,
//! backslash escapes, nested brackets and balanced parentheses in targets, ATX headings and
//! HTML `id`/`name` anchors, which is what these files use.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The README is the first page, not the manual.
const README_MAX_LINES: usize = 300;

fn repo_root() -> PathBuf {
    normalize(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// `README.md`, `SECURITY.md` and every Markdown file under `docs/`, sorted.
fn documentation_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut docs = Vec::new();
    walk(&root.join("docs"), &mut docs);
    docs.sort();
    let mut files = vec![root.join("README.md"), root.join("SECURITY.md")];
    files.extend(docs);
    files
}

/// A link found in a Markdown file: the line it starts on and its target as written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    line: usize,
    target: String,
}

/// Whether `line` opens or closes a code fence: its fence character and length.
fn fence(line: &str) -> Option<(char, usize)> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None; // indented code, not a fence
    }
    let c = trimmed.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = trimmed.chars().take_while(|&x| x == c).count();
    (n >= 3).then_some((c, n))
}

/// The text with every fenced code block blanked (its lines kept, emptied), so that line
/// numbers still match the file.
fn without_fences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open: Option<(char, usize)> = None;
    for line in text.split('\n') {
        match (open, fence(line)) {
            (None, Some(f)) => open = Some(f),
            // a closing fence is at least as long as the opening one and carries no info string
            (Some((c, n)), Some((c2, n2)))
                if c == c2 && n2 >= n && line.trim().chars().all(|x| x == c) =>
            {
                open = None
            }
            (None, None) => out.push_str(line),
            _ => {}
        }
        out.push('\n');
    }
    out.pop();
    out
}

/// Every link and image target outside code: inline `[text](target)` / `![alt](target)` and
/// reference definitions `[label]: target`.
fn extract_links(text: &str) -> Vec<Link> {
    let text = without_fences(text);
    let chars: Vec<char> = text.chars().collect();
    let mut links = Vec::new();
    let mut line = 1;
    let mut line_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            line_start = true;
            i += 1;
            continue;
        }
        let at_line_start = line_start && !c.is_whitespace();
        if !c.is_whitespace() {
            line_start = false;
        }
        match c {
            '\\' => {
                // an escaped character is never syntax
                i += 1;
                if chars.get(i).is_some_and(|&x| x != '\n') {
                    i += 1;
                }
            }
            '`' => match code_span_end(&chars, i) {
                Some(end) => {
                    line += chars[i..end].iter().filter(|&&x| x == '\n').count();
                    i = end;
                }
                // unmatched backticks are literal
                None => i += chars[i..].iter().take_while(|&&x| x == '`').count(),
            },
            '[' => {
                let Some(close) = matching_bracket(&chars, i) else {
                    i += 1;
                    continue;
                };
                if chars.get(close + 1) == Some(&'(') {
                    if let Some((target, _)) = inline_target(&chars, close + 2) {
                        links.push(Link { line, target });
                    }
                } else if at_line_start && chars.get(close + 1) == Some(&':') {
                    let rest: String = chars[close + 2..]
                        .iter()
                        .take_while(|&&x| x != '\n')
                        .collect();
                    if let Some(target) = rest.split_whitespace().next() {
                        let target = target.trim_start_matches('<').trim_end_matches('>');
                        links.push(Link {
                            line,
                            target: target.to_string(),
                        });
                    }
                }
                // go on inside the brackets: the text may hold a link of its own (an image in a
                // link); a target holds no brackets
                i += 1;
            }
            _ => i += 1,
        }
    }
    links
}

/// The index after the code span that opens at `start` (a run of n backticks closed by the
/// next run of exactly n), or `None` when no run closes it before the paragraph ends.
fn code_span_end(chars: &[char], start: usize) -> Option<usize> {
    let n = chars[start..].iter().take_while(|&&x| x == '`').count();
    let mut j = start + n;
    while j < chars.len() {
        if chars[j] == '\n' && blank_line_follows(chars, j) {
            return None;
        }
        if chars[j] == '`' {
            let m = chars[j..].iter().take_while(|&&x| x == '`').count();
            if m == n {
                return Some(j + m);
            }
            j += m;
        } else {
            j += 1;
        }
    }
    None
}

/// Whether the line after the newline at `newline` is blank (the paragraph ends there).
fn blank_line_follows(chars: &[char], newline: usize) -> bool {
    chars[newline + 1..]
        .iter()
        .take_while(|&&x| x != '\n')
        .all(|x| x.is_whitespace())
}

/// The index of the `]` closing the `[` at `open`, brackets nested, escapes and code spans
/// skipped; `None` when the paragraph ends first.
fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '`' => {
                let run = chars[i..].iter().take_while(|&&x| x == '`').count();
                i = code_span_end(chars, i).unwrap_or(i + run);
                continue;
            }
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            '\n' if blank_line_follows(chars, i) => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The target of an inline link whose `(` is just before `start`: `<target>` or a run without
/// spaces whose parentheses balance, then an optional title. Returns it and the index after `)`.
fn inline_target(chars: &[char], start: usize) -> Option<(String, usize)> {
    let mut i = start;
    while chars.get(i).is_some_and(|c| *c == ' ' || *c == '\n') {
        i += 1;
    }
    let mut target = String::new();
    if chars.get(i) == Some(&'<') {
        i += 1;
        while let Some(&c) = chars.get(i) {
            i += 1;
            if c == '>' {
                break;
            }
            if c == '\n' {
                return None;
            }
            target.push(c);
        }
    } else {
        let mut depth = 0usize;
        while let Some(&c) = chars.get(i) {
            match c {
                '\\' => {
                    target.push(*chars.get(i + 1)?);
                    i += 2;
                    continue;
                }
                '(' => depth += 1,
                ')' if depth == 0 => break,
                ')' => depth -= 1,
                c if c.is_whitespace() => break,
                _ => {}
            }
            target.push(c);
            i += 1;
        }
    }
    // an optional title, then the closing parenthesis
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            ')' => return Some((target, i)),
            '"' | '\'' => {
                while chars.get(i).is_some_and(|&x| x != c) {
                    i += 1;
                }
                i += 1;
            }
            c if c.is_whitespace() => {}
            _ => return None,
        }
    }
    None
}

/// GitHub's anchor for a heading's text: lowercase; keep letters, digits, `-`, `_` and spaces;
/// every space becomes `-`; anything else is dropped.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// A heading's text as rendered: links and images give their text, code spans lose their
/// backticks, emphasis markers (`*`) and HTML tags go.
fn heading_text(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '!' if chars.get(i + 1) == Some(&'[') => i += 1,
            '[' => {
                if let Some(close) = matching_bracket(&chars, i) {
                    out.push_str(&heading_text(
                        &chars[i + 1..close].iter().collect::<String>(),
                    ));
                    i = close + 1;
                    if chars.get(i) == Some(&'(')
                        && let Some((_, end)) = inline_target(&chars, i + 1)
                    {
                        i = end;
                    }
                } else {
                    out.push('[');
                    i += 1;
                }
            }
            '<' => {
                let end = chars[i..].iter().position(|&c| c == '>');
                match end {
                    Some(e)
                        if chars
                            .get(i + 1)
                            .is_some_and(|c| c.is_alphabetic() || *c == '/') =>
                    {
                        i += e + 1
                    }
                    _ => {
                        out.push('<');
                        i += 1;
                    }
                }
            }
            '`' | '*' => i += 1,
            '\\' => {
                if let Some(&c) = chars.get(i + 1) {
                    out.push(c);
                }
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out.trim().to_string()
}

/// Every anchor a Markdown file offers: the slugs of its ATX headings (outside fences), with
/// GitHub's `-1`, `-2`, … for repeats, and any HTML `id="…"` / `name="…"`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for line in without_fences(text).lines() {
        let trimmed = line.trim_start_matches(' ');
        if line.len() - trimmed.len() <= 3 {
            let hashes = trimmed.chars().take_while(|&c| c == '#').count();
            let rest = &trimmed[hashes..];
            if (1..=6).contains(&hashes) && (rest.is_empty() || rest.starts_with([' ', '\t'])) {
                // a closing run of #s (after a space) is not part of the heading
                let mut content = rest.trim();
                let stripped = content.trim_end_matches('#');
                if stripped.is_empty() || stripped.ends_with([' ', '\t']) {
                    content = stripped.trim_end();
                }
                let base = slug(&heading_text(content));
                let mut unique = base.clone();
                if let Some(count) = seen.get(&base).copied() {
                    let mut n = count;
                    loop {
                        n += 1;
                        unique = format!("{base}-{n}");
                        if !seen.contains_key(&unique) {
                            break;
                        }
                    }
                    seen.insert(base.clone(), n);
                }
                seen.insert(unique.clone(), 0);
                out.insert(unique);
            }
        }
        for attr in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(at) = rest.find(attr) {
                rest = &rest[at + attr.len()..];
                if let Some(end) = rest.find('"') {
                    out.insert(rest[..end].to_string());
                }
            }
        }
    }
    out
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `%XX` escapes decoded (a link to `a%20b.md` names `a b.md`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// GitHub's line anchors on a file that is not Markdown: `#L10` or `#L10-L20`.
fn is_line_anchor(anchor: &str) -> bool {
    let mut parts = anchor.splitn(2, '-');
    let is_line = |p: &str| {
        p.strip_prefix('L')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    parts.next().is_some_and(is_line) && parts.next().is_none_or(is_line)
}

/// The broken links of one Markdown file, as `file:line → target: why`. `file` is where the
/// text lives (links resolve against its directory; it need not exist when `text` is given);
/// other files are read from disk under `root`.
fn check_file(root: &Path, file: &Path, text: &str) -> Vec<String> {
    let shown = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let dir = file.parent().unwrap_or(root);
    let mut problems = Vec::new();
    for Link { line, target } in extract_links(text) {
        let lower = target.to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("mailto:")
        {
            continue;
        }
        let mut fail = |why: String| problems.push(format!("{shown}:{line} → {target}: {why}"));
        if target.is_empty() {
            fail("empty target".into());
            continue;
        }
        if let Some((scheme, _)) = target.split_once(':')
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        {
            fail(format!(
                "`{scheme}:` links are neither relative nor checked (use https://)"
            ));
            continue;
        }
        let (path_part, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let path_part = percent_decode(path_part.split('?').next().unwrap_or(""));
        let resolved = if path_part.is_empty() {
            file.to_path_buf()
        } else if let Some(from_root) = path_part.strip_prefix('/') {
            normalize(&root.join(from_root))
        } else {
            normalize(&dir.join(&path_part))
        };
        if !resolved.starts_with(root) {
            fail("points outside the repository (name it as text, not as a link)".into());
            continue;
        }
        let is_self = resolved == file;
        if !is_self && !resolved.exists() {
            fail(format!(
                "no such file or directory: {}",
                resolved.strip_prefix(root).unwrap().display()
            ));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        let anchor = percent_decode(anchor);
        let is_markdown = resolved
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("md"));
        if !is_markdown {
            if !is_line_anchor(&anchor) {
                fail("an anchor on a file that is not Markdown (only #L<n> line anchors are allowed)".into());
            }
            continue;
        }
        let target_text = if is_self {
            text.to_string()
        } else {
            fs::read_to_string(&resolved).unwrap_or_default()
        };
        let offered = anchors(&target_text);
        if !offered.contains(&anchor) {
            let near: Vec<&String> = offered
                .iter()
                .filter(|a| a.contains(&anchor) || anchor.contains(a.as_str()))
                .take(3)
                .collect();
            fail(format!(
                "no heading with the anchor `#{anchor}` in {}{}",
                resolved.strip_prefix(root).unwrap().display(),
                if near.is_empty() {
                    String::new()
                } else {
                    format!(" (near: {near:?})")
                }
            ));
        }
    }
    problems
}

#[test]
fn every_relative_link_and_anchor_in_the_documentation_resolves() {
    let root = repo_root();
    let files = documentation_files(&root);
    assert!(
        files.len() > 2,
        "no docs/*.md found under {}",
        root.display()
    );

    let mut problems = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        problems.extend(check_file(&root, file, &text));
    }

    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    if lines > README_MAX_LINES {
        problems.push(format!(
            "README.md: {lines} lines, more than {README_MAX_LINES}: it is the front page; move the detail into docs/"
        ));
    }
    let readme_dir = root.clone();
    let linked: BTreeSet<PathBuf> = extract_links(&readme)
        .into_iter()
        .map(|l| normalize(&readme_dir.join(percent_decode(l.target.split('#').next().unwrap()))))
        .collect();
    for doc in files.iter().filter(|f| f.starts_with(root.join("docs"))) {
        if !linked.contains(doc) {
            problems.push(format!(
                "README.md does not link {} (list it under \"Where to read next\")",
                doc.strip_prefix(&root).unwrap().display()
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "{} broken link(s) in the documentation:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_checker_catches_a_broken_path_and_a_broken_anchor() {
    let root = repo_root();
    let file = root.join("docs").join("example.md");
    let text = "\
# An example

## Setup: step 1 (the *first*)

## Setup: step 1 (the *first*)

### `[http]` section

Fine: [the front page](../README.md), [a heading](#setup-step-1-the-first),
[its repeat](#setup-step-1-the-first-1), [code in a heading](#http-section),
![a picture](screenshots/overview.png), [another file's heading](../SECURITY.md#limits-and-defaults),
[a link
over two lines](../SECURITY.md), [a source line](../Cargo.toml#L1), [web](https://example.com/x),
[mail](mailto:someone@example.com), a reference [label] and `[code](not/a/link.md)`, \\[not](a-link.md).

```sh
echo [fenced](not/checked.md)
```

A stray ` backtick here.

Broken: [a missing file](nope/missing.md) and [a missing anchor](../SECURITY.md#no-such-heading),
[outside](../../shared/DESIGN.md) and [self](#not-here), then `code`.

[label]: ../SECURITY.md#roles-and-what-they-can-do
";
    let problems = check_file(&root, &file, text);
    let expected = [
        "docs/example.md:22 → nope/missing.md: no such file or directory",
        "docs/example.md:22 → ../SECURITY.md#no-such-heading: no heading with the anchor `#no-such-heading` in SECURITY.md",
        "docs/example.md:23 → ../../shared/DESIGN.md: points outside the repository",
        "docs/example.md:23 → #not-here: no heading with the anchor `#not-here` in docs/example.md",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (got, want) in problems.iter().zip(expected) {
        assert!(
            got.starts_with(want),
            "got {got:?}, want it to start with {want:?}"
        );
    }

    // GitHub's slugs: punctuation dropped, spaces kept as dashes, `_` and `-` kept, repeats numbered.
    let offered = anchors(
        "# A (b) c\n# A (b) c\n# snake_case and -dash-\n# Café §7 — ok\n```\n# not a heading\n```\n",
    );
    let want: BTreeSet<String> = ["a-b-c", "a-b-c-1", "snake_case-and--dash-", "café-7--ok"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(offered, want);
}
