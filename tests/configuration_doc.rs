//! `docs/configuration.md` is what the binary's flags say, word for word.
//! `PYEXEC_BLESS=1 cargo test --test configuration_doc` rewrites it.

#[test]
fn configuration_md_is_generated_from_the_flags() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let generated = pyexec::config_reference::markdown();
    if std::env::var_os("PYEXEC_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/configuration.md");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/configuration.md is stale: run `PYEXEC_BLESS=1 cargo test --test configuration_doc` and commit it"
    );
}
