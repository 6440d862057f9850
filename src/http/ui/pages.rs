//! The page's HTML: askama templates (`templates/ui/`, escaped), the
//! rows of the app-password tables, and rendering.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app_passwords::{AppPassword, Listed, EVERY_REPOSITORY};

/// A page rendered, or, should a template fail, a bare 500.
pub(super) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page did not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be shown",
            )
                .into_response()
        }
    }
}

/// A page with a title and a line of text (what went wrong).
#[derive(Template)]
#[template(path = "ui/message.html")]
pub(super) struct Message<'a> {
    pub(super) base: &'a str,
    pub(super) title: &'a str,
    pub(super) text: &'a str,
}

/// The sign-in page: the browser sign-ins, and the password form.
#[derive(Template)]
#[template(path = "ui/signin.html")]
pub(super) struct SignInPage<'a> {
    pub(super) base: &'a str,
    pub(super) browser: Vec<String>,
    pub(super) form: bool,
    pub(super) csrf: &'a str,
    pub(super) error: Option<&'a str>,
}

/// A signed-in user's page: their groups and app passwords, and the
/// form that makes one.
#[derive(Template)]
#[template(path = "ui/home.html")]
pub(super) struct Home<'a> {
    pub(super) base: &'a str,
    pub(super) subject: &'a str,
    pub(super) provider: &'a str,
    pub(super) groups: Vec<String>,
    pub(super) passwords: Vec<Row>,
    pub(super) csrf: &'a str,
    pub(super) admin: bool,
    /// Team robots are on: the page links to theirs.
    pub(super) robots: bool,
    pub(super) default_days: u64,
    pub(super) max_days: u64,
    pub(super) error: Option<String>,
}

/// An app password just made: its secret, shown this once.
#[derive(Template)]
#[template(path = "ui/created.html")]
pub(super) struct Created<'a> {
    pub(super) base: &'a str,
    pub(super) name: &'a str,
    pub(super) subject: &'a str,
    pub(super) registry: &'a str,
    pub(super) secret: &'a str,
    pub(super) expires: String,
}

/// The device login's code form.
#[derive(Template)]
#[template(path = "ui/device.html")]
pub(super) struct DevicePage<'a> {
    pub(super) base: &'a str,
    pub(super) subject: &'a str,
    pub(super) csrf: &'a str,
    pub(super) code: &'a str,
    pub(super) error: Option<&'a str>,
}

/// A device login to approve or deny.
#[derive(Template)]
#[template(path = "ui/device_confirm.html")]
pub(super) struct DeviceConfirm<'a> {
    pub(super) base: &'a str,
    pub(super) csrf: &'a str,
    pub(super) subject: &'a str,
    pub(super) user_code: &'a str,
    pub(super) client_id: &'a str,
    pub(super) service: &'a str,
    pub(super) from: &'a str,
    /// Asked from another network than the one answering.
    pub(super) elsewhere: bool,
    pub(super) expires: String,
}

/// Everyone's app passwords, for an admin.
#[derive(Template)]
#[template(path = "ui/admin.html")]
pub(super) struct Admin<'a> {
    pub(super) base: &'a str,
    pub(super) passwords: Vec<Row>,
    pub(super) csrf: &'a str,
}

/// One app password as the page shows it.
pub(super) struct Row {
    id: String,
    name: String,
    owner: String,
    created: String,
    last_used: String,
    expires: String,
    scope: String,
}

/// A time as the page shows it (`2026-12-05 14:03 UTC`).
pub(super) fn day(at: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(at).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_default()
}

/// The rows of a table of app passwords.
pub(super) fn rows(listed: Vec<Listed>) -> Vec<Row> {
    listed.into_iter().map(row).collect()
}

fn row(listed: Listed) -> Row {
    let scope = scope_of(&listed.password);
    let p = listed.password;
    Row {
        owner: format!("{} ({})", p.subject, p.provider),
        id: p.id,
        name: p.name,
        created: day(p.created),
        last_used: listed.last_used.map_or_else(|| "never".to_owned(), day),
        expires: day(p.expires),
        scope,
    }
}

/// What an app password (or a robot) reaches, as the page says it.
pub(super) fn scope_of(p: &AppPassword) -> String {
    let scope = if p.limit.is_empty() {
        "all your access".to_owned()
    } else {
        p.limit
            .iter()
            .map(|l| {
                let repos = if l.repos == EVERY_REPOSITORY {
                    "every repository"
                } else {
                    &l.repos
                };
                format!("{repos}: {}", l.actions.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if p.networks.is_empty() {
        scope
    } else {
        format!("{scope}; from {}", p.networks.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_in_utc_to_the_minute() {
        assert_eq!(day(0), "1970-01-01 00:00 UTC");
        assert_eq!(day(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    #[test]
    fn pages_escape_what_users_wrote() {
        let page = Message {
            base: "/ui",
            title: "t",
            text: "<script>alert(1)</script>",
        };
        let body = page.render().unwrap();
        assert!(
            !body.contains("<script>") && body.contains("alert(1)"),
            "{body}"
        );
    }
}
