//! `cairn new`: writes a standalone plugin project from templates embedded in
//! the binary, so a plugin author needs neither this repository nor network
//! access to the SDK.
//!
//! Templates live beside this file, one directory per language, with `{{name}}`
//! (the plugin name) and `{{crate}}` (the name with `-` as `_`) placeholders.
//! Each language is one row of [`LANGUAGES`]; a language whose row lists no
//! files is "not available in this build".

use std::path::{Path, PathBuf};

use crate::state::validate_plugin_name;

/// One file of a project: where it goes (may hold placeholders) and its text.
struct Template {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

const fn file(path: &'static str, text: &'static str) -> Template {
    Template {
        path,
        text,
        executable: false,
    }
}

const fn script(path: &'static str, text: &'static str) -> Template {
    Template {
        path,
        text,
        executable: true,
    }
}

/// The Rust project: the plugin, its test, the size profile, the pinned
/// toolchain, and a vendored copy of the guest SDK and WIT (the SDK is not
/// on crates.io; a path dependency on a copy inside the project keeps the
/// project standalone and buildable offline once its crates are fetched).
const RUST: &[Template] = &[
    file("Cargo.toml", include_str!("rust/Cargo.toml.tmpl")),
    file(
        "rust-toolchain.toml",
        include_str!("rust/rust-toolchain.toml.tmpl"),
    ),
    script("build.sh", include_str!("rust/build.sh.tmpl")),
    file("README.md", include_str!("rust/README.md.tmpl")),
    file(".gitignore", include_str!("rust/gitignore.tmpl")),
    file("src/lib.rs", include_str!("rust/lib.rs.tmpl")),
    file("tests/{{crate}}.rs", include_str!("rust/test.rs.tmpl")),
    file(
        "cairn-sdk/Cargo.toml",
        include_str!("rust/sdk-Cargo.toml.tmpl"),
    ),
    // Verbatim (no placeholders in them): the SDK and contract of this build.
    file(
        "cairn-sdk/src/lib.rs",
        include_str!("../../../../guest-sdk/src/lib.rs"),
    ),
    file(
        "cairn-sdk/src/ctx.rs",
        include_str!("../../../../guest-sdk/src/ctx.rs"),
    ),
    file(
        "cairn-sdk/src/error.rs",
        include_str!("../../../../guest-sdk/src/error.rs"),
    ),
    file(
        "cairn-sdk/src/key.rs",
        include_str!("../../../../guest-sdk/src/key.rs"),
    ),
    file(
        "cairn-sdk/src/mock.rs",
        include_str!("../../../../guest-sdk/src/mock.rs"),
    ),
    file(
        "cairn-sdk/src/storage.rs",
        include_str!("../../../../guest-sdk/src/storage.rs"),
    ),
    file("wit/cairn.wit", include_str!("../../../../wit/cairn.wit")),
];

/// The Python project (componentize-py 0.25.1): the plugin, its pytest
/// suite against the SDK's `MockHost`, the one-command build, and vendored
/// copies of the Python SDK (`cairn_sdk/`, not on PyPI) and of the WIT it
/// builds against. That WIT is `cairn:plugin@0.1.0` (still linked by the
/// host): the Python SDK has no `migrate` export yet.
const PYTHON: &[Template] = &[
    file("app.py", include_str!("python/app.py.tmpl")),
    file("test_app.py", include_str!("python/test_app.py.tmpl")),
    file("conftest.py", include_str!("python/conftest.py.tmpl")),
    script("build.sh", include_str!("python/build.sh.tmpl")),
    file("README.md", include_str!("python/README.md.tmpl")),
    file(".gitignore", include_str!("python/gitignore.tmpl")),
    // Verbatim (no placeholders in them): the SDK and contract of this build.
    file(
        "cairn_sdk/__init__.py",
        include_str!("../../../../guest-sdk-python/cairn_sdk/__init__.py"),
    ),
    file(
        "cairn_sdk/_json.py",
        include_str!("../../../../guest-sdk-python/cairn_sdk/_json.py"),
    ),
    file(
        "cairn_sdk/_wasm.py",
        include_str!("../../../../guest-sdk-python/cairn_sdk/_wasm.py"),
    ),
    file(
        "cairn_sdk/testing.py",
        include_str!("../../../../guest-sdk-python/cairn_sdk/testing.py"),
    ),
    file(
        "wit/cairn.wit",
        include_str!("../../../../wit/v0.1.0/cairn.wit"),
    ),
];

/// The JavaScript project (QuickJS via componentize-qjs): the plugin, its
/// `node --test` suite, the one-command build and a vendored copy of the JS
/// SDK (`@cairn/sdk`, a `file:` dependency) with the WIT it builds against.
/// That WIT is `cairn:plugin@0.1.0`, which the host still links; JS plugins
/// need no `migrate`.
const JS: &[Template] = &[
    script("build.sh", include_str!("js/build.sh")),
    file("src/plugin.js", include_str!("js/src/plugin.js")),
    file(
        "test/plugin.test.js",
        include_str!("js/test/plugin.test.js"),
    ),
    file("package.json", include_str!("js/package.json")),
    file("README.md", include_str!("js/README.md")),
    file(".gitignore", include_str!("js/.gitignore")),
    file(
        "vendor/cairn-sdk/package.json",
        include_str!("js/vendor/cairn-sdk/package.json"),
    ),
    file(
        "vendor/cairn-sdk/bin/cairn-js-build.mjs",
        include_str!("js/vendor/cairn-sdk/bin/cairn-js-build.mjs"),
    ),
    file(
        "vendor/cairn-sdk/src/index.js",
        include_str!("js/vendor/cairn-sdk/src/index.js"),
    ),
    file(
        "vendor/cairn-sdk/src/ctx.js",
        include_str!("js/vendor/cairn-sdk/src/ctx.js"),
    ),
    file(
        "vendor/cairn-sdk/src/error.js",
        include_str!("js/vendor/cairn-sdk/src/error.js"),
    ),
    file(
        "vendor/cairn-sdk/src/json.js",
        include_str!("js/vendor/cairn-sdk/src/json.js"),
    ),
    file(
        "vendor/cairn-sdk/src/keys.js",
        include_str!("js/vendor/cairn-sdk/src/keys.js"),
    ),
    file(
        "vendor/cairn-sdk/src/mock.js",
        include_str!("js/vendor/cairn-sdk/src/mock.js"),
    ),
    file(
        "vendor/cairn-sdk/src/schema.js",
        include_str!("js/vendor/cairn-sdk/src/schema.js"),
    ),
    file(
        "vendor/cairn-sdk/src/storage.js",
        include_str!("js/vendor/cairn-sdk/src/storage.js"),
    ),
    file(
        "vendor/cairn-sdk/src/wasm.js",
        include_str!("js/vendor/cairn-sdk/src/wasm.js"),
    ),
    file(
        "vendor/cairn-sdk/wit/cairn.wit",
        include_str!("js/vendor/cairn-sdk/wit/cairn.wit"),
    ),
];

/// Every language `cairn new` knows, with its files; adding one is one row.
const LANGUAGES: &[(&str, &[Template])] = &[("rust", RUST), ("python", PYTHON), ("js", JS)];

/// Why a project was not written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a valid plugin name (or, for Rust, crate name).
    #[error("invalid plugin name: {0}")]
    InvalidName(String),
    /// `--lang` names a language this build has no templates for.
    #[error("no {0} template is available in this build of cairn (available: {1})")]
    NotAvailable(String, String),
    /// The target directory exists and is not empty.
    #[error("{0} already exists and is not empty; choose another --dir")]
    NotEmpty(PathBuf),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The languages with templates in this build.
pub fn available_languages() -> Vec<&'static str> {
    LANGUAGES
        .iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(lang, _)| *lang)
        .collect()
}

