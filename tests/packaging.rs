//! The Debian package that `scripts/build-deb` makes: every file where Debian expects it, with its
//! mode, identical to the source; a binary that runs; the control fields and the conffile; an example
//! environment file that explains every variable; a unit that `systemd-analyze verify` accepts.
//!
//! Building the package is a release build (2-3 minutes on 2 cores), so the test builds it only
//! when asked: `SINGLETON_EXEC_DEB_TEST=1` or `CI=true` run `scripts/build-deb` (scripts/test builds
//! it before the test run and passes it in); `SINGLETON_EXEC_DEB=PATH` checks a package built
//! before. Otherwise it prints a loud SKIPPED line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Path in the package → the repository file it must equal (man page: gzip'd) and its mode.
const FILES: &[(&str, &str, &str)] = &[
    ("/usr/bin/singleton-exec", "", "-rwxr-xr-x"),
    (
        "/usr/lib/systemd/system/singleton-exec@.service",
        "packaging/systemd/singleton-exec@.service",
        "-rw-r--r--",
    ),
    (
        "/usr/share/man/man1/singleton-exec.1.gz",
        "packaging/man/singleton-exec.1",
        "-rw-r--r--",
    ),
    (
        "/usr/share/bash-completion/completions/singleton-exec",
        "packaging/completions/singleton-exec.bash",
        "-rw-r--r--",
    ),
    (
        "/usr/share/zsh/vendor-completions/_singleton-exec",
        "packaging/completions/_singleton-exec",
        "-rw-r--r--",
    ),
    (
        "/usr/share/fish/vendor_completions.d/singleton-exec.fish",
        "packaging/completions/singleton-exec.fish",
        "-rw-r--r--",
    ),
    // It may be copied with a password in it: not world-readable.
    (
        "/etc/singleton-exec/example.env",
        "packaging/debian/example.env",
        "-rw-------",
    ),
    ("/usr/share/doc/singleton-exec/copyright", "", "-rw-r--r--"),
    (
        "/usr/share/doc/singleton-exec/LICENSE-MIT",
        "LICENSE-MIT",
        "-rw-r--r--",
    ),
    (
        "/usr/share/doc/singleton-exec/LICENSE-APACHE",
        "LICENSE-APACHE",
        "-rw-r--r--",
    ),
    (
        "/usr/share/doc/singleton-exec/README.md",
        "README.md",
        "-rw-r--r--",
    ),
];

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package to check, built if asked; `None` (and a SKIPPED line) if not asked.
fn package() -> Option<PathBuf> {
    if let Some(deb) = std::env::var_os("SINGLETON_EXEC_DEB").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(deb));
    }
    let asked = std::env::var("SINGLETON_EXEC_DEB_TEST").as_deref() == Ok("1")
        || std::env::var("CI").as_deref() == Ok("true");
    if !asked {
        println!(
            "SKIPPED debian_package_contents_fields_and_unit: building the .deb is a release build \
             (2-3 min); SINGLETON_EXEC_DEB_TEST=1 builds and checks it, SINGLETON_EXEC_DEB=PATH checks \
             one built before"
        );
        return None;
    }
    let out = stdout_of(Command::new("bash").arg(format!("{ROOT}/scripts/build-deb")));
    let deb = out
        .lines()
        .last()
        .expect("scripts/build-deb printed the path");
    Some(Path::new(ROOT).join(deb))
}

/// `dpkg-deb -c`: path → (mode, owner) of every regular file.
fn listing(deb: &Path) -> BTreeMap<String, (String, String)> {
    stdout_of(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (mode, owner, path) = (f.first()?, f.get(1)?, f.get(5)?);
            mode.starts_with('-').then(|| {
                (
                    path.trim_start_matches('.').to_owned(),
                    (mode.to_string(), owner.to_string()),
                )
            })
        })
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    stdout_of(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
        .trim_end()
        .to_owned()
}

/// Every variable line (`NAME=...`, commented out or not) sits under a line of explanation.
fn check_every_variable_is_explained(env_file: &str, help: &str) {
    let is_assignment = |s: &str| {
        s.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
    };
    let mut explained = false;
    for line in env_file.lines() {
        let text = line.trim_start_matches('#');
        if line.trim().is_empty() {
            explained = false;
        } else if is_assignment(text) {
            assert!(explained, "example.env: {line:?} has no comment above it");
            let name = text.split('=').next().unwrap_or_default();
            if name.starts_with("SINGLETON_EXEC_") && name != "SINGLETON_EXEC_LOG" {
                assert!(
                    help.contains(name),
                    "example.env: {name} is no option of singleton-exec"
                );
            }
        } else {
            explained = true;
        }
    }
}

