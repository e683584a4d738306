//! The build cache: one small JSON file per step key, naming the layer the
//! step made (its blob descriptor and diff ID), or that it made none.

use std::path::PathBuf;

use cargohold_image_core::{Descriptor, Digest, NewLayer};

/// The build cache: key -> the layer a step made (or none).
pub(crate) struct Cache {
    pub(crate) dir: PathBuf,
}

impl Cache {
    fn path(&self, key: &Digest) -> PathBuf {
        self.dir.join(key.hex())
    }

    /// `Some(None)`: the step made no layer.
    pub(crate) fn get(&self, key: &Digest) -> Option<Option<NewLayer>> {
        let text = std::fs::read(self.path(key)).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
        if v.get("empty").and_then(serde_json::Value::as_bool) == Some(true) {
            return Some(None);
        }
        let descriptor: Descriptor = serde_json::from_value(v.get("descriptor")?.clone()).ok()?;
        let diff_id = Digest::parse(v.get("diff_id")?.as_str()?).ok()?;
        Some(Some(NewLayer { descriptor, diff_id }))
    }

    /// Best effort: a cache that cannot be written only costs a rebuild.
    pub(crate) fn put(&self, key: &Digest, layer: Option<&NewLayer>) {
        let v = match layer {
            None => serde_json::json!({ "empty": true }),
            Some(l) => serde_json::json!({ "descriptor": l.descriptor, "diff_id": l.diff_id }),
        };
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        if let Ok(tmp) = tempfile::NamedTempFile::new_in(&self.dir)
            && std::fs::write(tmp.path(), v.to_string()).is_ok()
        {
            let _ = tmp.as_file().sync_all();
            let _ = tmp.persist(self.path(key));
        }
    }
}
