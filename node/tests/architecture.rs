//! ARCHITECTURE.md stays true to the code: every path it names in backticks exists, and
//! every type, constant, `Type::item` and `function()` it names is defined somewhere in
//! the workspace's Rust or protobuf sources. The READMEs and `docs/` are held to the
//! first rule (their paths exist).
//!
//! What counts, in a backticked span outside code blocks:
//! - a *path*: its first segment is an entry at the repository's root (`node/src/...`,
//!   `docs/...`, `README.md`); it must exist;
//! - an *item*: a CamelCase name (a type, trait or enum variant), a SCREAMING_CASE name (a
//!   constant), `a::b` paths and `name()` calls. The last segment must be defined; plain
//!   lowercase words are prose (`tracing`, `n`) and are not checked.
//!
//! Names from other crates that the architecture mentions on purpose are listed in
//! [`FOREIGN`].
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Names ARCHITECTURE.md uses on purpose that no source of ours defines: other crates'
/// types (tonic's `Channel`, turmoil's `Sim`), code tonic generates from our `.proto`
/// (`KvClient`), environment variables, and words that are written in capitals.
const FOREIGN: &[&str] = &[
    "Channel",
    "Sim",
    "KvClient",
    "CARGO_TARGET_DIR",
    "FROM",
    "IP",
    "TTL",
    "HLC",
    "PNG",
    "CRC",
    "UNAVAILABLE",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every file under `dir` whose name ends with one of `extensions`, skipping build output
/// and version control.
fn files(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                files(&path, extensions, out);
            }
        } else if extensions.iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
}

/// The backticked spans of a markdown text, outside fenced code blocks.
fn backticked(markdown: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            spans.push(inside.to_owned());
        }
    }
    spans
}

/// `Some(path)` when `span` is a repository path: its first segment is a root entry.
fn as_path(span: &str, root_entries: &BTreeSet<String>) -> Option<String> {
    let first = span.split('/').next()?;
    let looks_like_path = span.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    (looks_like_path && root_entries.contains(first) && (span.contains('/') || span.contains('.')))
        .then(|| span.trim_end_matches('/').to_owned())
}

fn is_camel(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && word.chars().all(|c| c.is_ascii_alphanumeric())
        && word.chars().any(|c| c.is_ascii_lowercase())
}

fn is_screaming(word: &str) -> bool {
    word.len() > 1
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && word.chars().any(|c| c.is_ascii_uppercase())
}

fn is_identifier(word: &str) -> bool {
    word.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The name an item span asks to be defined, if the span is an item.
fn as_item(span: &str) -> Option<String> {
    let span = span.strip_suffix("()").map_or((span, false), |s| (s, true));
    let (body, called) = span;
    let segments: Vec<&str> = body.split("::").collect();
    if !segments.iter().all(|s| is_identifier(s)) {
        return None;
    }
    let last = *segments.last()?;
    let item = segments.len() > 1 || called || is_camel(last) || is_screaming(last);
    item.then(|| last.to_owned())
}

/// Whether `name` is defined in `sources` (Rust and protobuf text).
fn defined(name: &str, sources: &str) -> bool {
    let rust = [
        "fn", "struct", "enum", "trait", "type", "const", "static", "mod", "message", "service", "rpc",
    ];
    if rust.iter().any(|keyword| {
        let needle = format!("{keyword} {name}");
        sources.match_indices(&needle).any(|(at, _)| {
            let after = sources[at + needle.len()..].chars().next();
            !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    }) {
        return true;
    }
    // An enum variant or a protobuf enum value: the name alone at the start of a line.
    sources.lines().any(|line| {
        let line = line.trim_start();
        line.strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([',', '(', ' ', '{', '=']))
            && !line.starts_with("//")
    })
}

#[test]
fn every_path_and_item_architecture_md_names_exists() {
    let root = repo_root();
    let root_entries: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut source_files = Vec::new();
    files(&root, &[".rs", ".proto"], &mut source_files);
    let sources: String = source_files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    let mut checked = 0;
    for span in backticked(&architecture) {
        if let Some(path) = as_path(&span, &root_entries) {
            checked += 1;
            if !root.join(&path).exists() {
                missing.push(format!("path `{span}`"));
            }
        } else if let Some(name) = as_item(&span) {
            checked += 1;
            if !FOREIGN.contains(&name.as_str()) && !defined(&name, &sources) {
                missing.push(format!("item `{span}` (no definition of {name})"));
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} names checked: is the parser still reading the file?"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what does not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_path_the_docs_and_readmes_name_exists() {
    let root = repo_root();
    let root_entries: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut documents = Vec::new();
    files(&root, &["README.md"], &mut documents);
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            documents.push(path);
        }
    }
    let mut missing = Vec::new();
    for document in &documents {
        let text = std::fs::read_to_string(document).unwrap();
        for span in backticked(&text) {
            if let Some(path) = as_path(&span, &root_entries) {
                if !root.join(&path).exists() {
                    let shown = document.strip_prefix(&root).unwrap_or(document).display().to_string();
                    missing.push(format!("{shown}: `{span}`"));
                }
            }
        }
    }
    assert!(documents.len() >= 8, "found only {} documents", documents.len());
    assert!(
        missing.is_empty(),
        "documents name paths that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_checker_tells_names_from_prose() {
    let entries: BTreeSet<String> = ["node", "README.md"].iter().map(|s| s.to_string()).collect();
    assert_eq!(as_path("node/src/lib.rs", &entries).as_deref(), Some("node/src/lib.rs"));
    assert_eq!(as_path("node/", &entries).as_deref(), Some("node"));
    assert_eq!(as_path("README.md", &entries).as_deref(), Some("README.md"));
    assert_eq!(as_path("Replica/Merge", &entries), None, "a gRPC method, not a path");
    assert_eq!(as_path("node", &entries), None, "a crate name in prose");
    assert_eq!(as_item("Coordinator::get").as_deref(), Some("get"));
    assert_eq!(as_item("QuorumCall").as_deref(), Some("QuorumCall"));
    assert_eq!(as_item("READ_HEDGE_AFTER").as_deref(), Some("READ_HEDGE_AFTER"));
    assert_eq!(as_item("context()").as_deref(), Some("context"));
    assert_eq!(as_item("tracing"), None, "a lowercase word is prose");
    assert_eq!(as_item("Kv/Put"), None);
    assert!(defined("Slot", "pub(crate) struct Slot {"));
    assert!(!defined("Slo", "pub(crate) struct Slot {"));
    assert!(defined("Corrupt", "    Corrupt {\n"));
    assert!(!defined("Nowhere", "struct Somewhere;"));
}
