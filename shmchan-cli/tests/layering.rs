//! The command is presentation only: it reaches the kernel through `shmchan::tool` and knows the
//! segment format only through `shmchan::format`. This test keeps it that way: no `libc`, no
//! `unsafe`, and none of the format's offsets written down again in `shmchan-cli/src`.

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn cli_sources_use_only_the_library_for_system_calls_and_offsets() {
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 5, "found the sources");
    // Words that mean "a second system-call layer" or "a second copy of the format".
    let banned = [
        "libc::",
        "unsafe ",
        "unsafe{",
        "OFF_",
        "mod seq",
        "mod ring",
        "from_ne_bytes",
        "AtomicU64",
    ];
    // Offsets of the header, seqlock and ring that earlier versions hard-coded.
    let offsets = ["28", "112", "120", "640", "1280", "1920"];
    let mut found = Vec::new();
    for (path, text) in &files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for b in banned {
                if code.contains(b) {
                    found.push(format!("{path}:{}: `{b}` in {line:?}", n + 1));
                }
            }
            for tok in code.split(|c: char| !c.is_ascii_alphanumeric() && c != '_') {
                if offsets.contains(&tok) {
                    found.push(format!(
                        "{path}:{}: offset literal {tok} in {line:?}",
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "shmchan-cli/src must use shmchan::format and shmchan::tool instead:\n{}",
        found.join("\n")
    );
}
