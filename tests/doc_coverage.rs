//! Every public item of `shmchan` has rustdoc with an example (a code block that compiles).
//!
//! The authoritative check is rustdoc's nightly-only `missing_doc_code_examples` lint:
//!
//! ```text
//! cargo +nightly rustdoc -p shmchan --lib -- -Z unstable-options \
//!     -Zcrate-attr='feature(rustdoc_missing_doc_code_examples)' -W rustdoc::missing_doc_code_examples
//! ```
//!
//! This test approximates it on stable, in milliseconds, by reading `shmchan/src` as text. It
//! relies on the sources being `rustfmt`ed (CI checks that): module-level items start in column
//! 0, the items of an `impl` or `trait` block in column 4, and a block's closing `}` is back in
//! column 0. It checks what the lint checks: functions and methods, structs, enums, unions,
//! traits and their methods, exported macros; not fields, variants, constants, statics, type
//! aliases, modules, trait-impl items or `#[doc(hidden)]` items. An item counts as public when
//! its module path is public or its name is re-exported by a `pub use` of a public module; an
//! inherent method when it is `pub fn` in an `impl` of such a type. Known blind spot: an `impl`
//! whose header spans several lines (a long `where` clause) is not looked into.
//!
//! An example is a fenced code block that rustdoc compiles: no info string, or `rust`,
//! `no_run`, `should_panic`, `edition…` (not `text`, `ignore` or `compile_fail` alone).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// One `.rs` file of the crate, with its module path.
struct SourceFile {
    /// Relative to `shmchan/src`, for messages.
    rel: String,
    /// Module path from the crate root (`[]` for `lib.rs`).
    module: Vec<String>,
    lines: Vec<String>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shmchan/src")
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<SourceFile>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read shmchan/src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, root, out);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .expect("under src")
            .to_string_lossy()
            .into_owned();
        let mut module: Vec<String> = rel
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_owned)
            .collect();
        if module.last().is_some_and(|m| m == "mod" || m == "lib") {
            module.pop();
        }
        let text = fs::read_to_string(&path).expect("read source file");
        out.push(SourceFile {
            rel,
            module,
            lines: text.lines().map(str::to_owned).collect(),
        });
    }
}

/// How `name` is declared in `parent`: `Some(true)` for `pub mod name;` (not `#[doc(hidden)]`),
/// `Some(false)` for a private, restricted or hidden module, `None` if not declared there.
fn declared_public(parent: &SourceFile, name: &str) -> Option<bool> {
    let mut hidden = false;
    for line in &parent.lines {
        if line == "#[doc(hidden)]" {
            hidden = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub mod ") {
            if rest.trim_end_matches(';') == name {
                return Some(!hidden);
            }
        } else if line.ends_with(&format!("mod {name};")) {
            return Some(false);
        }
        if !line.starts_with("#[") {
            hidden = false;
        }
    }
    None
}

/// Whether every module on the path from the crate root to `file` is public and not hidden.
fn module_is_public(file: &SourceFile, files: &[SourceFile]) -> bool {
    (1..=file.module.len()).all(|n| {
        let (parent, name) = (&file.module[..n - 1], &file.module[n - 1]);
        files
            .iter()
            .filter(|f| f.module == parent)
            .find_map(|f| declared_public(f, name))
            .unwrap_or(false)
    })
}

/// Identifiers named by the `pub use` statements of `file`.
fn reexported_names(file: &SourceFile, out: &mut BTreeSet<String>) {
    let mut in_use = false;
    for line in &file.lines {
        if line.starts_with("pub use ") {
            in_use = true;
        }
        if in_use {
            out.extend(
                line.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned),
            );
            in_use = !line.trim_end().ends_with(';');
        }
    }
}

/// The kind and name of an item declared on `code` (indentation removed), if the item is one
/// the check covers. `public` requires a plain `pub` (trait methods have none).
fn item(code: &str, public: bool) -> Option<(&'static str, String)> {
    let mut rest = code;
    if public {
        rest = rest.strip_prefix("pub ")?;
    }
    for qualifier in ["const ", "async ", "unsafe ", "extern \"C\" "] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest);
    }
    let (kind, rest) = ["fn", "struct", "enum", "union", "trait"]
        .into_iter()
        .find_map(|k| Some((k, rest.strip_prefix(k)?.strip_prefix(' ')?)))?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some((kind, name))
}

/// Whether a doc block holds a code block rustdoc compiles.
fn has_example(doc: &[String]) -> bool {
    let mut inside = false;
    for line in doc {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        if inside {
            inside = false;
            continue;
        }
        inside = true;
        let compiled = info
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .all(|t| matches!(t, "rust" | "no_run" | "should_panic") || t.starts_with("edition"));
        if compiled {
            return true;
        }
    }
    false
}

