//! What a login is made of: the credentials a client presented, and the
//! identity (or the refusal) a provider answers with. Plain data: nothing
//! here calls an identity provider, and a secret never leaves its
//! [`SecretString`].

use std::fmt;

use secrecy::SecretString;

use crate::Error;

/// What a client presented: the Basic username and the secret (a password,
/// an access token or a personal access token).
#[derive(Clone)]
pub struct Credentials {
    /// The Basic username as the client typed it.
    pub username: String,
    /// The password or token.
    pub secret: SecretString,
}

impl Credentials {
    /// Credentials from a username and a secret.
    pub fn new(username: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: SecretString::from(secret.into()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// What kind of principal an identity is. Robots are service accounts for CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An ordinary user account (the default).
    User,
    /// A service account: a static provider's robot, a GitLab project or
    /// group access token's bot, a CI job.
    Robot,
}

impl Kind {
    /// `user` or `robot`, as the audit line says.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Robot => "robot",
        }
    }
}

/// How a refresh token (docker's identity token) may continue a login.
///
/// A refresh token is never resolved from another login's memory: it
/// either asks the provider again (`Lookup`) or carries what this one login
/// established (`Snapshot`), up to a deadline of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The provider looks the subject up again without a secret (LDAP,
    /// static users): each refresh re-resolves groups and re-checks the
    /// account.
    Lookup,
    /// The provider cannot look users up (OIDC, GitHub): the refresh token
    /// carries this login's groups and claims, for as long as the server
    /// lets a snapshot of this provider live (`refresh_max_age`) and never
    /// past the credential's own end (`expires_at`).
    Snapshot,
    /// No refresh token for this login (a machine's token, such as a CI
    /// job's JWT).
    Never,
}

/// An authenticated principal, as a provider names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Canonical name of the principal (what the registry sees as `sub`).
    pub subject: String,
    /// Name of the provider instance that vouched for it.
    pub provider: String,
    /// Whether this is a user or a robot.
    pub kind: Kind,
    /// Group names as this provider documents them (sorted, deduplicated).
    pub groups: Vec<String>,
    /// Extra attributes that policy rules may match on (a token's
    /// claims, nested objects and lists included, ...).
    pub claims: crate::ClaimSet,
    /// How a refresh token continues this login.
    pub renewal: Renewal,
    /// Changes whenever the account's credential changes (a password
    /// change time, a hash fingerprint): a refresh token minted under
    /// another stamp is refused. Never a secret.
    pub credential_stamp: Option<String>,
    /// When the credential itself stops being valid (a token's `exp`, a
    /// robot's last day), in seconds since the epoch: a cached verdict
    /// never outlives it.
    pub expires_at: Option<u64>,
    /// What the server attached to this login for itself (regauth's own
    /// app passwords attach the repository limit they are narrowed to);
    /// none from any provider of this crate.
    pub attachment: Attachment,
    /// What the credential may do to the forge's own packages, when it is
    /// a forge token whose scopes say (GitHub `read:packages`, GitLab
    /// `read_registry`, Gitea `read:package`...): the server grants no
    /// more than that. `None`: the credential itself sets no such bound.
    pub package_rights: Option<PackageRights>,
    /// The account's own id where the provider has one that a new account
    /// reusing the name does not get (LDAP `entryUUID`/`objectGUID`, an
    /// OIDC `sub`): what outlives this login (app passwords) is bound to it.
    pub account_id: Option<String>,
    /// What the secret of this login was.
    pub proof: Proof,
    /// The client networks the credential works from (a CI robot's
    /// subnet); empty: any. The server refuses a request from elsewhere.
    pub networks: Vec<ipnet::IpNet>,
}

/// What an identity's login presented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proof {
    /// A password the provider checked (the default).
    #[default]
    Password,
    /// A token issued to the user or a job (an access token, a JWT, a
    /// forge token, an app password): it proves possession, not the
    /// user's presence.
    Token,
    /// An interactive sign-in at the identity provider.
    Browser,
}

