//! The storage crate's modules form layers: no module reaches, through its
//! `crate::` paths (imports and doc links alike), back to itself. A circle would
//! mean two protocols cannot be understood, or tested, one without the other — the
//! state the crate was in before the protocols got narrow contexts (issue 10).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module name → the modules its source mentions as `crate::name`. A folder module
/// (`src/name/`) is one module: the text of all its files together, so what its
/// submodules mention of each other stays inside it, and what they mention of the
/// rest of the crate is the folder's.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in fs::read_dir(&src).expect("the crate's src directory") {
        let path = entry.expect("a directory entry").path();
        let module = path.file_stem().unwrap().to_string_lossy().to_string();
        if module == "lib" {
            continue;
        }
        let text = source_text(&path);
        let mut uses = BTreeSet::new();
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                uses.insert(name);
            }
        }
        graph.insert(module, uses);
    }
    graph
}

/// The text of a source file, or of every `.rs` file under a folder module.
fn source_text(path: &Path) -> String {
    if !path.is_dir() {
        return fs::read_to_string(path).expect("a readable source file");
    }
    let mut text = String::new();
    for entry in fs::read_dir(path).expect("a readable module folder") {
        let inner = entry.expect("a directory entry").path();
        if inner.is_dir() || inner.extension().is_some_and(|e| e == "rs") {
            text.push_str(&source_text(&inner));
            text.push('\n');
        }
    }
    text
}

/// A circle through `module`, if its dependencies lead back to it.
fn circle_from(graph: &BTreeMap<String, BTreeSet<String>>, module: &str) -> Option<Vec<String>> {
    let mut path = vec![module.to_string()];
    let mut seen = BTreeSet::new();
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let last = path.last().unwrap().clone();
        for next in graph.get(&last).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(graph, module, &mut path, &mut seen).then_some(path)
}

#[test]
fn the_storage_modules_have_no_import_circle() {
    let graph = dependencies();
    assert!(graph.len() > 10, "found the modules: {graph:?}");
    for module in graph.keys() {
        if let Some(circle) = circle_from(&graph, module) {
            panic!("import circle: {}", circle.join(" → "));
        }
    }
}
