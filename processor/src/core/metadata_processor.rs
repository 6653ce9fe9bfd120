//! The metadata processor: validates, versions and stores metadata commands.

use std::sync::Arc;

use weir_topology::{InputRecord, ProcessingError, Processor, ProcessorContext};

use super::CoreStores;
use crate::topics::CoreTopics;

/// Handles the single `metadata-cmd` partition.
#[derive(Debug)]
pub struct MetadataProcessor {
    #[allow(dead_code)]
    stores: Arc<CoreStores>,
    #[allow(dead_code)]
    topics: CoreTopics,
}

impl MetadataProcessor {
    pub fn new(stores: Arc<CoreStores>, topics: CoreTopics) -> Self {
        Self { stores, topics }
    }
}

impl Processor for MetadataProcessor {
    fn process(
        &mut self,
        _ctx: &mut ProcessorContext<'_, '_>,
        _record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        Err(ProcessingError::record(
            "metadata commands are not handled yet",
        ))
    }
}
