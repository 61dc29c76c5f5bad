//! The shape of the workspace, checked from the source text of both crates (`src/`, the
//! exporter, and `kraken/src/`, Kraken's wire format and the simulated Kraken):
//!
//! - no module imports a module that imports it back, directly or through others;
//! - no function outside tests grows past [`MAX_FUNCTION_LINES`], no file past [`MAX_FILE_LINES`];
//! - the `kraken` crate stays below the exporter: its manifest names none of the exporter's crates
//!   ([`FORBIDDEN_IN_KRAKEN`]) and its code never names `kraken_exporter`.
//!
//! Files are read whole, as rustfmt leaves them. Test code is every item under `#[cfg(test)]`
//! (found in code, not in strings or comments, and skipped to its matching brace) and every file
//! such an item declares (`#[cfg(test)] mod testing;`). Each check has a self-test below that
//! proves it can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest function allowed outside tests, in lines (signature to closing brace).
const MAX_FUNCTION_LINES: usize = 80;

/// Longest file allowed, in lines, not counting its tests.
const MAX_FILE_LINES: usize = 600;

/// Crates the `kraken` crate must not depend on: the exporter itself and what only an exporter
/// needs (command line, Prometheus, logging setup, the web server's security, compression).
const FORBIDDEN_IN_KRAKEN: &[&str] = &[
    "kraken-exporter",
    "kraken_exporter",
    "clap",
    "prometheus",
    "prometheus-client",
    "tracing-subscriber",
    "bcrypt",
    "rustls",
    "tokio-rustls",
    "flate2",
    "x509-parser",
];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The crates checked: name and source directory.
fn crates() -> [(&'static str, PathBuf); 2] {
    [
        ("kraken_exporter", workspace().join("src")),
        ("kraken", workspace().join("kraken/src")),
    ]
}

// ---------------------------------------------------------------------------------------------
// Reading source: code apart from comments and strings, test items apart from the rest.

/// The text with every comment, string and character literal blanked to spaces (newlines kept),
/// so searches find code only and line numbers stay.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for byte in &mut out[from..to.min(bytes.len())] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            blank(&mut out, i, i + end);
            i += end;
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            let mut j = i;
            while j < bytes.len() {
                if bytes[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if bytes[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(end) = raw_string_end(bytes, i) {
            blank(&mut out, i, end);
            i = end;
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if rest[0] == b'\'' {
            // A character literal ('x', '\n', '\u{1F600}', 'é'), or a lifetime ('a), left as is.
            let end = if rest.get(1) == Some(&b'\\') {
                rest.iter().skip(3).position(|&b| b == b'\'').map(|p| p + 4)
            } else {
                let width = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + width) == Some(&b'\'')).then_some(width + 2)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, i + end);
                    i += end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 (only ASCII is written)")
}

/// Where the raw string (`r"…"`, `r#"…"#`, `br"…"`) starting at `at` ends, if one does.
fn raw_string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let starts_word = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
    let mut j = at;
    if bytes.get(j) == Some(&b'b') {
        j += 1;
    }
    if !starts_word || bytes.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = bytes[j..].iter().take_while(|&&b| b == b'#').count();
    j += hashes;
    if bytes.get(j) != Some(&b'"') {
        return None;
    }
    let closing: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = j + 1;
    let end = bytes[body..]
        .windows(closing.len())
        .position(|w| w == closing.as_slice())
        .map_or(bytes.len(), |p| body + p + closing.len());
    Some(end)
}

/// A file's code outside tests (comments and strings blanked, every `#[cfg(test)]` item blanked
/// from its attribute to its closing brace or semicolon; lines kept), the number of lines those
/// items span, and the modules they declare without a body (`#[cfg(test)] mod testing;`).
struct Source {
    code: String,
    test_lines: usize,
    test_modules: Vec<String>,
}

fn read_source(text: &str) -> Source {
    let code = code_only(text);
    let bytes = code.as_bytes();
    let mut out = bytes.to_vec();
    let mut test_lines = 0;
    let mut test_modules = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("#[cfg(test)]") {
        let start = from + found;
        let end = item_end(bytes, start + "#[cfg(test)]".len());
        let end = start + code[start..end].trim_end().len();
        let item = &code[start..end];
        let declared = item.trim_start_matches("#[cfg(test)]").trim();
        // `mod x;`, `pub mod x;`, `pub(crate) mod x;`, ...
        let declared = declared
            .strip_prefix("pub(crate) ")
            .or_else(|| declared.strip_prefix("pub(super) "))
            .or_else(|| declared.strip_prefix("pub "))
            .unwrap_or(declared);
        if let Some(name) = declared
            .strip_prefix("mod ")
            .and_then(|rest| rest.strip_suffix(';'))
        {
            test_modules.push(name.trim().to_owned());
        }
        let line_start = code[..start].rfind('\n').map_or(0, |p| p + 1);
        let only_item_on_its_lines = code[line_start..start].trim().is_empty();
        test_lines += item.matches('\n').count() + usize::from(only_item_on_its_lines);
        for byte in &mut out[start..end] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
        from = end;
    }
    Source {
        code: String::from_utf8(out).unwrap(),
        test_lines,
        test_modules,
    }
}

/// Where what the attribute ending at `from` applies to ends. An item (`mod`, `fn`, `impl`, `use`…)
/// ends after its first `;` or its first block's matching `}` (plus a `;` right after it),
/// outside brackets and parentheses. Anything else (a field, a field initialiser, a statement)
/// ends after the first `,` or `;` outside brackets, or before the bracket that closes its list.
fn item_end(code: &[u8], from: usize) -> usize {
    if !starts_an_item(&String::from_utf8_lossy(&code[from..])) {
        return element_end(code, from);
    }
    let mut nesting = 0i32;
    let mut i = from;
    while i < code.len() {
        match code[i] {
            b'(' | b'[' => nesting += 1,
            b')' | b']' => nesting -= 1,
            b';' if nesting == 0 => return i + 1,
            b'{' if nesting == 0 => {
                let mut depth = 0;
                while i < code.len() {
                    match code[i] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                let after = i + 1;
                let next = code[after.min(code.len())..]
                    .iter()
                    .position(|b| !b.is_ascii_whitespace());
                return match next {
                    Some(p) if code[after + p] == b';' => after + p + 1,
                    _ => after.min(code.len()),
                };
            }
            _ => {}
        }
        i += 1;
    }
    code.len()
}

/// Whether `code` (right after an attribute) starts an item rather than a field or statement.
fn starts_an_item(code: &str) -> bool {
    let mut rest = code.trim_start();
    while rest.starts_with("#[") {
        rest = rest[rest.find(']').map_or(rest.len(), |p| p + 1)..].trim_start();
    }
    if let Some(after) = rest.strip_prefix("pub") {
        let after = after.trim_start();
        rest = match after.strip_prefix('(') {
            Some(inside) => inside[inside.find(')').map_or(0, |p| p + 1)..].trim_start(),
            None => after,
        };
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '!')
        .collect();
    [
        "mod",
        "fn",
        "impl",
        "use",
        "struct",
        "enum",
        "trait",
        "type",
        "const",
        "static",
        "async",
        "unsafe",
        "extern",
        "macro_rules!",
    ]
    .contains(&word.as_str())
}

/// Where a field, field initialiser or statement starting at `from` ends (see [`item_end`]).
fn element_end(code: &[u8], from: usize) -> usize {
    let mut nesting = 0i32;
    for (i, byte) in code.iter().enumerate().skip(from) {
        match byte {
            b'(' | b'[' | b'{' => nesting += 1,
            b')' | b']' | b'}' if nesting == 0 => return i,
            b')' | b']' | b'}' => nesting -= 1,
            b',' | b';' if nesting == 0 => return i + 1,
            _ => {}
        }
    }
    code.len()
}

/// A crate's files outside tests: (path, module path, text, what [`read_source`] made of it).
fn crate_files(root: &Path) -> Vec<(PathBuf, String, String, Source)> {
    let mut paths = Vec::new();
    rust_files(root, &mut paths);
    paths.sort();
    let mut files: Vec<_> = paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let source = read_source(&text);
            (path.clone(), module_of(root, &path), text, source)
        })
        .collect();
    let test_only: BTreeSet<String> = files
        .iter()
        .flat_map(|(_, module, _, source)| {
            source
                .test_modules
                .iter()
                .map(move |name| child(module, name))
        })
        .collect();
    files.retain(|(_, module, _, _)| !test_only.contains(module));
    files
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `root`: `sim/mod.rs` → `sim`, `sim/auth.rs` → `sim::auth`,
/// `lib.rs` and `main.rs` → the crate root, ``.
fn module_of(root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(root).unwrap().with_extension("");
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|part| part != "mod" && part != "lib" && part != "main")
        .collect();
    parts.join("::")
}

fn child(module: &str, name: &str) -> String {
    if module.is_empty() {
        name.to_owned()
    } else {
        format!("{module}::{name}")
    }
}

// ---------------------------------------------------------------------------------------------
// Imports and cycles.

/// The paths of a `use` tree, braces expanded: `a::{b, c::{d, self}}` → `a::b`, `a::c::d`,
/// `a::c` (renames dropped).
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split_whitespace().next().unwrap_or_default();
        return vec![path.trim_end_matches("::self").to_owned()];
    };
    let prefix: String = tree[..open].split_whitespace().collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .flat_map(|part| {
            expand_use_tree(part)
                .into_iter()
                .map(|path| match path.as_str() {
                    "self" => prefix.trim_end_matches("::").to_owned(),
                    _ => format!("{prefix}{path}"),
                })
        })
        .collect()
}

