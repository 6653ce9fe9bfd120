//! Setting up a tenant for the example: its output topic on, and the `orders` metadata
//! with `user-id` and `item-id` published to it.

use anyhow::Context;
use weir_processor::client::{WeirClient, accepted};
use weir_proto::metadata_command::Command as Meta;
use weir_proto::output_topic_config::OutputTopicRecordingLevel;
use weir_proto::{OutputTopicConfig, PutTenantRequest, RetryPolicy, WfSpec};

use crate::orders;

/// The `orders` workflow with `user-id` and `item-id` published to the output topic
/// (`enable_entity_events: true` on their definitions; they stay private variables).
pub fn published_wf_spec() -> WfSpec {
    let mut spec = orders::wf_spec();
    for thread in spec.thread_specs.values_mut() {
        for var in &mut thread.variable_defs {
            let name = var.var_def.as_ref().map(|d| d.name.as_str());
            if matches!(name, Some("user-id" | "item-id")) {
                var.enable_entity_events = Some(true);
            }
        }
    }
    spec
}

/// Enables `tenant`'s output topics (`ALL_ENTITY_EVENTS`) and puts the orders
/// metadata with [`published_wf_spec`]. The `orders` example's own setup puts the spec
/// without those flags, which would turn them off again in place.
pub async fn setup(client: &WeirClient, tenant: &str, retry: &RetryPolicy) -> anyhow::Result<()> {
    let put_tenant = Meta::PutTenant(PutTenantRequest {
        id: tenant.to_owned(),
        output_topic_config: Some(OutputTopicConfig {
            default_recording_level: OutputTopicRecordingLevel::AllEntityEvents as i32,
        }),
    });
    accepted(client.send_metadata(tenant, put_tenant).await?)
        .with_context(|| format!("enabling the output topic of tenant {tenant}"))?;
    orders::put_metadata(
        client,
        tenant,
        orders::task_defs(retry, 30),
        published_wf_spec(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_published_spec_is_the_example_s_with_the_ids_enabled() {
        let mut published = published_wf_spec();
        let thread = published
            .thread_specs
            .get_mut("entrypoint")
            .expect("the entrypoint");
        let flags: BTreeMap<String, Option<bool>> = thread
            .variable_defs
            .iter()
            .map(|v| {
                (
                    v.var_def
                        .as_ref()
                        .map(|d| d.name.clone())
                        .unwrap_or_default(),
                    v.enable_entity_events,
                )
            })
            .collect();
        assert_eq!(
            flags,
            BTreeMap::from([
                ("item-id".to_owned(), Some(true)),
                ("order-status".to_owned(), None),
                ("user-id".to_owned(), Some(true)),
            ])
        );
        for var in &mut thread.variable_defs {
            var.enable_entity_events = None;
        }
        assert_eq!(published, orders::wf_spec(), "nothing else differs");
    }
}
