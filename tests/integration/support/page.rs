//! The app-password page as a browser without JavaScript uses it: a
//! cookie jar, pages and forms through the router, the password sign-in,
//! and making and revoking app passwords.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use regauth::AppState;

use super::{call, Fixture, Reply, TestConfig};

/// Cookies as a browser keeps them.
#[derive(Default, Clone)]
pub struct Jar(pub BTreeMap<String, String>);

impl Jar {
    pub fn take(&mut self, reply: &Reply) {
        for value in reply.headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") || value.is_empty() {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub async fn page(state: &Arc<AppState>, jar: &mut Jar, path: &str) -> Reply {
    let request = Request::get(path)
        .header("cookie", jar.header())
        .body(Body::empty())
        .unwrap();
    let reply = call(state, request).await;
    jar.take(&reply);
    reply
}

pub async fn submit(
    state: &Arc<AppState>,
    jar: &mut Jar,
    path: &str,
    form: &[(&str, &str)],
) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let request = Request::post(path)
        .header("cookie", jar.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let reply = call(state, request).await;
    jar.take(&reply);
    reply
}

/// The value of the first `name="csrf"` field on a page.
pub fn csrf(reply: &Reply) -> String {
    let text = reply.text();
    let at = text
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field:\n{text}"));
    let rest = &text[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The app password on a "created" page.
pub fn secret_of(reply: &Reply) -> String {
    let text = reply.text();
    let at = text
        .find(r#"<code id="secret">"#)
        .unwrap_or_else(|| panic!("no secret:\n{text}"));
    let rest = &text[at + r#"<code id="secret">"#.len()..];
    rest[..rest.find('<').unwrap()].to_owned()
}

/// The fixture's configuration with the page and `extra` (a state
/// backend, say): the static users sign in with its password form, and
/// `local:readers` are its administrators.
pub fn ui_config(f: &Fixture, extra: &str) -> TestConfig {
    f.config(&format!(
        "{extra}\n[app_passwords]\nkey_file = \"{}\"\nlogin_form = [\"local\"]\nadmin_groups = [\"local:readers\"]\n",
        f.path("app-passwords.key").display()
    ))
}

/// Signs in with the password form; the session's CSRF token.
pub async fn sign_in(state: &Arc<AppState>, jar: &mut Jar, user: &str, password: &str) -> String {
    let form = page(state, jar, "/ui/").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text());
    let token = csrf(&form);
    let signed = submit(
        state,
        jar,
        "/ui/signin",
        &[("username", user), ("password", password), ("csrf", &token)],
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.text());
    let home = page(state, jar, "/ui/").await;
    assert!(
        home.text().contains("Your app passwords"),
        "{}",
        home.text()
    );
    csrf(&home)
}

/// `regauth tokens revoke --user USER` with this configuration, as an
/// operator runs it beside the server.
pub fn tokens_revoke(config: &std::path::Path, user: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args([
            "tokens",
            "revoke",
            "--config",
            config.to_str().unwrap(),
            "--user",
            user,
        ])
        .output()
        .unwrap()
}

/// The id part of an app password (`rga_<id>_<secret>`).
pub fn id_of(secret: &str) -> String {
    let rest = secret.strip_prefix("rga_").expect("an app password");
    rest.split('_').next().unwrap().to_owned()
}

/// Presses "Revoke" on app password `id`.
pub async fn revoke(state: &Arc<AppState>, jar: &mut Jar, id: &str, csrf: &str) -> Reply {
    submit(
        state,
        jar,
        &format!("/ui/passwords/{id}/revoke"),
        &[("csrf", csrf)],
    )
    .await
}

/// Every action ticked on the page, no pattern: all of the owner's access.
pub const ALL: &[&str] = &["pull", "push", "delete"];

pub async fn create(
    state: &Arc<AppState>,
    jar: &mut Jar,
    csrf: &str,
    name: &str,
    repos: &str,
    actions: &[&str],
) -> String {
    let mut form = vec![
        ("csrf", csrf),
        ("name", name),
        ("days", "30"),
        ("repos", repos),
    ];
    form.extend(actions.iter().map(|a| ("actions", *a)));
    let created = submit(state, jar, "/ui/passwords", &form).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    assert_eq!(created.header("cache-control"), Some("no-store"));
    secret_of(&created)
}