/// The crate-relative path `path` names from `module`, if it starts with `crate`, `super` or
/// `self`: `super::x` in `a::b` → `a::x`.
fn resolve(path: &str, module: &str) -> Option<Vec<String>> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = match segments.first() {
        Some(&"crate") => Vec::new(),
        Some(&"self") | Some(&"super") => module
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => return None,
    };
    if segments[0] == "crate" || segments[0] == "self" {
        segments.remove(0);
    }
    while segments.first() == Some(&"super") {
        base.pop()?;
        segments.remove(0);
    }
    base.extend(segments.iter().map(|s| (*s).to_owned()));
    Some(base)
}

/// The modules of the crate that `code` (of `module`) names through `crate::`, `super::` or
/// `self::` paths, in `use` trees or inline, each cut to the longest prefix that is a module.
fn imports(code: &str, module: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut paths = Vec::new();
    // `use` trees, braces expanded.
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let after = &rest[at + 3..];
        let end = after.find(';').unwrap_or(after.len());
        paths.extend(expand_use_tree(&after[..end]));
        rest = &after[end..];
    }
    // Inline paths: `crate::a::f()`, `super::Thing`, `self::child::X`.
    for keyword in ["crate", "super", "self"] {
        let mut rest = code;
        while let Some(at) = find_word(rest, keyword) {
            let path: String = rest[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if path.starts_with(&format!("{keyword}::")) {
                paths.push(path);
            }
            rest = &rest[at + keyword.len()..];
        }
    }
    let mut found = BTreeSet::new();
    for path in paths {
        let Some(segments) = resolve(&path, module) else {
            continue;
        };
        let longest = (0..=segments.len())
            .rev()
            .map(|n| segments[..n].join("::"))
            .find(|candidate| modules.contains(candidate));
        // The crate root wires everything and is no import.
        if let Some(name) = longest.filter(|name| !name.is_empty()) {
            found.insert(name);
        }
    }
    found
}

