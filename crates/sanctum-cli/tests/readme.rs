//! The README's shell transcripts (```` ```console ```` blocks) run against the real binary, so
//! what the README shows is what a user sees.
//!
//! Each block runs in a fresh temporary folder with no `SANCTUM_*` variables. A `$ ` line is a
//! command for `sh`, with `sanctum` standing for the binary under test; the lines after it, up
//! to the next `$ `, are its stdout and stderr together. `[..]` in an expected line matches any
//! text, and a last line `? N` is the exit status (0 when absent).

use std::path::Path;
use std::process::Command;

/// One command of a transcript and what it must print.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
    status: i32,
}

/// The `console` blocks of `markdown`, each as its steps.
fn transcripts(markdown: &str) -> Vec<Vec<Step>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<Step>> = None;
    for line in markdown.lines() {
        match (&mut current, line) {
            (None, "```console") => current = Some(Vec::new()),
            (None, _) => {}
            (Some(_), "```") => blocks.push(current.take().expect("inside a block")),
            (Some(steps), line) => {
                if let Some(command) = line.strip_prefix("$ ") {
                    steps.push(Step {
                        command: command.to_string(),
                        expected: Vec::new(),
                        status: 0,
                    });
                } else {
                    let step = steps.last_mut().expect("output before the first command");
                    match line.strip_prefix("? ") {
                        Some(n) => step.status = n.parse().expect("a status after '? '"),
                        None => step.expected.push(line.to_string()),
                    }
                }
            }
        }
    }
    assert!(current.is_none(), "an unclosed console block");
    blocks
}

/// Whether `actual` matches `pattern`, where `[..]` matches any text within the line.
fn matches(pattern: &str, actual: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Runs one step in `dir` and checks its output and status.
fn run_step(dir: &Path, step: &Step) {
    let bin = env!("CARGO_BIN_EXE_sanctum");
    let script = format!("sanctum() {{ \"{bin}\" \"$@\"; }}\n{} 2>&1", step.command);
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SANCTUM_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd.output().expect("run sh");
    let actual = String::from_utf8_lossy(&out.stdout);
    let actual: Vec<&str> = actual.lines().collect();
    let ok = actual.len() == step.expected.len()
        && step
            .expected
            .iter()
            .zip(&actual)
            .all(|(want, got)| matches(want, got));
    assert!(
        ok,
        "README step `$ {}` printed:\n{}\nexpected:\n{}",
        step.command,
        actual.join("\n"),
        step.expected.join("\n")
    );
    assert_eq!(
        out.status.code(),
        Some(step.status),
        "README step `$ {}` exited with the wrong status",
        step.command
    );
}

#[test]
fn readme_transcripts_match_the_binary() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("read README.md");
    let blocks = transcripts(&readme);
    assert!(!blocks.is_empty(), "the README has no console transcript");
    for steps in blocks {
        let dir = tempfile::tempdir().unwrap();
        for step in &steps {
            run_step(dir.path(), step);
        }
    }
}

#[test]
fn wildcards_match_only_what_they_should() {
    assert!(matches("version [..] size 6", "version 01J size 6"));
    assert!(matches("[..]", "anything"));
    assert!(matches("a[..]b[..]c", "a-x-b-y-c"));
    assert!(!matches("version [..] size 6", "version 01J size 7"));
    assert!(!matches("hello", "hello world"));
    assert!(!matches("a[..]b", "a-c"));
}
