//! The execution processor: runs WfRuns from the commands on `core-cmd`.

use std::sync::Arc;

use weir_topology::{InputRecord, ProcessingError, Processor, ProcessorContext};

use super::CoreStores;
use crate::topics::CoreTopics;

/// Handles the commands of one `core-cmd` partition.
#[derive(Debug)]
pub struct CoreProcessor {
    #[allow(dead_code)]
    stores: Arc<CoreStores>,
    #[allow(dead_code)]
    topics: CoreTopics,
}

impl CoreProcessor {
    pub fn new(stores: Arc<CoreStores>, topics: CoreTopics) -> Self {
        Self { stores, topics }
    }
}

impl Processor for CoreProcessor {
    fn process(
        &mut self,
        _ctx: &mut ProcessorContext<'_, '_>,
        _record: &InputRecord,
    ) -> Result<(), ProcessingError> {
        Err(ProcessingError::record(
            "execution commands are not handled yet",
        ))
    }
}
