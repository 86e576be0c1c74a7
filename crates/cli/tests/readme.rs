//! The README's lists of implemented and absent Vulkan commands cannot drift from the driver.
//!
//! * Every command in `tether_icd::loader::COMMANDS` is in the README's implemented list (grouped
//!   by the file that implements it, read from `crates/icd/src/loader.rs`), none is in its absent
//!   list, and the implemented list holds nothing else.
//! * The absent list is every Vulkan 1.0, 1.1 and 1.2 core command (the `VK_VERSION_1_x` blocks of
//!   `vulkan_core.h`) that is not in `COMMANDS`; checked when the header is installed
//!   (`libvulkan-dev`; or name it with `VULKAN_CORE_H`).
//!
//! `TETHER_BLESS=1 cargo test -p tether-cli --test readme` rewrites both lists in README.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_file(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One `cmd!(c"vkName", Scope, requires, path::to::function)` of loader.rs.
struct TableEntry {
    name: String,
    /// The file whose function implements it.
    file: String,
}

/// The `cmd!` invocations of loader.rs, in order.
fn parse_loader_table(source: &str) -> Vec<TableEntry> {
    let mut entries = Vec::new();
    for chunk in source.split("cmd!(").skip(1) {
        // The invocation's arguments: up to the parenthesis that closes `cmd!(`.
        let mut depth = 1;
        let end = chunk
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("unclosed cmd!(");
        let args: Vec<&str> = chunk[..end]
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        let Some(name) = args
            .first()
            .and_then(|a| a.strip_prefix("c\""))
            .and_then(|a| a.strip_suffix('"'))
        else {
            // The macro's own definition (`$name:literal`) is not an entry.
            continue;
        };
        let function = args.last().expect("cmd! has arguments");
        let file = match function.rsplit_once("::") {
            Some((module, _)) => format!("crates/icd/src/entry/{module}.rs"),
            None => "crates/icd/src/loader.rs".to_string(),
        };
        entries.push(TableEntry {
            name: name.to_string(),
            file,
        });
    }
    entries
}

/// The core commands of Vulkan 1.0, 1.1 and 1.2, by version, from `vulkan_core.h`.
fn core_commands(header: &str) -> Vec<(&'static str, Vec<String>)> {
    let block = |from: &str, to: &str| -> &str {
        let start = header.find(from).unwrap_or_else(|| panic!("{from} not in the header"));
        let end = header[start..]
            .find(to)
            .map_or_else(|| panic!("{to} not in the header"), |e| start + e);
        &header[start..end]
    };
    let names = |text: &str| -> Vec<String> {
        text.split("VKAPI_CALL ")
            .skip(1)
            .filter_map(|rest| rest.split('(').next())
            .map(str::trim)
            .filter(|n| n.starts_with("vk"))
            .map(String::from)
            .collect()
    };
    vec![
        (
            "1.0",
            names(block("#define VK_VERSION_1_0 1", "#define VK_VERSION_1_1 1")),
        ),
        (
            "1.1",
            names(block("#define VK_VERSION_1_1 1", "#define VK_VERSION_1_2 1")),
        ),
        (
            "1.2",
            names(block("#define VK_VERSION_1_2 1", "#define VK_VERSION_1_3 1")),
        ),
    ]
}

const IMPLEMENTED: &str = "implemented-commands";
const ABSENT: &str = "absent-commands";

fn markers(section: &str) -> (String, String) {
    (
        format!("<!-- BEGIN {section} (generated: TETHER_BLESS=1 cargo test -p tether-cli --test readme) -->"),
        format!("<!-- END {section} -->"),
    )
}

/// The text between a section's markers.
fn section<'a>(readme: &'a str, name: &str) -> &'a str {
    let (begin, end) = markers(name);
    let start = readme
        .find(&begin)
        .unwrap_or_else(|| panic!("README.md lacks the line {begin}"))
        + begin.len();
    let stop = readme[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("README.md lacks the line {end}"))
        + start;
    &readme[start..stop]
}

fn replace_section(readme: &str, name: &str, body: &str) -> String {
    let (begin, end) = markers(name);
    let start = readme.find(&begin).expect("begin marker") + begin.len();
    let stop = readme[start..].find(&end).expect("end marker") + start;
    format!("{}{}{}", &readme[..start], body, &readme[stop..])
}

/// Every `vkXxx` word of a text.
fn command_words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| w.starts_with("vk") && w.len() > 2 && w.as_bytes()[2].is_ascii_uppercase())
        .map(String::from)
        .collect()
}