/// Where `word` first occurs in `text` as a whole word, not after `::` (so `a::crate` is not
/// the `crate` keyword).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let at = from + found;
        let before_ok = !text[..at].ends_with(is_ident) && !text[..at].ends_with("::");
        let after_ok = !text[at + word.len()..].starts_with(is_ident);
        if before_ok && after_ok {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The import graph of the crate under `root`: a parent module is the file that declares its
/// children, so an import of `sim::auth` is an edge to that file only, and a module's own
/// children are not its imports. The crate root (`lib.rs`, `main.rs`) wires everything and has
/// no edges of its own.
fn import_graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = crate_files(root);
    let modules: BTreeSet<String> = files.iter().map(|(_, m, _, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (_, module, _, source) in &files {
        if module.is_empty() {
            continue;
        }
        let mut names = imports(&source.code, module, &modules);
        names.retain(|name| name != module && !name.starts_with(&format!("{module}::")));
        graph.insert(module.clone(), names);
    }
    graph
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

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    for (name, root) in crates() {
        let graph = import_graph(&root);
        if let Some(cycle) = find_cycle(&graph) {
            panic!("import cycle in {name}: {}", cycle.join(" → "));
        }
    }
    // The parser finds what is there: a `crate::` import, a `super::` import, and a `crate::`
    // import of a module in braces.
    let exporter = import_graph(&workspace().join("src"));
    assert!(exporter.len() > 30, "{:?}", exporter.keys());
    assert!(
        exporter["metrics"].contains("status"),
        "{:?}",
        exporter["metrics"]
    );
    let kraken = import_graph(&workspace().join("kraken/src"));
    assert!(kraken.len() > 10, "{:?}", kraken.keys());
    assert!(kraken["client"].contains("nonce"), "{:?}", kraken["client"]);
    assert!(
        !kraken.contains_key("sim::testing"),
        "a #[cfg(test)] module is test code"
    );
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

#[test]
fn imports_resolve_crate_super_and_self_paths_and_braces() {
    let modules: BTreeSet<String> = ["", "a", "a::b", "a::b::c", "d", "e", "f", "g"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let code = "use super::c::X;\nuse crate::{d::Y, e};\nuse self::c as c2;\nfn f() { super::super::f::go(); }\nuse crate::g::{self};\nuse kraken::a::Z;\n";
    let found = imports(&code_only(code), "a::b", &modules);
    // `super::c` in `a::b` is `a::c`, no module here, so `a`; `self::c` is the child `a::b::c`.
    let expected: BTreeSet<String> = ["a", "a::b::c", "d", "e", "f", "g"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(found, expected);
    // Commented out and quoted paths are no imports; test items are skipped.
    let code = "// use crate::d;\nconst S: &str = \"crate::e\";\n#[cfg(test)]\nmod tests {\n    use crate::f;\n}\nfn g() { crate::g::run(); }\n";
    let found = imports(&read_source(code).code, "a", &modules);
    assert_eq!(found, ["g".to_owned()].into());
}

// ---------------------------------------------------------------------------------------------
// Sizes: functions and files.

/// Functions outside tests in `code` (as [`read_source`] leaves it) and their length in lines,
/// from `fn` to the closing brace at the same indentation (as rustfmt writes them).
fn function_lengths(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let signature = trimmed
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ")
            .trim_start_matches("const ")
            .trim_start_matches("async ")
            .trim_start_matches("unsafe ");
        if !signature.starts_with("fn ") || trimmed.ends_with(';') {
            continue;
        }
        let name: String = signature["fn ".len()..]
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

/// Lines of a file outside its tests.
fn lines_outside_tests(text: &str, source: &Source) -> usize {
    text.lines().count() - source.test_lines
}

/// The files over [`MAX_FILE_LINES`] outside their tests, as `path: n lines`.
fn oversized_files<'a>(files: impl IntoIterator<Item = (&'a Path, &'a str)>) -> Vec<String> {
    files
        .into_iter()
        .filter_map(|(path, text)| {
            let lines = lines_outside_tests(text, &read_source(text));
            (lines > MAX_FILE_LINES).then(|| format!("{}: {lines} lines", path.display()))
        })
        .collect()
}

#[test]
fn no_function_outside_tests_is_longer_than_the_limit() {
    let mut long = Vec::new();
    let mut counted = 0;
    for (_, root) in crates() {
        for (path, _, _, source) in crate_files(&root) {
            for (name, line, length) in function_lengths(&source.code) {
                counted += 1;
                if length > MAX_FUNCTION_LINES {
                    let path = path.strip_prefix(workspace()).unwrap().display();
                    long.push(format!("{path}:{line} fn {name}: {length} lines"));
                }
            }
        }
    }
    assert!(
        counted > 300,
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
    let text = "fn short() {\n    1;\n}\n\nimpl X {\n    pub fn method(&self) {\n        if a {\n        }\n    }\n}\n#[cfg(test)]\nfn ignored() {\n}\npub(crate) async fn after_tests() {\n    let s = \"}\";\n}\n";
    assert_eq!(
        function_lengths(&read_source(text).code),
        [
            ("short".to_owned(), 1, 3),
            ("method".to_owned(), 6, 4),
            ("after_tests".to_owned(), 14, 3)
        ]
    );
}

#[test]
fn no_file_outside_its_tests_is_longer_than_the_limit() {
    let mut texts = Vec::new();
    for (_, root) in crates() {
        for (path, _, text, _) in crate_files(&root) {
            let path = path.strip_prefix(workspace()).unwrap().to_owned();
            texts.push((path, text));
        }
    }
    assert!(texts.len() > 50, "{} files", texts.len());
    let oversized = oversized_files(texts.iter().map(|(p, t)| (p.as_path(), t.as_str())));
    assert!(
        oversized.is_empty(),
        "files over {MAX_FILE_LINES} lines outside their tests (split them by responsibility):\n{}",
        oversized.join("\n")
    );
}

#[test]
fn test_items_are_skipped_whole_wherever_they_are() {
    // A test module in the middle, with braces in strings, chars and comments; code after it.
    let text = "fn a() {}\n#[cfg(test)]\nmod tests {\n    const S: &str = \"}}\";\n    const C: char = '}';\n    // }\n    fn t<'a>(x: &'a str) {}\n}\nfn b() {\n    let s = \"#[cfg(test)]\";\n}\n#[cfg(test)]\nuse crate::{x, y};\n#[cfg(test)]\nmod testing;\n#[cfg(test)]\npub(crate) mod helpers;\n";
    let source = read_source(text);
    assert_eq!(source.test_lines, 7 + 2 + 2 + 2, "{}", source.code);
    assert_eq!(source.test_modules, ["testing", "helpers"]);
    assert!(source.code.contains("fn a()") && source.code.contains("fn b()"));
    assert!(!source.code.contains("mod tests") && !source.code.contains("use crate"));
    assert_eq!(source.code.lines().count(), text.lines().count());
    assert_eq!(lines_outside_tests(text, &source), 4);
    // A field and a field initialiser under `#[cfg(test)]`, and the code after them.
    let text = "struct S {\n    a: u8,\n    #[cfg(test)]\n    b: Vec<(u8, u8)>,\n}\nfn new() -> S {\n    S {\n        a: 1,\n        #[cfg(test)]\n        b: vec![(1, 2)]\n    }\n}\n";
    let source = read_source(text);
    assert_eq!(source.test_lines, 4, "{}", source.code);
    assert!(!source.code.contains("b:"), "{}", source.code);
    assert_eq!(function_lengths(&source.code), [("new".to_owned(), 6, 7)]);
}

#[test]
fn the_file_size_check_counts_lines_outside_tests() {
    let code_line = "fn f() {}\n";
    let at_limit = code_line.repeat(MAX_FILE_LINES);
    let with_tests = format!(
        "{at_limit}#[cfg(test)]\nmod tests {{\n{}}}\n",
        code_line.repeat(50)
    );
    let over = format!("{with_tests}{code_line}");
    let found = oversized_files([
        (Path::new("at_limit.rs"), at_limit.as_str()),
        (Path::new("with_tests.rs"), with_tests.as_str()),
        (Path::new("over.rs"), over.as_str()),
    ]);
    assert_eq!(found, [format!("over.rs: {} lines", MAX_FILE_LINES + 1)]);
}

// ---------------------------------------------------------------------------------------------
// The crate boundary.

/// The crates a manifest's `[dependencies]` name that are in [`FORBIDDEN_IN_KRAKEN`], read as
/// lines: `name = …` in `[dependencies]`, `[dependencies.name]` tables, and `package = "name"`
/// renames. Target-specific dependencies (`[target.….dependencies]`) count too.
fn forbidden_dependencies(manifest: &str) -> Vec<String> {
    let normalise = |name: &str| name.trim().trim_matches('"').replace('_', "-");
    let forbidden: BTreeSet<String> = FORBIDDEN_IN_KRAKEN.iter().map(|n| normalise(n)).collect();
    let mut section = String::new();
    let mut found = Vec::new();
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.starts_with('[') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
        }
        let in_dependencies = section == "dependencies" || section.ends_with(".dependencies");
        let mut names = Vec::new();
        if let Some(table) = section.strip_prefix("dependencies.") {
            names.push(normalise(table));
        } else if in_dependencies && let Some((key, _)) = line.split_once('=') {
            names.push(normalise(key));
        }
        if (in_dependencies || section.starts_with("dependencies."))
            && let Some(at) = line.find("package")
        {
            let value = line[at..].split('"').nth(1).unwrap_or_default();
            names.push(normalise(value));
        }
        for name in names {
            if forbidden.contains(&name) && !found.contains(&name) {
                found.push(name);
            }
        }
    }
    found
}

/// The files among `files` whose code (not comments or strings) names `kraken_exporter`.
fn files_naming_the_exporter<'a>(
    files: impl IntoIterator<Item = (&'a Path, &'a str)>,
) -> Vec<String> {
    files
        .into_iter()
        .filter(|(_, text)| find_word(&code_only(text), "kraken_exporter").is_some())
        .map(|(path, _)| path.display().to_string())
        .collect()
}

#[test]
fn the_kraken_crate_depends_on_nothing_of_the_exporter() {
    let manifest = std::fs::read_to_string(workspace().join("kraken/Cargo.toml")).unwrap();
    assert!(manifest.contains("[dependencies]"), "{manifest}");
    let forbidden = forbidden_dependencies(&manifest);
    assert!(
        forbidden.is_empty(),
        "kraken/Cargo.toml depends on {forbidden:?}: that belongs to the exporter, not to Kraken's wire format"
    );
    let files = crate_files(&workspace().join("kraken/src"));
    assert!(files.len() > 10);
    let naming = files_naming_the_exporter(
        files
            .iter()
            .map(|(path, _, text, _)| (path.as_path(), text.as_str())),
    );
    assert!(
        naming.is_empty(),
        "the kraken crate names the exporter in {naming:?}"
    );
}

#[test]
fn the_boundary_checks_find_what_crosses_it() {
    let manifest = "[package]\nname = \"kraken\"\n\n[dependencies]\nserde = \"1\"\nclap = { version = \"4\" } # no\nprometheus_client = \"0.22\"\nmetrics = { package = \"tokio-rustls\", version = \"0.26\" }\n\n[dependencies.flate2]\nversion = \"1\"\n\n[target.'cfg(unix)'.dependencies]\nbcrypt = \"0.19\"\n\n[dev-dependencies]\nx509-parser = \"0.18\"\n";
    assert_eq!(
        forbidden_dependencies(manifest),
        [
            "clap",
            "prometheus-client",
            "tokio-rustls",
            "flate2",
            "bcrypt"
        ]
    );
    assert!(forbidden_dependencies("[dependencies]\nserde = \"1\"\n").is_empty());
    let naming = "use kraken_exporter::metrics;\n";
    let quoting = "// kraken_exporter calls this\nconst UA: &str = \"kraken_exporter/1\";\n";
    assert_eq!(
        files_naming_the_exporter([
            (Path::new("naming.rs"), naming),
            (Path::new("quoting.rs"), quoting),
        ]),
        ["naming.rs"]
    );
}
