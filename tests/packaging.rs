//! The Debian package that `scripts/build-deb` makes: every file where Debian expects it, with its
//! mode, identical to the source; a binary that runs; the control fields and the conffile; an example
//! environment file that explains every variable; a unit that `systemd-analyze verify` accepts and
//! `systemd-analyze security` rates at most 5.0; and `lintian` finds no error and no warning (each
//! override in packaging/debian/lintian-overrides says why). The man pages: `mandoc -T lint` clean,
//! every variable singleton-exec reads or sets in their ENVIRONMENT, SEE ALSO naming only pages that
//! exist.
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

/// The most `systemd-analyze security --offline=true` may rate the unit (0 safe .. 10 unsafe).
const MAX_EXPOSURE: f64 = 5.0;

/// Under `CI=true` a missing tool fails the test; elsewhere it is skipped with a loud line.
fn skip_or_fail(what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {what}");
    }
    println!("SKIPPED: {what}");
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).output().is_ok()
}

/// The package's version: the crate's, and the Debian revision from Cargo.toml
/// (`[package.metadata.deb] revision`).
fn package_version() -> String {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let revision = manifest
        .lines()
        .find_map(|l| l.strip_prefix("revision = \""))
        .map(|r| r.trim_end_matches('"'))
        .unwrap_or_default();
    if revision.is_empty() {
        VERSION.to_owned()
    } else {
        format!("{VERSION}-{revision}")
    }
}

