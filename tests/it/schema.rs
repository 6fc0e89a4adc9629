//! Opt-in blueprint schema validation on a hub: `sorcha` and a schema file; 422 with JSON
//! pointers and nothing written; peers replicate without re-validating.

use crate::support::{PUBLISHER, TestHub, publish, wait_for};
use serde_json::{Value, json};

fn blueprint(id: &str) -> Value {
    json!({
        "id": id,
        "title": "Expense approval",
        "description": "Submit, approve and pay an expense.",
        "participants": [{"id": "employee", "name": "Employee"}, {"id": "manager", "name": "Manager"}],
        "actions": [{"id": 1, "title": "Submit"}, {"id": 2, "title": "Approve"}],
        "extra": "other fields are allowed"
    })
}

#[tokio::test]
async fn a_hub_with_the_sorcha_schema_refuses_documents_that_break_it() {
    let hub = TestHub::configured(|c| c.validation.blueprint_schema = "sorcha".into()).await;
    let (status, _) = hub.publish("expense", blueprint("expense")).await;
    assert_eq!(status, 201);
    let (_, before) = hub.get("/api/v1/system-register").await;

    let (status, problem) = hub
        .publish(
            "broken",
            json!({"id": "broken", "title": "ab", "participants": [{"id": "only"}], "actions": [{"id": "one"}]}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "urn:sorcha:problem:schema-violation");
    let pointers: Vec<&str> = problem["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pointer"].as_str().unwrap())
        .collect();
    for expected in [
        "",
        "/title",
        "/participants",
        "/participants/0",
        "/actions/0/id",
        "/actions/0",
    ] {
        assert!(pointers.contains(&expected), "{expected:?} in {pointers:?}");
    }
    assert!(
        problem["detail"].as_str().unwrap().contains("/title"),
        "{problem}"
    );

    // An update is checked too.
    let r = hub
        .http
        .put(hub.url("/api/v1/system-register/blueprints/expense"))
        .bearer_auth(PUBLISHER)
        .json(&json!({"document": {"title": "no actions"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let (_, after) = hub.get("/api/v1/system-register").await;
    assert_eq!(before, after, "nothing written");

    // A peer replicates the hub's entries without a schema of its own.
    let peer = TestHub::peer_of(vec![hub.url("")], |_| {}).await;
    wait_for("the peer replicated", || async {
        let (_, r) = peer.get("/api/v1/system-register").await;
        (r["headVersion"] == before["headVersion"]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_schema_file_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.json");
    std::fs::write(
        &file,
        r#"{"type": "object", "required": ["owner"], "properties": {"owner": {"type": "string", "pattern": "^team-"}}}"#,
    )
    .unwrap();
    let path = file.to_str().unwrap().to_owned();
    let hub = TestHub::configured(move |c| c.validation.blueprint_schema = path).await;
    let (status, _) = publish(
        &hub.http,
        hub.addr(),
        PUBLISHER,
        "ok",
        json!({"owner": "team-a"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, problem) = publish(
        &hub.http,
        hub.addr(),
        PUBLISHER,
        "bad",
        json!({"owner": "bob"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["violations"][0]["pointer"], "/owner");
    assert!(
        problem["detail"].as_str().unwrap().contains("schema.json"),
        "{problem}"
    );
}