fn code_list(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn implemented_section(table: &[TableEntry]) -> String {
    let mut files: Vec<&str> = Vec::new();
    for e in table {
        if !files.contains(&e.file.as_str()) {
            files.push(&e.file);
        }
    }
    let mut out = format!("\n{} commands, by the file that implements them:\n\n", table.len());
    out += "| file | commands |\n|---|---|\n";
    for file in files {
        let names: Vec<String> = table
            .iter()
            .filter(|e| e.file == file)
            .map(|e| e.name.clone())
            .collect();
        out += &format!("| `{file}` | {} |\n", code_list(&names));
    }
    out
}

fn absent_section(core: &[(&'static str, Vec<String>)], implemented: &BTreeSet<String>) -> String {
    let absent: Vec<(&str, Vec<String>)> = core
        .iter()
        .map(|(v, names)| {
            let missing = names.iter().filter(|n| !implemented.contains(*n)).cloned().collect();
            (*v, missing)
        })
        .collect();
    let total: usize = absent.iter().map(|(_, n)| n.len()).sum();
    let mut out = format!(
        "\n{total} Vulkan 1.0–1.2 core commands are absent (the proc-addr functions return NULL for them):\n\n"
    );
    for (version, names) in absent {
        out += &format!("- **Vulkan {version}** ({}): {}\n", names.len(), code_list(&names));
    }
    out
}

#[test]
fn readme_lists_every_command_where_it_belongs() {
    let table = parse_loader_table(&read("crates/icd/src/loader.rs"));
    let from_source: BTreeSet<String> = table.iter().map(|e| e.name.clone()).collect();
    let from_driver: BTreeSet<String> = tether_icd::loader::COMMANDS
        .iter()
        .map(|c| c.name.to_str().expect("ASCII name").to_string())
        .collect();
    assert_eq!(
        from_source, from_driver,
        "parsing loader.rs's cmd! entries must give exactly tether_icd::loader::COMMANDS"
    );

    let header_path = std::env::var_os("VULKAN_CORE_H")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/include/vulkan/vulkan_core.h"));
    let core = std::fs::read_to_string(&header_path).ok().map(|h| core_commands(&h));

    let readme_path = repo_file("README.md");
    let mut readme = read("README.md");
    if std::env::var_os("TETHER_BLESS").is_some() {
        readme = replace_section(&readme, IMPLEMENTED, &implemented_section(&table));
        match &core {
            Some(core) => readme = replace_section(&readme, ABSENT, &absent_section(core, &from_driver)),
            None => panic!(
                "TETHER_BLESS needs {} (apt-get install libvulkan-dev)",
                header_path.display()
            ),
        }
        std::fs::write(&readme_path, &readme).expect("writing README.md");
    }

    let implemented = command_words(section(&readme, IMPLEMENTED));
    let absent = command_words(section(&readme, ABSENT));
    let missing: Vec<_> = from_driver.difference(&implemented).collect();
    assert!(
        missing.is_empty(),
        "README.md's implemented list lacks {missing:?}; run TETHER_BLESS=1 cargo test -p tether-cli --test readme"
    );
    let stale: Vec<_> = implemented.difference(&from_driver).collect();
    assert!(
        stale.is_empty(),
        "README.md's implemented list names commands the driver lacks: {stale:?}"
    );
    let wrongly_absent: Vec<_> = from_driver.intersection(&absent).collect();
    assert!(
        wrongly_absent.is_empty(),
        "README.md lists implemented commands as absent: {wrongly_absent:?}"
    );
    assert_eq!(
        section(&readme, IMPLEMENTED),
        implemented_section(&table),
        "README.md's implemented list is out of date; run TETHER_BLESS=1 cargo test -p tether-cli --test readme"
    );
    match core {
        Some(core) => assert_eq!(
            section(&readme, ABSENT),
            absent_section(&core, &from_driver),
            "README.md's absent list is out of date; run TETHER_BLESS=1 cargo test -p tether-cli --test readme"
        ),
        None => eprintln!(
            "{} not found: the absent list was checked against the driver only",
            header_path.display()
        ),
    }
}

#[test]
fn readme_starts_with_the_two_commands() {
    let readme = read("README.md");
    let first_lines: Vec<&str> = readme.lines().take(20).collect();
    for command in ["cargo run --release --bin tether -- demo", "cargo test --workspace"] {
        assert!(
            first_lines.iter().any(|l| l.trim() == command),
            "README.md must start with `{command}`"
        );
    }
}

#[test]
fn header_parsing_finds_known_commands() {
    let Ok(header) = std::fs::read_to_string("/usr/include/vulkan/vulkan_core.h") else {
        return;
    };
    let core = core_commands(&header);
    let count = |v: &str| core.iter().find(|(x, _)| *x == v).map(|(_, n)| n.len()).unwrap_or(0);
    assert_eq!((count("1.0"), count("1.1"), count("1.2")), (137, 28, 13));
    assert!(core[0].1.contains(&"vkCreateInstance".to_string()));
    assert!(core[2].1.contains(&"vkWaitSemaphores".to_string()));
}