/// The pages of docs/, as paths relative to the repository (`docs/usage.md`): they ship beside the
/// README, in the .deb under /usr/share/doc/singleton-exec/docs/ and in the tarball under docs/, so
/// the README's links to them hold there too.
fn docs_pages() -> Vec<String> {
    let mut pages: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("docs/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    pages.sort();
    pages
}

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
        "/usr/share/man/man1/singleton-exec-status.1.gz",
        "packaging/man/singleton-exec-status.1",
        "-rw-r--r--",
    ),
    (
        "/usr/share/man/man1/singleton-exec-resign.1.gz",
        "packaging/man/singleton-exec-resign.1",
        "-rw-r--r--",
    ),
    (
        "/usr/share/man/man1/singleton-exec-timing.1.gz",
        "packaging/man/singleton-exec-timing.1",
        "-rw-r--r--",
    ),
    (
        "/usr/share/man/man1/singleton-exec-once-clear.1.gz",
        "packaging/man/singleton-exec-once-clear.1",
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
        "/usr/share/doc/singleton-exec/changelog.Debian.gz",
        "packaging/debian/changelog",
        "-rw-r--r--",
    ),
    (
        "/usr/share/lintian/overrides/singleton-exec",
        "packaging/debian/lintian-overrides",
        "-rw-r--r--",
    ),
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
pub(crate) fn package() -> Option<PathBuf> {
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
    let version = package_version();
    assert_eq!(
        name,
        format!("singleton-exec_{version}_{}.deb", arch.trim())
    );

    // Exactly the expected files (FILES, and every page of docs/ beside the README), owned by
    // root, with their modes.
    let docs: Vec<(String, String)> = docs_pages()
        .into_iter()
        .map(|page| (format!("/usr/share/doc/singleton-exec/{page}"), page))
        .collect();
    let all: Vec<(&str, &str, &str)> = FILES
        .iter()
        .copied()
        .chain(
            docs.iter()
                .map(|(path, source)| (path.as_str(), source.as_str(), "-rw-r--r--")),
        )
        .collect();
    let files = listing(&deb);
    let mut expected: Vec<&str> = all.iter().map(|f| f.0).collect();
    expected.sort_unstable();
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
    for (path, _, mode) in &all {
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
    for (path, source, _) in all.iter().filter(|f| !f.1.is_empty()) {
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
    let says = stdout_of(Command::new(&binary).arg("--version"));
    assert_eq!(says.trim(), format!("singleton-exec {VERSION}"));
    let unit =
        std::fs::read_to_string(installed("/usr/lib/systemd/system/singleton-exec@.service"))
            .unwrap();
    let exec_start = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(
        exec_start.starts_with("ExecStart=/usr/bin/singleton-exec -- "),
        "{exec_start}"
    );

    // Control fields and the conffile.
    assert_eq!(field(&deb, "Package"), "singleton-exec");
    assert_eq!(field(&deb, "Version"), version);
    assert_eq!(field(&deb, "Architecture"), arch.trim());
    assert_eq!(field(&deb, "Section"), "admin");
    assert_eq!(field(&deb, "Priority"), "optional");
    assert_eq!(
        field(&deb, "Maintainer"),
        "singleton-exec maintainers <maintainers@singleton-exec.dev>"
    );
    assert_eq!(field(&deb, "Homepage"), env!("CARGO_PKG_HOMEPAGE"));
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
    lintian(&deb);
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
    // verify checks that ExecStart's binary is executable: the extracted one stands in for
    // /usr/bin/singleton-exec.
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/singleton-exec@.service"))
        .unwrap()
        .replace(
            "ExecStart=/usr/bin/singleton-exec ",
            &format!(
                "ExecStart={} ",
                root.join("usr/bin/singleton-exec").display()
            ),
        );
    std::fs::write(&instance, unit).unwrap();
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

/// `lintian` on the package: no error and no warning. Overrides count only with a reason: every
/// override line of packaging/debian/lintian-overrides has a comment right above it.
fn lintian(deb: &Path) {
    let overrides =
        std::fs::read_to_string(Path::new(ROOT).join("packaging/debian/lintian-overrides"))
            .unwrap();
    let mut previous = "";
    for line in overrides.lines() {
        if !line.trim().is_empty() && !line.starts_with('#') {
            assert!(
                previous.starts_with('#'),
                "lintian-overrides: {line:?} has no reason above it"
            );
        }
        previous = line;
    }
    if !have("lintian", "--version") {
        return skip_or_fail(
            "lintian is not installed (Debian package lintian): the .deb is not linted",
        );
    }
    // lintian warns when run as root (as CI runs); that line is no finding.
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--no-tag-display-limit"])
        .arg(deb)
        .output()
        .expect("lintian");
    let report = String::from_utf8_lossy(&out.stdout);
    let findings: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    assert!(
        out.status.success() && findings.is_empty(),
        "lintian {}: {}\n{}{}",
        deb.display(),
        out.status,
        report,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Promise: the unit is hardened by default: `systemd-analyze security --offline=true` rates an
/// instance of it at most [`MAX_EXPOSURE`], and it runs as a user of its own, never root.
#[test]
fn systemd_unit_exposure_is_at_most_five() {
    let unit =
        std::fs::read_to_string(Path::new(ROOT).join("packaging/systemd/singleton-exec@.service"))
            .unwrap();
    for setting in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(setting), "the unit lacks {setting:?}");
    }
    if !have("systemd-analyze", "--version") {
        return skip_or_fail("systemd-analyze is not installed (Debian package systemd)");
    }
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("singleton-exec@example.service");
    std::fs::write(&instance, &unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&instance)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    println!("systemd-analyze security: exposure {exposure}");
    assert!(exposure <= MAX_EXPOSURE, "exposure {exposure}:\n{text}");
}

/// Every `.1` file under packaging/man.
fn man_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("packaging/man"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    pages.sort();
    pages
}

/// Promise: the man pages are clean for `mandoc -T lint` (Debian mandoc): not a style remark.
#[test]
fn man_pages_are_lint_clean() {
    let pages = man_pages();
    assert!(pages.len() >= 3, "{pages:?}");
    if !have("mandoc", "-V") && Command::new("mandoc").arg("-h").output().is_err() {
        return skip_or_fail(
            "mandoc is not installed (Debian package mandoc): the man pages are not linted",
        );
    }
    let out = Command::new("mandoc")
        .args(["-T", "lint"])
        .args(&pages)
        .output()
        .expect("mandoc");
    let remarks = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && remarks.trim().is_empty(),
        "mandoc -T lint: {}\n{remarks}",
        out.status
    );
}

/// The text of a man page's section `name`, from its `.SH` to the next.
fn section<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .find(&format!(".SH {name}\n"))
        .or_else(|| page.find(&format!(".SH \"{name}\"\n")))
        .unwrap_or_else(|| panic!("no section {name}"));
    let rest = &page[start + 4..];
    &rest[..rest.find("\n.SH ").unwrap_or(rest.len())]
}

/// Promise: the main page lists every variable singleton-exec reads or sets for its command
/// (every such name in the code outside its tests), its EXIT STATUS is a table with every code of
/// `--help`, and each SEE ALSO names a page we ship or one `man -w` finds here.
#[test]
fn man_page_environment_exit_status_and_see_also() {
    let page = std::fs::read_to_string(Path::new(ROOT).join("packaging/man/singleton-exec.1"))
        .unwrap()
        .replace("\\-", "-");
    let environment = section(&page, "ENVIRONMENT");

    // Every variable name the code spells out, tests excluded.
    let internal = ["SINGLETON_EXEC_INTERNAL_GUARD"];
    let mut names = std::collections::BTreeSet::new();
    let mut dirs = vec![Path::new(ROOT).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let code = std::fs::read_to_string(&path).unwrap();
            let code = code.split("#[cfg(test)]").next().unwrap_or_default();
            for piece in code.split('"').skip(1).step_by(2) {
                let is_name = !piece.is_empty()
                    && piece
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                let ours = ["SINGLETON_EXEC_", "ETCDCTL_", "ETCD_"]
                    .iter()
                    .any(|p| piece.starts_with(p) && piece.len() > p.len());
                if is_name && ours && !internal.contains(&piece) {
                    names.insert(piece.to_owned());
                }
            }
        }
    }
    assert!(names.len() > 30, "{names:?}");
    for name in &names {
        assert!(
            environment.contains(&format!("\\fB{name}\\fR")),
            "ENVIRONMENT of singleton-exec(1) does not list {name}"
        );
    }
    for systemd in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        assert!(environment.contains(systemd), "{systemd}");
    }

    let exit_status = section(&page, "EXIT STATUS");
    assert!(
        exit_status.contains(".TS") && exit_status.contains(".TE"),
        "{exit_status}"
    );
    for code in ["N", "128+S", "2", "3", "122", "124", "125", "126", "127"] {
        assert!(
            exit_status.contains(&format!("\n{code}@T{{")),
            "EXIT STATUS has no row {code}"
        );
    }

    let man = have("man", "--version");
    for page in man_pages() {
        let text = std::fs::read_to_string(&page).unwrap().replace("\\-", "-");
        let see_also = section(&text, "SEE ALSO");
        let refs: Vec<(String, String)> = see_also
            .split("\\fB")
            .skip(1)
            .filter_map(|r| {
                let (name, rest) = r.split_once("\\fR(")?;
                let section = rest.split(')').next()?;
                Some((name.to_owned(), section.to_owned()))
            })
            .collect();
        assert!(!refs.is_empty(), "{}: {see_also}", page.display());
        for (name, section) in refs {
            let ours = Path::new(ROOT)
                .join("packaging/man")
                .join(format!("{name}.{section}"));
            if name.starts_with("singleton-exec") {
                assert!(
                    ours.exists(),
                    "{}: SEE ALSO {name}({section}) is not generated",
                    page.display()
                );
            } else if man {
                let found = Command::new("man")
                    .args(["-w", &section, &name])
                    .output()
                    .is_ok_and(|o| o.status.success());
                assert!(
                    found,
                    "{}: SEE ALSO {name}({section}): man -w finds no such page",
                    page.display()
                );
            }
        }
    }
}

