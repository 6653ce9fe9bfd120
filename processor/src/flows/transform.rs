//! The transform functions of a program that runs flows, registered by the name a
//! manifest's `Flow.transform` uses.
//!
//! A transform takes one record of the source model (a JSON object that passed
//! [`super::record::validate`]) and returns zero or more records of the target model,
//! or a reason the record cannot be transformed (the runtime dead-letters it). It must
//! be deterministic: the same record gives the same results, with no clock or random
//! input, so a replayed record produces the same output.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// A transform function: one source record in, its target records out.
pub type TransformFn = dyn Fn(&Value) -> Result<Vec<Value>, String> + Send + Sync;

/// A transform that could not be registered or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// A transform name is empty.
    #[error("a transform name may not be empty")]
    EmptyName,
    /// A second transform was registered under a name already taken.
    #[error("transform {0:?} is already registered")]
    Duplicate(String),
    /// No transform is registered under the name.
    #[error("no transform is registered as {0:?}")]
    Unknown(String),
    /// The transform refused the record.
    #[error("transform {name:?} failed: {reason}")]
    Failed { name: String, reason: String },
}

/// The transforms of one program, by name, in name order.
#[derive(Clone, Default)]
pub struct TransformRegistry {
    transforms: BTreeMap<String, Arc<TransformFn>>,
}

impl fmt::Debug for TransformRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformRegistry")
            .field("names", &self.transforms.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TransformRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `transform` as `name`; a name may be registered once.
    pub fn register<F>(
        &mut self,
        name: impl Into<String>,
        transform: F,
    ) -> Result<&mut Self, TransformError>
    where
        F: Fn(&Value) -> Result<Vec<Value>, String> + Send + Sync + 'static,
    {
        let name = name.into();
        if name.is_empty() {
            return Err(TransformError::EmptyName);
        }
        if self.transforms.contains_key(&name) {
            return Err(TransformError::Duplicate(name));
        }
        self.transforms.insert(name, Arc::new(transform));
        Ok(self)
    }

    /// Whether a transform is registered as `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.transforms.contains_key(name)
    }

    /// The transform registered as `name`.
    pub fn get(&self, name: &str) -> Option<Arc<TransformFn>> {
        self.transforms.get(name).map(Arc::clone)
    }

    /// The registered names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.transforms.keys().map(String::as_str)
    }

    /// Runs the transform `name` on `record`.
    pub fn apply(&self, name: &str, record: &Value) -> Result<Vec<Value>, TransformError> {
        let transform = self
            .transforms
            .get(name)
            .ok_or_else(|| TransformError::Unknown(name.to_owned()))?;
        transform(record).map_err(|reason| TransformError::Failed {
            name: name.to_owned(),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn registered_transforms_run_by_name() {
        let mut registry = TransformRegistry::new();
        registry
            .register("split", |v: &Value| {
                let words = v["text"].as_str().ok_or("no text")?;
                Ok(words.split(' ').map(|w| json!({ "word": w })).collect())
            })
            .and_then(|r| r.register("drop", |_: &Value| Ok(Vec::new())))
            .expect("two new names");
        assert!(registry.contains("split") && registry.contains("drop"));
        assert!(!registry.contains("missing"));
        assert_eq!(registry.names().collect::<Vec<_>>(), ["drop", "split"]);
        assert_eq!(
            registry.apply("split", &json!({"text": "a b"})),
            Ok(vec![json!({"word": "a"}), json!({"word": "b"})])
        );
        assert_eq!(registry.apply("drop", &json!({})), Ok(vec![]));
        assert_eq!(
            registry.apply("split", &json!({})),
            Err(TransformError::Failed {
                name: "split".into(),
                reason: "no text".into()
            })
        );
        assert_eq!(
            registry.apply("missing", &json!({})),
            Err(TransformError::Unknown("missing".into()))
        );
        assert!(format!("{registry:?}").contains("split"));
    }

    #[test]
    fn names_are_non_empty_and_unique() {
        let mut registry = TransformRegistry::new();
        let identity = |v: &Value| Ok(vec![v.clone()]);
        assert_eq!(
            registry.register("", identity).err(),
            Some(TransformError::EmptyName)
        );
        registry.register("id", identity).expect("new name");
        assert_eq!(
            registry.register("id", identity).err(),
            Some(TransformError::Duplicate("id".into()))
        );
        let f = registry.get("id").expect("registered");
        assert_eq!(f(&Value::Bool(true)), Ok(vec![Value::Bool(true)]));
    }
}
