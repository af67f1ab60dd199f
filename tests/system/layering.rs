//! Imports in `src/` run one way (docs/architecture.md, "Which part uses which"): no part of
//! the code uses a part that uses it back, directly or through others. A part is a file of
//! `src/` with its own folder of submodules (`broker.rs` with `broker/serving.rs`, which
//! is how the teaching file is put on a server); in `src/echo/` each file is a part of
//! its own, the store interface below its two stores, and so is each file of a folder there
//! (the journal's layers: `journal/format.rs` below `journal/load.rs`, ...). A folder's root
//! file (`journal/mod.rs`) declares its files and puts their names together: its own uses
//! of them are not arrows (they are read only through `crate::` and `super::` paths, which
//! it does not need), while theirs of it are. Test modules, inline or in files of their own,
//! may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module path of a file under `src/` (`echo/postgres/pool.rs` is `echo::postgres::pool`),
/// or `None` for the crate roots, which use everything and are used by nothing.
fn module_path(relative: &Path) -> Option<Vec<String>> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().to_string())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    match parts.first().map(String::as_str) {
        None | Some("lib" | "main" | "bin") => None,
        _ => Some(parts),
    }
}

/// The part a module belongs to: its top-level module, or in `echo` the file that holds it
/// (the longest of its prefixes that is one of `files`, the modules that are files).
fn part_of(module: &[String], files: &BTreeSet<Vec<String>>) -> String {
    let in_echo = module.first().is_some_and(|first| first == "echo");
    let depth = match in_echo {
        false => 1,
        true => (2..module.len())
            .rev()
            .find(|depth| files.contains(&module[..=*depth]))
            .map_or(2, |depth| depth + 1),
    };
    module[..module.len().min(depth)].join("::")
}

/// The code of a file without its comments and its test modules (which may use anything,
/// and come last: from the first `#[cfg(test)]` before a `mod`).
fn code_of(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let tests_start = lines
        .windows(2)
        .position(|pair| pair[0] == "#[cfg(test)]" && pair[1].contains("mod "))
        .unwrap_or(lines.len());
    lines[..tests_start]
        .iter()
        .filter(|line| !line.trim_start().starts_with("//"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths that `code` (of the module at `module`) names: `crate::a::b`,
/// `super::a` (one `super` per step up), and each item of `use crate::{a, b::c}`.
fn named_modules(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut named = Vec::new();
    let words = |rest: &str| -> Vec<String> {
        rest.split("::")
            .map(|word| {
                word.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|word| !word.is_empty())
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            named.extend(group.split(',').map(|item| words(item.trim())));
        } else {
            named.push(words(rest));
        }
    }
    for (at, _) in code.match_indices("super::") {
        if code[..at].ends_with("super::") {
            continue; // counted from the first `super::`
        }
        let mut rest = &code[at..];
        let mut base = module.to_vec();
        while let Some(after) = rest.strip_prefix("super::") {
            base.pop();
            rest = after;
        }
        let items: Vec<Vec<String>> = match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                group.split(',').map(|item| words(item.trim())).collect()
            }
            None => vec![words(rest)],
        };
        for item in items {
            named.push(base.iter().cloned().chain(item).collect());
        }
    }
    named.retain(|path| !path.is_empty());
    named
}

/// Every module of `src/` that is a file, with its text (the crate roots left out).
fn source_files() -> BTreeMap<Vec<String>, String> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut pending = vec![src.clone()];
    let mut files = BTreeMap::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ lists").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src/");
            if let Some(module) = module_path(relative) {
                let text = std::fs::read_to_string(&path).expect("a source file reads");
                files.insert(module, text);
            }
        }
    }
    files
}

/// The modules that `#[cfg(test)] mod name;` declares in a file of their own.
fn test_modules(files: &BTreeMap<Vec<String>, String>) -> BTreeSet<Vec<String>> {
    let mut tests = BTreeSet::new();
    for (module, text) in files {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            let declared = pair[1]
                .strip_suffix(';')
                .and_then(|line| line.rsplit_once("mod "))
                .map(|(_, name)| name);
            if let (true, Some(name)) = (pair[0] == "#[cfg(test)]", declared) {
                tests.insert(module.iter().cloned().chain([name.to_string()]).collect());
            }
        }
    }
    tests
}

/// Which part uses which, over every file of `src/` but the tests.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let files = source_files();
    let tests = test_modules(&files);
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &files {
        if tests.iter().any(|test| module.starts_with(test)) {
            continue;
        }
        let part = part_of(module, &modules);
        let used: BTreeSet<String> = named_modules(&code_of(text), module)
            .iter()
            .map(|named| part_of(named, &modules))
            .filter(|used| *used != part)
            .collect();
        graph.entry(part).or_default().extend(used);
    }
    graph
}

/// A way from `from` back to itself through `graph`, if there is one.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut pending = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(way) = pending.pop() {
        let last = way.last().expect("a way has a start");
        for next in graph.get(last).into_iter().flatten() {
            if next == from {
                let mut circle = way.clone();
                circle.push(next.clone());
                return Some(circle);
            }
            if seen.insert(next.clone()) {
                let mut longer = way.clone();
                longer.push(next.clone());
                pending.push(longer);
            }
        }
    }
    None
}

#[test]
fn no_part_of_src_uses_a_part_that_uses_it_back() {
    let graph = uses();
    assert!(graph.contains_key("broker") && graph.contains_key("echo::store"));
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|part| circle_through(&graph, part))
        .map(|circle| circle.join(" -> "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_reading_of_imports_finds_both_forms_and_both_directions() {
    let module = |path: &str| path.split("::").map(str::to_string).collect::<Vec<_>>();
    let code = "use crate::{http, settings::TlsRoots};\nuse super::super::store::Store;\nlet x = crate::echo::api::X;";
    let files: BTreeSet<Vec<String>> = ["echo::store", "echo::journal", "echo::journal::format"]
        .into_iter()
        .map(module)
        .collect();
    let named: Vec<String> = named_modules(code, &module("echo::postgres::pool"))
        .iter()
        .map(|path| part_of(path, &files))
        .collect();
    assert_eq!(named, ["http", "settings", "echo::api", "echo::store"]);
    // In a folder of `echo`, each file is a part; an item of the folder's root is the root's.
    let code = "use super::format::frame;\nuse super::{Journal, Recorded};";
    let named: Vec<String> = named_modules(code, &module("echo::journal::load"))
        .iter()
        .map(|path| part_of(path, &files))
        .collect();
    assert_eq!(
        named,
        ["echo::journal::format", "echo::journal", "echo::journal"]
    );
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        circle_through(&graph, "a"),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    graph.remove("c");
    assert_eq!(circle_through(&graph, "a"), None);
}