#[test]
fn debian_package_contents_fields_and_unit() {
    let Some(deb) = package() else { return };
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    let arch = stdout_of(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(
        name,
        format!("singleton-exec_{VERSION}_{}.deb", arch.trim())
    );

    // Exactly the expected files, owned by root, with their modes.
    let files = listing(&deb);
    let mut expected: Vec<&str> = FILES.iter().map(|f| f.0).collect();
    expected.sort_unstable();
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
    for (path, _, mode) in FILES {
        let (got_mode, owner) = &files[*path];
        assert_eq!(got_mode, mode, "{path}");
        // cargo-deb stores numeric ids; dpkg-deb shows names only when the archive has them.
        assert!(
            owner == "0/0" || owner == "root/root",
            "{path} owned by {owner}"
        );
    }

    // Each identical to its source.
    let dir = tempfile::tempdir().unwrap();
    stdout_of(Command::new("dpkg").arg("-x").arg(&deb).arg(dir.path()));
    let root = dir.path();
    let installed = |p: &str| root.join(p.trim_start_matches('/'));
    for (path, source, _) in FILES.iter().filter(|f| !f.1.is_empty()) {
        let want = std::fs::read(Path::new(ROOT).join(source)).unwrap();
        let got = if path.ends_with(".gz") {
            stdout_of(Command::new("gzip").arg("-dc").arg(installed(path))).into_bytes()
        } else {
            std::fs::read(installed(path)).unwrap()
        };
        assert!(got == want, "{path} differs from {source}");
    }
    let copyright =
        std::fs::read_to_string(installed("/usr/share/doc/singleton-exec/copyright")).unwrap();
    assert!(copyright.contains("MIT OR Apache-2.0"), "{copyright}");

    // The binary runs, and the unit starts that binary.
    let binary = installed("/usr/bin/singleton-exec");
    let version = stdout_of(Command::new(&binary).arg("--version"));
    assert_eq!(version.trim(), format!("singleton-exec {VERSION}"));
    let unit =
        std::fs::read_to_string(installed("/usr/lib/systemd/system/singleton-exec@.service"))
            .unwrap();
    let exec_start = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(
        exec_start.contains("exec /usr/bin/singleton-exec "),
        "{exec_start}"
    );

    // Control fields and the conffile.
    assert_eq!(field(&deb, "Package"), "singleton-exec");
    assert_eq!(field(&deb, "Version"), VERSION);
    assert_eq!(field(&deb, "Architecture"), arch.trim());
    assert_eq!(field(&deb, "Section"), "admin");
    assert_eq!(field(&deb, "Priority"), "optional");
    assert!(field(&deb, "Maintainer").contains('@'));
    let depends = field(&deb, "Depends");
    assert!(depends.contains("libc6"), "Depends: {depends}");
    let description = field(&deb, "Description");
    assert!(
        description.starts_with(env!("CARGO_PKG_DESCRIPTION")) && description.lines().count() > 3,
        "Description: {description}"
    );
    let conffiles = stdout_of(
        Command::new("dpkg-deb")
            .arg("-I")
            .arg(&deb)
            .arg("conffiles"),
    );
    assert_eq!(conffiles.trim(), "/etc/singleton-exec/example.env");
    let postinst = stdout_of(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("postinst"));
    assert!(postinst.contains("daemon-reload"), "{postinst}");

    let help = stdout_of(Command::new(&binary).arg("--help"));
    let env_file = std::fs::read_to_string(installed("/etc/singleton-exec/example.env")).unwrap();
    check_every_variable_is_explained(&env_file, &help);

    verify_unit(root);
}

/// `systemd-analyze verify` on an instance of the installed unit, with the installed man page (its
/// Documentation= line) when `man` is there. It exits 0 even for unknown keys, so any warning fails.
fn verify_unit(root: &Path) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED systemd-analyze verify of the packaged unit: systemd-analyze not installed (Debian package systemd)");
        return;
    }
    let units = tempfile::tempdir().unwrap();
    let instance = units.path().join("singleton-exec@example.service");
    std::fs::copy(
        root.join("usr/lib/systemd/system/singleton-exec@.service"),
        &instance,
    )
    .unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify");
    if Command::new("man").arg("--version").output().is_ok() {
        cmd.env("MANPATH", root.join("usr/share/man"));
    } else {
        cmd.arg("--man=no");
    }
    let out = cmd.arg(&instance).output().expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}
