//! The stage modules import only what comes before them, in the order a session id travels:
//! origin gate → id source → load (store) → bind (session) → handlers → save → lifecycle, with
//! one composition root (`sessions`) that nothing imports. A backward import fails this test.

use std::path::{Path, PathBuf};

/// The modules in order; each may import only modules listed before it.
const ORDER: &[&str] = &[
    "error",
    "tag",
    "task",
    "observe",
    "client",
    "origin",
    "csrf",
    "id",
    "guard",
    "proxy",
    "config",
    "store",
    "session",
    "extract",
    "lifecycle",
    "login",
    "connect",
    "http",
    "install",
    "sessions",
];

/// The top-level module a source file belongs to.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules a file names as `crate::<module>`.
fn imports(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
    }
    found
}

#[test]
fn no_stage_imports_a_later_one() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut checked = 0;
    let mut violations = Vec::new();
    for file in &all {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        if module == "lib" {
            continue;
        }
        let own = rank(&module)
            .unwrap_or_else(|| panic!("{module} is not in the stage order: add it to ORDER"));
        let text = std::fs::read_to_string(file).unwrap();
        // Tests inside a module may reach anywhere.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for import in imports(code) {
            let Some(theirs) = rank(&import) else {
                continue; // a root re-export such as `crate::SessionError`
            };
            checked += 1;
            if theirs > own {
                violations.push(format!(
                    "{} imports crate::{import}, a later stage",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} imports seen: is the parser broken?"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_a_backward_import() {
    assert_eq!(
        imports("use crate::session::Registry;\nuse crate::lifecycle::{EndReason};"),
        ["session", "lifecycle"]
    );
}
