//! What a secret looks like, which decides the providers it may go to: the
//! forges' token formats, a JWT and its issuer, regauth's app passwords.
//! The one place these facts are written: the chain routes by
//! [`SecretShape::of`], each provider's `accepts` names the shapes it
//! takes, and [`crate::Safe`] hides from log lines whatever is not a
//! password.

use std::borrow::Cow;

/// What a secret looks like, which decides the providers it may go to.
/// New shapes may be added: a provider's `accepts` should name the shapes
/// it takes, never accept "anything but".
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretShape<'a> {
    /// `ghp_`, `github_pat_`, `gho_`, `ghu_`, `ghs_`.
    GitHubToken,
    /// `glpat-`, `glcbt-`, `gldt-` (and GitLab's other prefixes), or any
    /// secret under the username `gitlab-ci-token` (a CI job token) or a
    /// deploy token's username.
    GitLabToken,
    /// `rga_`: one of regauth's own app passwords.
    AppPassword,
    /// 40 lower-case hex digits: a Gitea or Forgejo access token when a
    /// Gitea provider is configured, a password otherwise.
    HexToken,
    /// A compact JWT, with its (unverified) issuer if it has one.
    Jwt {
        /// The token's `iss` claim, not verified; `None` if it has none.
        issuer: Option<Cow<'a, str>>,
    },
    /// Anything else: a password (or an opaque token).
    Password,
}

impl SecretShape<'_> {
    /// Recognises a credential's shape: an app password, GitHub and GitLab
    /// token prefixes, a compact JWT (three base64url parts whose header
    /// is a JSON object with `alg`; its unverified issuer is kept for
    /// routing), GitLab's job-token and deploy-token usernames, a Gitea
    /// token's 40 hex digits, or else a password. A JWT comes before the
    /// usernames: a GitLab ID token goes to its issuer, whatever the
    /// username.
    pub fn of(username: &str, secret: &str) -> SecretShape<'static> {
        if secret.starts_with(APP_PASSWORD_PREFIX) {
            return SecretShape::AppPassword;
        }
        if GITHUB_TOKEN_PREFIXES.iter().any(|p| secret.starts_with(p)) {
            return SecretShape::GitHubToken;
        }
        if GITLAB_TOKEN_PREFIXES.iter().any(|p| secret.starts_with(p)) {
            return SecretShape::GitLabToken;
        }
        if let Some(issuer) = jwt_issuer(secret) {
            return SecretShape::Jwt {
                issuer: issuer.map(Cow::Owned),
            };
        }
        if is_gitlab_token(username, secret) {
            return SecretShape::GitLabToken;
        }
        if is_gitea_token(secret) {
            return SecretShape::HexToken;
        }
        SecretShape::Password
    }

    /// The same shape, borrowing this one's issuer: to offer one shape to
    /// several providers without copying the issuer for each.
    pub fn borrowed(&self) -> SecretShape<'_> {
        match self {
            SecretShape::GitHubToken => SecretShape::GitHubToken,
            SecretShape::GitLabToken => SecretShape::GitLabToken,
            SecretShape::AppPassword => SecretShape::AppPassword,
            SecretShape::HexToken => SecretShape::HexToken,
            SecretShape::Jwt { issuer } => SecretShape::Jwt {
                issuer: issuer.as_deref().map(Cow::Borrowed),
            },
            SecretShape::Password => SecretShape::Password,
        }
    }
}

/// For a compact JWT (three non-empty base64url parts, the first a JSON
/// object with `alg`), its unverified `iss`, if any; `None` for anything
/// that is not a JWT.
fn jwt_issuer(secret: &str) -> Option<Option<String>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let mut parts = secret.split('.');
    let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || [header, claims, signature].iter().any(|p| p.is_empty()) {
        return None;
    }
    let json = |part: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    json(header)?.get("alg")?;
    Some(json(claims).and_then(|c| c.get("iss")?.as_str().map(str::to_owned)))
}

/// The prefix of regauth's app passwords.
pub const APP_PASSWORD_PREFIX: &str = "rga_";

/// The prefix of a team robot's login name (`robot$platform+ci`): kept
/// for robots, refused from every provider, so that no user's name can
/// ever be a robot's.
pub const TEAM_ROBOT_PREFIX: &str = "robot$";

/// Whether `name` (any case, surrounding blanks ignored) is in the
/// team robots' namespace.
pub fn is_team_robot_name(name: &str) -> bool {
    name.trim()
        .get(..TEAM_ROBOT_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(TEAM_ROBOT_PREFIX))
}

/// The prefixes of GitHub's token formats.
pub const GITHUB_TOKEN_PREFIXES: &[&str] = &["ghp_", "github_pat_", "gho_", "ghu_", "ghs_"];

