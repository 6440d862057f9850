//! Tests of the Entra provider's configuration.

use super::config::is_guid;
use super::*;

const TENANT: &str = "8d9e0f1a-2b3c-4d5e-8f70-1a2b3c4d5e6f";
const CLIENT: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";

fn config(extra: serde_json::Value) -> Result<EntraConfig, String> {
    let mut table = serde_json::json!({ "tenant": TENANT, "client_id": CLIENT });
    table
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let config: EntraConfig = serde_json::from_value(table).map_err(|e| e.to_string())?;
    config
        .validate()
        .map_err(|e| format!("{}: {}", e.key, e.message))?;
    Ok(config)
}

#[test]
fn the_tenant_is_its_id_and_its_issuers_are_v2_v1_and_the_admitted() {
    let other = "11111111-2222-3333-4444-555555555555";
    let c = config(serde_json::json!({ "tenants": [other] })).unwrap();
    let oidc = c.oidc(TENANT).unwrap();
    assert_eq!(
        oidc.issuer,
        format!("https://login.microsoftonline.com/{TENANT}/v2.0")
    );
    assert!(oidc
        .other_issuers
        .contains(&format!("https://sts.windows.net/{TENANT}/")));
    assert!(oidc
        .other_issuers
        .contains(&format!("https://login.microsoftonline.com/{other}/v2.0")));
    assert_eq!(
        oidc.audiences,
        [CLIENT.to_owned(), format!("api://{CLIENT}")]
    );
    assert!(oidc.groups_claims.is_empty(), "groups are Entra's own");
    assert!(oidc.password_grant_id_token);
    assert!(
        config(serde_json::json!({ "tenant": "contoso.com" })).is_ok(),
        "a verified domain"
    );
    for bad in ["contoso", "common com", "-a.com", "a..com"] {
        let e = config(serde_json::json!({ "tenant": bad })).unwrap_err();
        assert!(e.starts_with("tenant:"), "{bad}: {e}");
    }
    let e = config(serde_json::json!({ "tenants": ["fabrikam.com"] })).unwrap_err();
    assert!(e.starts_with("tenants:"), "{e}");
    let e = config(serde_json::json!({ "group_names": "cn" })).unwrap_err();
    assert!(e.contains("unknown variant"), "{e}");
    assert!(config(serde_json::json!({ "group_names": "onPremisesSamAccountName" })).is_ok());
}

#[test]
fn graph_needs_the_client_secret() {
    let c = config(serde_json::json!({})).unwrap();
    let e = Entra::new("entra", &c).err().unwrap().to_string();
    assert!(e.contains("client secret"), "{e}");
    let ids_only = config(serde_json::json!({ "group_names": "id" })).unwrap();
    assert!(
        Entra::new("entra", &ids_only).is_ok(),
        "ids from the claim need no Graph"
    );
    assert!(is_guid(TENANT) && !is_guid("72f988bf-86f1-41af-91ab-2d7cd011db4") && !is_guid("x"));
}

#[test]
fn a_group_is_called_by_its_name_unless_the_name_looks_like_an_id() {
    crate::install_crypto_provider();
    let c = config(serde_json::json!({})).unwrap();
    let graph = graph::Graph::new(&c, TENANT, graph::Credential::None, reqwest::Client::new());
    let group = |name: &str| -> graph::Group {
        serde_json::from_value(serde_json::json!({"id": TENANT, "displayName": name})).unwrap()
    };
    assert_eq!(graph.name(&group("platform")).as_deref(), Some("platform"));
    assert_eq!(
        graph.name(&group(CLIENT)),
        None,
        "shaped like another group's id"
    );
    assert_eq!(graph.name(&group("")), None);
    let sam = config(serde_json::json!({"group_names": "onPremisesSamAccountName"})).unwrap();
    let graph = graph::Graph::new(
        &sam,
        TENANT,
        graph::Credential::None,
        reqwest::Client::new(),
    );
    assert_eq!(
        graph.name(&group("platform")),
        None,
        "not synced from AD: the id alone"
    );
}

#[test]
fn a_certificate_credential_is_whole_and_alone() {
    let e = config(serde_json::json!({ "client_certificate_file": "/c" })).unwrap_err();
    assert!(e.starts_with("client_key_file:"), "{e}");
    let both = serde_json::json!({
        "client_certificate_file": "/c", "client_key_file": "/k", "client_secret_file": "/s"
    });
    let e = config(both).unwrap_err();
    assert!(e.contains("not both"), "{e}");
    let c = config(serde_json::json!({ "client_certificate_file": "/nonexistent.crt", "client_key_file": "/k" }))
        .unwrap();
    let e = Entra::new("entra", &c).err().unwrap().to_string();
    assert!(e.contains("client_certificate_file"), "{e}");
}

#[test]
fn the_metadata_is_asked_again_after_a_growing_pause() {
    let mut pause = Pause::default();
    assert!(pause.waiting().is_none());
    pause.after(false);
    let first = pause.waiting().unwrap();
    assert!(first <= std::time::Duration::from_secs(1));
    pause.after(false);
    pause.after(false);
    assert!(pause.waiting().unwrap() > std::time::Duration::from_secs(3));
    for _ in 0..10 {
        pause.after(false);
    }
    assert!(pause.waiting().unwrap() <= std::time::Duration::from_secs(60));
    pause.after(true);
    assert!(pause.waiting().is_none());
}