/// Bracket depth change of an attribute line, ignoring brackets inside string literals.
fn bracket_delta(line: &str) -> i32 {
    let (mut depth, mut in_str, mut escaped) = (0, false, false);
    for c in line.chars() {
        match (in_str, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_str = !in_str,
            (false, _, '[') => depth += 1,
            (false, _, ']') => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// The block a column-0 line opened.
enum Block {
    /// `impl Type` (inherent, `Some(type)`) or `impl Trait for Type` (`None`: not checked).
    Impl(Option<String>),
    /// `pub trait Name`.
    Trait(String),
    /// Anything else (a function body, a struct, `mod tests`, a skipped `#[cfg(test)]` item).
    Other,
}

/// The self type of an inherent `impl` line, `None` for a trait impl.
fn impl_self_type(code: &str) -> Option<String> {
    let mut rest = code
        .strip_prefix("unsafe ")
        .unwrap_or(code)
        .strip_prefix("impl")?;
    if rest.contains(" for ") {
        return None;
    }
    if let Some(generics) = rest.strip_prefix('<') {
        // Skip the impl's generic parameters (nested `<>` included).
        let mut depth = 1;
        let end = generics.char_indices().find_map(|(i, c)| {
            depth += match c {
                '<' => 1,
                '>' => -1,
                _ => 0,
            };
            (depth == 0).then_some(i + 1)
        })?;
        rest = &generics[end..];
    }
    let name: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Items of `file` without an example. `public_types`: names of public structs, enums, unions
/// and traits (whose methods are checked).
fn missing_examples(
    file: &SourceFile,
    module_public: bool,
    exported: &BTreeSet<String>,
    public_types: &mut BTreeSet<String>,
    mut report: Option<&mut Vec<String>>,
) {
    let mut doc: Vec<String> = Vec::new();
    let (mut attr_depth, mut cfg_test, mut hidden, mut macro_export) = (0, false, false, false);
    let mut block: Option<Block> = None;
    for (n, line) in file.lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let code = line.trim_start();
        if block.is_some() && indent == 0 && code.starts_with('}') {
            block = None;
            doc.clear();
            continue;
        }
        // Column 0 outside blocks, column 4 inside impl and trait blocks: the levels checked.
        let level = matches!(
            (&block, indent),
            (None, 0) | (Some(Block::Impl(Some(_)) | Block::Trait(_)), 4)
        );
        if !level {
            continue;
        }
        if attr_depth > 0 || code.starts_with("#[") {
            if code.starts_with("#[") {
                cfg_test |= code.starts_with("#[cfg(test)]");
                hidden |= code.starts_with("#[doc(hidden)]");
                macro_export |= code.starts_with("#[macro_export]");
            }
            attr_depth += bracket_delta(code);
            continue;
        }
        if let Some(text) = code.strip_prefix("///") {
            doc.push(text.to_owned());
            continue;
        }
        if code.is_empty() || code.starts_with("//") {
            continue;
        }
        let opens = code.ends_with('{');
        let skip = cfg_test || hidden;
        let covered = match &block {
            None if code.starts_with("macro_rules! ") && macro_export => Some((
                "macro",
                code["macro_rules! ".len()..]
                    .trim_end_matches(" {")
                    .to_owned(),
            )),
            None => item(code, true),
            Some(Block::Trait(_)) => item(code, false).filter(|(k, _)| *k == "fn"),
            Some(_) => item(code, true).filter(|(k, _)| *k == "fn"),
        };
        if let Some((kind, name)) = &covered {
            let public = match &block {
                None => *kind == "macro" || module_public || exported.contains(name),
                Some(Block::Impl(Some(ty)) | Block::Trait(ty)) => public_types.contains(ty),
                Some(_) => false,
            };
            if public && !skip {
                if matches!(*kind, "struct" | "enum" | "union" | "trait") {
                    public_types.insert(name.clone());
                }
                if !has_example(&doc) {
                    if let Some(r) = report.as_deref_mut() {
                        r.push(format!(
                            "shmchan/src/{}:{}: {kind} `{name}`",
                            file.rel,
                            n + 1
                        ));
                    }
                }
            }
        }
        if block.is_none() && opens && !code.ends_with("{}") {
            block = Some(match (&covered, impl_self_type(code)) {
                _ if skip => Block::Other,
                (Some(("trait", name)), _) => Block::Trait(name.clone()),
                (None, ty) if code.starts_with("impl") || code.starts_with("unsafe impl") => {
                    Block::Impl(ty)
                }
                _ => Block::Other,
            });
        }
        doc.clear();
        (cfg_test, hidden, macro_export) = (false, false, false);
    }
}

/// Public items known to lack an example when this test was written, as `file: kind name`
/// (without line numbers, so unrelated edits do not break the list). They are reported as
/// warnings, not failures, so that the files' owners can add the examples; delete an entry once
/// its example exists. New items are not to be added here: give them an example.
const KNOWN_GAPS: &[&str] = &[];

/// `shmchan/src/x.rs:12: fn `f`` without its line number.
fn without_line(entry: &str) -> String {
    match entry.split_once(": ") {
        Some((place, item)) => {
            let file = place.rsplit_once(':').map_or(place, |(f, _)| f);
            format!("{file}: {item}")
        }
        None => entry.to_owned(),
    }
}

#[test]
fn every_public_item_of_shmchan_has_a_doc_example() {
    let root = src_dir();
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    assert!(
        files.iter().any(|f| f.rel == "lib.rs"),
        "shmchan/src/lib.rs not found"
    );
    let public: HashMap<String, bool> = files
        .iter()
        .map(|f| (f.rel.clone(), module_is_public(f, &files)))
        .collect();
    let mut exported = BTreeSet::new();
    for f in files.iter().filter(|f| public[&f.rel]) {
        reexported_names(f, &mut exported);
    }
    let checked = |f: &&SourceFile| {
        let stem = f.rel.rsplit('/').next().unwrap_or_default();
        stem != "tests.rs" && !stem.ends_with("_tests.rs")
    };
    // Two passes: the first finds every public type, so that `impl` blocks in other files
    // (e.g. `impl Segment` in `segment/raw.rs`) are checked whatever the file order.
    let mut types = BTreeSet::new();
    for _ in 0..2 {
        for f in files.iter().filter(checked) {
            missing_examples(f, public[&f.rel], &exported, &mut types, None);
        }
    }
    let mut missing = Vec::new();
    for f in files.iter().filter(checked) {
        missing_examples(f, public[&f.rel], &exported, &mut types, Some(&mut missing));
    }
    assert!(
        types.contains("Shared") && types.contains("Segment") && types.contains("ShmSafe"),
        "the scan found no public types: has the source layout changed? found {types:?}"
    );
    let (known, missing): (Vec<String>, Vec<String>) = missing
        .into_iter()
        .partition(|m| KNOWN_GAPS.contains(&without_line(m).as_str()));
    if !known.is_empty() {
        eprintln!(
            "warning: public items still without an example (KNOWN_GAPS):\n{}",
            known.join("\n")
        );
    }
    assert!(
        missing.is_empty(),
        "public items without a compiling example in their rustdoc (add an `# Examples` section \
         with a code block):\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scanner_recognises_items_examples_and_impl_types() {
    let doc = |lines: &[&str]| lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
    assert!(has_example(&doc(&[" Text.", "", " ```", " f();", " ```"])));
    assert!(has_example(&doc(&[" ```no_run", " f();", " ```"])));
    assert!(!has_example(&doc(&[" ```text", " 0 magic", " ```"])));
    assert!(!has_example(&doc(&[" ```ignore", " f();", " ```"])));
    assert!(!has_example(&doc(&[" ```compile_fail", " f();", " ```"])));
    // A closing fence is not an opening one.
    assert!(!has_example(&doc(&[" ```text", " x", " ```", " done"])));
    assert!(!has_example(&doc(&[" See [`other`](Self::other)."])));

    assert_eq!(
        item("pub fn read(&self) -> T {", true),
        Some(("fn", "read".into()))
    );
    assert_eq!(
        item("pub const unsafe fn view(p: *const Self)", true),
        Some(("fn", "view".into()))
    );
    assert_eq!(
        item("pub unsafe trait ShmSafe: Copy {", true),
        Some(("trait", "ShmSafe".into()))
    );
    assert_eq!(
        item("unsafe fn view(ptr: *const Self);", false),
        Some(("fn", "view".into()))
    );
    assert_eq!(item("pub(crate) fn hidden() {", true), None);
    assert_eq!(item("pub const LIMIT: u32 = 1;", true), None);
    assert_eq!(item("pub type Alias = u8;", true), None);

    assert_eq!(impl_self_type("impl Segment {"), Some("Segment".into()));
    assert_eq!(
        impl_self_type("impl<T: ShmSafe, L: Lock> Shared<T, L> {"),
        Some("Shared".into())
    );
    assert_eq!(
        impl_self_type("impl<T: ShmSafe> Drop for Sender<T> {"),
        None
    );
    assert_eq!(impl_self_type("unsafe impl<T> Send for Inner<T> {}"), None);

    assert_eq!(bracket_delta(r#"#[doc = "[x"]"#), 0);
    assert_eq!(bracket_delta("#[diagnostic::on_unimplemented("), 1);
    assert_eq!(
        without_line("shmchan/src/error.rs:54: fn `cli_arg`"),
        "shmchan/src/error.rs: fn `cli_arg`"
    );
}