/// Token prefixes that belong to GitLab: access tokens (`glpat-`), CI job
/// tokens (`glcbt-`), and the kinds regauth refuses with a message (deploy
/// tokens and GitLab's other token types), so that none of them is ever
/// offered to a password provider.
pub const GITLAB_TOKEN_PREFIXES: &[&str] = &[
    "glpat-", "glcbt-", "gldt-", "glrt-", "gloas-", "glptt-", "glft-", "glimt-", "glagent-",
    "glsoat-", "glffct-",
];

/// The Basic username GitLab's own registry uses with `CI_JOB_TOKEN`.
pub const JOB_TOKEN_USERNAME: &str = "gitlab-ci-token";

/// The Basic usernames of GitLab deploy tokens (`gitlab+deploy-token-N`).
const DEPLOY_TOKEN_USERNAME: &str = "gitlab+deploy-token-";

/// Whether `username` is GitLab's job-token username, in any case and
/// with spaces around it.
pub(crate) fn is_job_token_username(username: &str) -> bool {
    username.trim().eq_ignore_ascii_case(JOB_TOKEN_USERNAME)
}

/// Whether `username` is a GitLab deploy token's, in any case and with
/// spaces around it.
pub(crate) fn is_deploy_token_username(username: &str) -> bool {
    let prefix = DEPLOY_TOKEN_USERNAME.as_bytes();
    username
        .trim()
        .as_bytes()
        .get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// Whether these credentials are a GitLab token: a GitLab prefix, the
/// job-token username, or a deploy token's username.
pub fn is_gitlab_token(username: &str, secret: &str) -> bool {
    GITLAB_TOKEN_PREFIXES.iter().any(|p| secret.starts_with(p))
        || is_job_token_username(username)
        || is_deploy_token_username(username)
}

/// Whether a secret has the shape of a Gitea or Forgejo access token: 40
/// lower-case hex digits.
pub fn is_gitea_token(secret: &str) -> bool {
    secret.len() == 40
        && secret
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_shapes() {
        use base64::Engine as _;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let of = SecretShape::of;
        for token in ["ghp_x", "github_pat_x", "gho_x", "ghu_x", "ghs_x"] {
            assert_eq!(of("u", token), SecretShape::GitHubToken, "{token}");
        }
        for token in ["glpat-x", "glcbt-x", "gldt-x"] {
            assert_eq!(of("u", token), SecretShape::GitLabToken, "{token}");
        }
        // GitLab's own registry login for CI_JOB_TOKEN, whatever its form
        for user in ["gitlab-ci-token", "GitLab-CI-Token", " gitlab-ci-token"] {
            assert_eq!(of(user, "64_hGf2dsJ4w"), SecretShape::GitLabToken, "{user}");
        }
        assert_eq!(of("rga_x", "rga_1_secret"), SecretShape::AppPassword);
        let hex = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(of("u", hex), SecretShape::HexToken);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"iss":"https://sso"}"#)
        );
        let SecretShape::Jwt { issuer } = of("u", &jwt) else {
            panic!("not a JWT")
        };
        assert_eq!(issuer.as_deref(), Some("https://sso"));
        // a GitLab ID token goes to its issuer, whatever the username
        assert!(matches!(
            of("gitlab-ci-token", &jwt),
            SecretShape::Jwt { .. }
        ));
        let no_issuer = format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64("{}"));
        assert_eq!(of("u", &no_issuer), SecretShape::Jwt { issuer: None });
        for password in [
            "hunter2",
            "a.b.c",
            "ghx_x",
            "",
            "x.y",
            &hex.to_uppercase(),
            &hex[1..],
        ] {
            assert_eq!(of("u", password), SecretShape::Password, "{password}");
        }
    }

    #[test]
    fn gitlab_usernames_in_any_case() {
        assert!(is_gitlab_token("gitlab+deploy-token-3", "x5kq_legacy"));
        assert!(is_gitlab_token(" GitLab+Deploy-Token-3", "x5kq_legacy"));
        assert!(is_gitlab_token("ci", "glrt-runner"));
        assert!(is_gitlab_token("GitLab-CI-Token", "legacy"));
        assert!(!is_gitlab_token("dev", "hunter2"));
        assert!(!is_gitlab_token("gitlab+deploy", "hunter2"));
        assert!(!is_gitlab_token("ünïcode-username-long", "hunter2"));
    }

    #[test]
    fn a_borrowed_shape_is_the_same_shape() {
        let shape = SecretShape::Jwt {
            issuer: Some(Cow::Owned("https://sso".into())),
        };
        assert_eq!(shape.borrowed(), shape);
        assert_eq!(SecretShape::HexToken.borrowed(), SecretShape::HexToken);
    }
}