fn fill(text: &str, name: &str) -> String {
    text.replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
}

/// Writes a new `lang` plugin project called `name` into `dir` (created; it
/// must not exist or be empty). Returns the files written, relative to `dir`.
pub fn create(name: &str, lang: &str, dir: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    validate_plugin_name(name).map_err(|e| ScaffoldError::InvalidName(e.message))?;
    // Also a package name in every language: Cargo and npm refuse a leading digit.
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(ScaffoldError::InvalidName(format!(
            "{name:?} must start with a letter (it also names the package)"
        )));
    }
    let files = LANGUAGES
        .iter()
        .find(|(l, _)| *l == lang)
        .map(|(_, files)| *files)
        .filter(|files| !files.is_empty())
        .ok_or_else(|| {
            ScaffoldError::NotAvailable(lang.to_string(), available_languages().join(", "))
        })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(ScaffoldError::NotEmpty(dir.to_path_buf()));
    }
    let mut written = Vec::with_capacity(files.len());
    for t in files {
        let rel = PathBuf::from(fill(t.path, name));
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, fill(t.text, name)).map_err(io(&path))?;
        if t.executable {
            make_executable(&path).map_err(io(&path))?;
        }
        written.push(rel);
    }
    Ok(written)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_rust_project_with_names_filled_in() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        let files = create("my-counter", "rust", &dir).unwrap();
        assert!(files.contains(&PathBuf::from("tests/my_counter.rs")));
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"my-counter\""), "{cargo}");
        assert!(cargo.contains("[profile.release]") && cargo.contains("opt-level = 3"));
        let build = std::fs::read_to_string(dir.join("build.sh")).unwrap();
        assert!(build.contains("release/my_counter.wasm"), "{build}");
        let toolchain = std::fs::read_to_string(dir.join("rust-toolchain.toml")).unwrap();
        assert!(toolchain.contains("wasm32-wasip2"));
        assert!(dir.join("wit/cairn.wit").exists() && dir.join("cairn-sdk/src/mock.rs").exists());
        for f in &files {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            assert!(
                !text.contains("{{name}}") && !text.contains("{{crate}}"),
                "{f:?}"
            );
        }
        // A second run into the same directory refuses rather than overwrite.
        assert!(matches!(
            create("my-counter", "rust", &dir),
            Err(ScaffoldError::NotEmpty(_))
        ));
    }

    #[test]
    fn writes_python_and_js_projects_with_the_sdk_and_the_0_1_0_contract() {
        let tmp = tempfile::tempdir().unwrap();
        for (lang, manifest, sdk_file) in [
            ("python", "build.sh", "cairn_sdk/_wasm.py"),
            ("js", "package.json", "vendor/cairn-sdk/src/wasm.js"),
        ] {
            let dir = tmp.path().join(lang);
            let files = create("my-plugin", lang, &dir).unwrap();
            assert!(dir.join(sdk_file).exists(), "{lang}: {files:?}");
            let text = std::fs::read_to_string(dir.join(manifest)).unwrap();
            assert!(text.contains("my-plugin"), "{lang}: {text}");
            let wit = files
                .iter()
                .find(|f| f.ends_with("wit/cairn.wit"))
                .unwrap_or_else(|| panic!("{lang}: no wit/cairn.wit in {files:?}"));
            let wit = std::fs::read_to_string(dir.join(wit)).unwrap();
            assert!(wit.contains("package cairn:plugin@0.1.0;"), "{lang}");
            for f in &files {
                let text = std::fs::read_to_string(dir.join(f)).unwrap();
                assert!(!text.contains("{{name}}"), "{lang}: {f:?}");
            }
        }
        assert!(available_languages().len() >= 3);
    }

    #[test]
    fn refuses_bad_names_and_unknown_languages() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["", "Caps", "9lives", "a/b"] {
            let err = create(name, "rust", &tmp.path().join("x")).unwrap_err();
            assert!(
                matches!(err, ScaffoldError::InvalidName(_)),
                "{name}: {err}"
            );
        }
        let err = create("ok", "cobol", &tmp.path().join("y")).unwrap_err();
        assert!(matches!(err, ScaffoldError::NotAvailable(..)), "{err}");
        assert!(err.to_string().contains("rust"), "{err}");
        assert!(!tmp.path().join("y").exists(), "nothing written");
    }
}
