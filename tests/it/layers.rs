//! The shape of `src/`, checked from the source text: no file imports a file that imports it
//! back (directly or through others), and no function outside tests grows past the length
//! ARCHITECTURE.md allows. Both read the files as rustfmt leaves them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest function body allowed outside tests, in lines (signature to closing brace).
const MAX_FUNCTION_LINES: usize = 80;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a file without its `#[cfg(test)]` part (tests sit at the end of each file).
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// The module path of a file: `src/kraken/sim/mod.rs` → `kraken::sim`.
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(src()).unwrap().with_extension("");
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|part| part != "mod" && part != "lib" && part != "main")
        .collect();
    parts.join("::")
}

/// The modules a file names through `crate::` paths (in `use` lines and inline), each cut to
/// the longest prefix that is a module of the crate.
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            // `use kraken::{a, b}` names `kraken`; `kraken::sim::X` names `kraken::sim`.
            let longest = (1..=segments.len())
                .rev()
                .map(|n| segments[..n].join("::"))
                .find(|candidate| modules.contains(candidate));
            if let Some(module) = longest {
                found.insert(module);
            }
        }
    }
    found
}

/// A cycle in the graph, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| n == node).unwrap();
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Visiting);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(node, graph, &mut marks, &mut stack) {
            return Some(cycle);
        }
    }
    None
}

/// The import graph of the crate's files: a parent module (`kraken` of `kraken/mod.rs`) is
/// the file that declares its children, so an import of `kraken::sim` is an edge to that file
/// only, not to `kraken/mod.rs` as well.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        if module.is_empty() {
            continue; // lib.rs and main.rs wire everything.
        }
        let text = std::fs::read_to_string(file).unwrap();
        let mut names = imports(without_tests(&text), &modules);
        // A module's own children and itself are not imports.
        names.retain(|name| *name != module && !name.starts_with(&format!("{module}::")));
        names.remove("");
        graph.insert(module, names);
    }
    graph
}

#[test]
fn no_file_in_src_imports_a_file_that_imports_it_back() {
    let graph = import_graph();
    assert!(graph.len() > 30, "{:?}", graph.keys());
    assert!(
        graph["metrics"].contains("status"),
        "the parser of imports finds nothing: {:?}",
        graph["metrics"]
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in src/: {}", cycle.join(" → "));
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.insert("a".into(), ["b".to_owned()].into());
    graph.insert("b".into(), ["c".to_owned()].into());
    graph.insert("c".into(), ["a".to_owned()].into());
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    graph.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
}

/// Functions outside tests and their length in lines, from `fn` to the closing brace at the
/// same indentation (as rustfmt writes them).
fn function_lengths(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = without_tests(text).lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) async fn ",
            "const fn ",
            "pub const fn ",
        ]
        .iter()
        .any(|prefix| trimmed.starts_with(prefix));
        if !is_fn || trimmed.ends_with(';') {
            continue;
        }
        let name: String = trimmed
            .split("fn ")
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let closing = " ".repeat(indent) + "}";
        if let Some(end) = lines[start..].iter().position(|l| *l == closing) {
            found.push((name, start + 1, end + 1));
        }
    }
    found
}

#[test]
fn no_function_outside_tests_is_longer_than_the_limit() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut long = Vec::new();
    let mut counted = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (name, line, length) in function_lengths(&text) {
            counted += 1;
            if length > MAX_FUNCTION_LINES {
                long.push(format!(
                    "{}:{line} fn {name}: {length} lines",
                    file.strip_prefix(src()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        counted > 200,
        "the function finder finds too little: {counted}"
    );
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them, or raise the limit with a reason in ARCHITECTURE.md):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_function_finder_measures_from_fn_to_its_closing_brace() {
    let text = "fn short() {\n    1;\n}\n\nimpl X {\n    pub fn method(&self) {\n        if a {\n        }\n    }\n}\n#[cfg(test)]\nfn ignored() {\n}\n";
    assert_eq!(
        function_lengths(text),
        [("short".to_owned(), 1, 3), ("method".to_owned(), 6, 4)]
    );
}
