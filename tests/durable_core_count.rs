//! The manifest pins the core count: opening with another count fails,
//! names both counts and touches nothing.

use std::path::PathBuf;

use tessera_engine::{DataDir, PersistError};

#[test]
fn a_different_core_count_is_refused_naming_both() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("durable-core-count");
    let _ = std::fs::remove_dir_all(&root);
    DataDir::open_or_create(&root, 2).unwrap();
    let error = DataDir::open_or_create(&root, 3).unwrap_err();
    assert!(matches!(
        error,
        PersistError::CoreCountMismatch {
            manifest: 2,
            requested: 3
        }
    ));
    let message = error.to_string();
    assert!(
        message.contains("2 cores") && message.contains("3 were requested"),
        "{message}"
    );
    assert!(!root.join("core-2").exists());
}
