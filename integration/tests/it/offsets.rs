//! Committed consumer-group offsets against the broker: simple commits (no group
//! membership), read back, overwritten, and kept apart per group.

use std::collections::BTreeMap;

use weir_integration::TestNamespace;
use weir_topology::kafka::TopicSpec;

#[tokio::test]
async fn committed_offsets_are_read_back_overwritten_and_kept_per_group() {
    let ns = TestNamespace::new("offsets").await;
    let topic = ns.topic("queue");
    ns.create_topic(TopicSpec::new(&topic, 3, 1)).await;
    let admin = ns.admin().await;
    let group_a = ns.topic("group-a");
    let group_b = ns.topic("group-b");

    let none: BTreeMap<i32, Option<i64>> = [(0, None), (1, None), (2, None)].into();
    assert_eq!(
        admin
            .committed_offsets(&group_a, &topic, &[0, 1, 2])
            .await
            .expect("fetch from an unknown group"),
        none
    );

    admin
        .commit_offsets(&group_a, &[(topic.clone(), 0, 5), (topic.clone(), 2, 17)])
        .await
        .expect("first commit");
    assert_eq!(
        admin
            .committed_offsets(&group_a, &topic, &[0, 1, 2])
            .await
            .expect("read back"),
        BTreeMap::from([(0, Some(5)), (1, None), (2, Some(17))])
    );

    admin
        .commit_offsets(&group_a, &[(topic.clone(), 0, 9), (topic.clone(), 1, 0)])
        .await
        .expect("overwrite");
    assert_eq!(
        admin
            .committed_offsets(&group_a, &topic, &[0, 1, 2])
            .await
            .expect("read back after overwrite"),
        BTreeMap::from([(0, Some(9)), (1, Some(0)), (2, Some(17))])
    );

    // Another group sees none of it, and its commits leave the first group alone.
    assert_eq!(
        admin
            .committed_offsets(&group_b, &topic, &[0, 1, 2])
            .await
            .expect("fetch from the second group"),
        none
    );
    admin
        .commit_offsets(&group_b, &[(topic.clone(), 0, 1)])
        .await
        .expect("commit in the second group");
    assert_eq!(
        admin
            .committed_offsets(&group_b, &topic, &[0])
            .await
            .expect("read back the second group"),
        BTreeMap::from([(0, Some(1))])
    );
    assert_eq!(
        admin
            .committed_offsets(&group_a, &topic, &[0])
            .await
            .expect("first group after the second committed"),
        BTreeMap::from([(0, Some(9))])
    );

    // A topic nobody created has nothing committed either.
    assert_eq!(
        admin
            .committed_offsets(&group_a, &ns.topic("never-created"), &[0])
            .await
            .expect("fetch for an unknown topic"),
        BTreeMap::from([(0, None)])
    );
}