/// What a forge token may do with packages, read from its scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackageRights {
    /// Download packages (a registry's pull).
    pub read: bool,
    /// Publish packages (a registry's push).
    pub write: bool,
    /// Delete packages.
    pub delete: bool,
}

impl PackageRights {
    /// Whether the token may do anything with packages at all.
    pub fn any(self) -> bool {
        self.read || self.write || self.delete
    }
}

/// A value the server attaches to an identity for its own use, opaque to
/// this crate: providers here neither set nor read one, so what it means
/// (a limit on what the login may be granted) stays on the server's side
/// of the seam. Cloning shares the value; two identities are equal only
/// when they share the same attachment (or have none).
#[derive(Clone, Default)]
pub struct Attachment(Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl Attachment {
    /// An attachment holding `value`.
    pub fn new<T: std::any::Any + Send + Sync>(value: T) -> Self {
        Self(Some(std::sync::Arc::new(value)))
    }

    /// The attached value, if there is one of type `T`.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.as_deref()?.downcast_ref()
    }

    /// Whether nothing is attached.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl PartialEq for Attachment {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Attachment {}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Attachment(..)"
        } else {
            "Attachment(none)"
        })
    }
}

impl Identity {
    /// An identity of `subject` vouched for by `provider`: a user with no
    /// groups or claims, renewed by lookup.
    pub fn new(subject: impl Into<String>, provider: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            provider: provider.into(),
            kind: Kind::User,
            groups: Vec::new(),
            claims: crate::ClaimSet::new(),
            renewal: Renewal::Lookup,
            credential_stamp: None,
            expires_at: None,
            attachment: Attachment::default(),
            package_rights: None,
            account_id: None,
            proof: Proof::Password,
            networks: Vec::new(),
        }
    }

    /// Whether the credential works from `client` (any network when it
    /// names none).
    pub fn works_from(&self, client: std::net::IpAddr) -> bool {
        let client = client.to_canonical();
        self.networks.is_empty() || self.networks.iter().any(|n| n.contains(&client))
    }

    /// Replaces the groups with these, sorted and deduplicated.
    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut groups: Vec<String> = groups.into_iter().map(Into::into).collect();
        groups.sort();
        groups.dedup();
        self.groups = groups;
        self
    }
}

/// The answer of one provider to one set of credentials.
#[derive(Debug)]
pub enum Outcome {
    /// The credentials are valid.
    Authenticated(Identity),
    /// This provider owns the user and the secret is wrong (or the account
    /// is disabled or expired). The chain stops here.
    Rejected(Rejection),
    /// Unknown user, or a credential shape that is not for this provider.
    NotMine,
    /// The identity provider could not be reached or answered garbage.
    Unavailable(Error),
}

/// Why credentials were rejected. Logged, never told to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The password or token is wrong.
    WrongSecret,
    /// The secret is empty.
    EmptySecret,
    /// The account (or the robot) has expired.
    Expired,
    /// The account is disabled.
    Disabled,
    /// The directory has locked the account (too many failures, or an
    /// administrator).
    Locked,
    /// Anything else, with a message fit for the log (never a secret).
    Other(String),
    /// Something the user can fix, with a message meant for the client
    /// (e.g. "authorize this token for SAML SSO").
    UserAction(String),
}

impl Rejection {
    /// What the client may be told: only a `UserAction` says anything.
    pub fn client_message(&self) -> Option<&str> {
        match self {
            Rejection::UserAction(message) => Some(message),
            _ => None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::WrongSecret => f.write_str("wrong password or token"),
            Rejection::EmptySecret => f.write_str("empty password"),
            Rejection::Expired => f.write_str("account expired"),
            Rejection::Disabled => f.write_str("account disabled"),
            Rejection::Locked => f.write_str("account locked"),
            Rejection::Other(msg) | Rejection::UserAction(msg) => f.write_str(msg),
        }
    }
}
