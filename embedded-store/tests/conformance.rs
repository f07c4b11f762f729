//! The backend-independent store conformance suite, run against [`EmbeddedStore`]:
//! every case gets a fresh store in its own temporary directory.

use meridian_embedded_store::EmbeddedStore;
use meridian_store::Store;
use meridian_store::conformance::Fixture;

/// A fresh embedded store and the directory it lives in.
struct EmbeddedFixture {
    store: EmbeddedStore,
    // Dropped after the store (field order), so the files outlive it.
    _dir: tempfile::TempDir,
}

impl EmbeddedFixture {
    async fn new() -> EmbeddedFixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = EmbeddedStore::open(dir.path())
            .await
            .expect("embedded store opens");
        EmbeddedFixture { store, _dir: dir }
    }
}

impl Fixture for EmbeddedFixture {
    fn store(&self) -> &dyn Store {
        &self.store
    }
}

meridian_store::conformance_tests!(EmbeddedFixture::new());