/// The release directory to check: `SINGLETON_EXEC_DIST` (scripts/test makes it before the test
/// run under CI=true), else one `scripts/release` builds when asked (`SINGLETON_EXEC_RELEASE_TEST=1`
/// or `CI=true`); `None` after a SKIPPED line otherwise.
fn release_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SINGLETON_EXEC_DIST").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let asked = std::env::var("SINGLETON_EXEC_RELEASE_TEST").as_deref() == Ok("1")
        || std::env::var("CI").as_deref() == Ok("true");
    if !asked {
        println!(
            "SKIPPED release_artefacts_run_and_match_their_checksums: scripts/release is two release \
             builds (5-8 min); SINGLETON_EXEC_RELEASE_TEST=1 builds and checks it, \
             SINGLETON_EXEC_DIST=DIR checks one built before"
        );
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("dist")
        .tempdir()
        .unwrap()
        .keep();
    let out = Command::new("bash")
        .arg(format!("{ROOT}/scripts/release"))
        .env("RELEASE_DIR", &dir)
        .output()
        .expect("scripts/release");
    assert!(
        out.status.success(),
        "scripts/release: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

/// Promise: `scripts/release` makes the static tarball (a binary that runs anywhere, with its man
/// pages, completions, unit and licenses), the .deb and the image, and `SHA256SUMS` matches each.
#[test]
fn release_artefacts_run_and_match_their_checksums() {
    let Some(dist) = release_dir() else { return };
    let version = package_version();
    let arch = stdout_of(Command::new("dpkg").arg("--print-architecture"));
    let tarball = format!("singleton-exec-{VERSION}-x86_64-linux.tar.gz");
    let deb = format!("singleton-exec_{version}_{}.deb", arch.trim());
    let image = format!("singleton-exec-{VERSION}-image.tar.gz");

    // Exactly the three artefacts and their sums, each sum right.
    let mut names: Vec<String> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want = vec![
        "SHA256SUMS".to_owned(),
        tarball.clone(),
        deb.clone(),
        image.clone(),
    ];
    want.sort();
    assert_eq!(names, want, "{}", dist.display());
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let mut listed: Vec<&str> = sums
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    listed.sort_unstable();
    let mut artefacts = vec![tarball.as_str(), deb.as_str(), image.as_str()];
    artefacts.sort_unstable();
    assert_eq!(listed, artefacts, "SHA256SUMS:\n{sums}");
    stdout_of(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&dist),
    );

    // The tarball: one directory, a static binary of this version, and the files beside it
    // identical to the repository's.
    let dir = tempfile::tempdir().unwrap();
    stdout_of(
        Command::new("tar")
            .arg("-xzf")
            .arg(dist.join(&tarball))
            .arg("-C")
            .arg(dir.path()),
    );
    let top = dir.path().join(tarball.trim_end_matches(".tar.gz"));
    let binary = top.join("singleton-exec");
    let says = stdout_of(Command::new(&binary).arg("--version"));
    assert_eq!(says.trim(), format!("singleton-exec {VERSION}"));
    let help = stdout_of(Command::new(&binary).arg("--help"));
    assert!(help.contains("--endpoints"), "{help}");
    let ldd = Command::new("ldd").arg(&binary).output().expect("ldd");
    let ldd = String::from_utf8_lossy(&ldd.stdout) + String::from_utf8_lossy(&ldd.stderr);
    assert!(
        !ldd.contains("=>"),
        "the tarball's binary is dynamically linked:\n{ldd}"
    );
    let docs = docs_pages();
    let mut shipped: Vec<(String, &str)> = vec![
        (
            "completions/singleton-exec.bash".into(),
            "packaging/completions/singleton-exec.bash",
        ),
        (
            "completions/_singleton-exec".into(),
            "packaging/completions/_singleton-exec",
        ),
        (
            "completions/singleton-exec.fish".into(),
            "packaging/completions/singleton-exec.fish",
        ),
        (
            "systemd/singleton-exec@.service".into(),
            "packaging/systemd/singleton-exec@.service",
        ),
        ("systemd/example.env".into(), "packaging/debian/example.env"),
        ("LICENSE-MIT".into(), "LICENSE-MIT"),
        ("LICENSE-APACHE".into(), "LICENSE-APACHE"),
        ("README.md".into(), "README.md"),
        ("CHANGELOG.md".into(), "CHANGELOG.md"),
    ];
    let pages: Vec<PathBuf> = man_pages();
    for page in &pages {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        shipped.push((format!("man/man1/{name}"), ""));
    }
    for page in &docs {
        shipped.push((page.clone(), page.as_str()));
    }
    for (path, source) in &shipped {
        let got =
            std::fs::read(top.join(path)).unwrap_or_else(|e| panic!("{tarball}: {path}: {e}"));
        let source = if source.is_empty() {
            format!(
                "packaging/man/{}",
                Path::new(path).file_name().unwrap().to_string_lossy()
            )
        } else {
            source.to_string()
        };
        let want = std::fs::read(Path::new(ROOT).join(&source)).unwrap();
        assert!(got == want, "{tarball}: {path} differs from {source}");
    }

    // The image: what `docker load` reads, tagged with this version.
    let manifest = stdout_of(
        Command::new("tar")
            .arg("-xzOf")
            .arg(dist.join(&image))
            .arg("manifest.json"),
    );
    assert!(
        manifest.contains(&format!("\"singleton-exec:{VERSION}\"")),
        "{image}: manifest.json: {manifest}"
    );
}
