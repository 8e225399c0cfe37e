//! The committed CRD YAML and its reference page must be exactly what the Rust types generate:
//! edit the types, then run `cargo run -p keyturn-operator -- crd > crds/keyturn.dev_managedsecrets.yaml`
//! and `cargo run -p keyturn-operator -- crd --reference > docs/reference/managedsecret.md`.

#![allow(clippy::expect_used)]

use std::path::Path;

#[test]
fn committed_crd_matches_the_rust_types() {
    let generated = keyturn_crds::crd_yaml().expect("the CRD serialises to YAML");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("keyturn.dev_managedsecrets.yaml");
    let committed =
        std::fs::read_to_string(&path).expect("crds/keyturn.dev_managedsecrets.yaml is committed");
    assert!(
        committed == generated,
        "{} drifted from the Rust types in crds/src; regenerate it with \
         `cargo run -p keyturn-operator -- crd > crds/keyturn.dev_managedsecrets.yaml`",
        path.display()
    );
}

#[test]
fn committed_reference_page_matches_the_rust_types() {
    let generated =
        keyturn_crds::reference::reference_markdown().expect("the CRD reference renders");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/managedsecret.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} drifted from the Rust types in crds/src (or is missing); regenerate it with `{}`",
        path.display(),
        keyturn_crds::reference::REGENERATE
    );
}
