//! Generates the man page and shell completions from the clap definition, so they cannot drift
//! from `--help`: `cargo run --example gen_docs -- packaging`. A test checks the committed files
//! are current.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// Every generated file, relative to the output directory, with its contents.
pub fn render() -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let cmd = singleton_exec::config::cli::Cli::command();
    let mut man = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut man)
        .expect("render man page");
    out.push((PathBuf::from("man/singleton-exec.1"), man));
    for (shell, file) in [
        (Shell::Bash, "singleton-exec.bash"),
        (Shell::Zsh, "_singleton-exec"),
        (Shell::Fish, "singleton-exec.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "singleton-exec", &mut buf);
        out.push((Path::new("completions").join(file), buf));
    }
    out
}

#[allow(dead_code)]
fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "packaging".into());
    for (path, bytes) in render() {
        let path = Path::new(&dir).join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create dir");
        std::fs::write(&path, bytes).expect("write");
        println!("{}", path.display());
    }
}
