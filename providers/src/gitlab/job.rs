//! GitLab CI job tokens (`CI_JOB_TOKEN`, username `gitlab-ci-token`, or a
//! `glcbt-` token), checked with `GET /api/v4/job`: the job must be
//! running, and its project inside the required groups. The identity is the
//! job's project path, a robot, with claims named as in GitLab's ID tokens;
//! it never gets a refresh token.

use serde::Deserialize;

use super::{Call, GitLab};
use crate::{Identity, Kind, Outcome, Rejection, Renewal};

#[derive(Deserialize)]
struct Job {
    id: u64,
    status: String,
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    tag: bool,
    web_url: String,
    #[serde(default)]
    pipeline: Option<Pipeline>,
    #[serde(default)]
    user: Option<JobUser>,
}

#[derive(Deserialize)]
struct Pipeline {
    #[serde(default)]
    source: Option<String>,
}

#[derive(Deserialize)]
struct JobUser {
    username: String,
}

impl GitLab {
    pub(super) async fn job_token(&self, token: &str) -> Result<Identity, Outcome> {
        let url = format!("{}/job", self.api.base);
        let response = self.get("job-token", token, &url, Call::Job).await?;
        let job: Job = self.api.json(response, "/job").await?;
        if job.status != "running" {
            return Err(Outcome::Rejected(Rejection::Other(format!(
                "the GitLab job {} is {}, not running",
                job.id,
                crate::Safe(&job.status)
            ))));
        }
        let Some(project) = self.project_of(&job.web_url) else {
            return Err(self.api.unavailable(format!(
                "job {}: no project path in web_url {:?}",
                job.id, job.web_url
            )));
        };
        if !self.in_scope(&project) {
            return Err(Outcome::Rejected(Rejection::Other(format!(
                "the job's project {project} is outside the GitLab groups {:?}",
                self.config.groups
            ))));
        }
        let ref_type = if job.tag { "tag" } else { "branch" };
        let mut claims = crate::ClaimSet::new();
        for (name, value) in [
            ("token_type", "job".to_owned()),
            ("project_path", project.clone()),
            ("ref", job.git_ref),
            ("ref_type", ref_type.to_owned()),
            ("tag", job.tag.to_string()),
            ("job_id", job.id.to_string()),
        ] {
            claims.insert(name, value);
        }
        if let Some(source) = job.pipeline.and_then(|p| p.source) {
            claims.insert("pipeline_source", source);
        }
        if let Some(user) = job.user {
            claims.insert("user_login", user.username);
        }
        let mut identity = Identity::new(project, self.name.clone());
        identity.kind = Kind::Robot;
        identity.proof = crate::Proof::Token;
        identity.claims = claims;
        // A job token is valid while its job runs: no refresh token, and
        // the verdict lives no longer than cache.verdict_ttl.
        identity.renewal = Renewal::Never;
        Ok(identity)
    }

    /// The project path of a job's `web_url`
    /// (`https://gitlab.corp[/root]/acme/app/-/jobs/42` → `acme/app`).
    fn project_of(&self, web_url: &str) -> Option<String> {
        let (before, _) = web_url.split_once("/-/jobs/")?;
        let (_, rest) = before.split_once("://")?;
        let (_, path) = rest.split_once('/')?;
        let path = match self.root_path.as_str() {
            "" => path,
            root => path.strip_prefix(root)?.strip_prefix('/')?,
        };
        let valid = !path.is_empty()
            && path
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        valid.then(|| path.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::*;

    #[test]
    fn the_project_path_comes_from_the_job_url() {
        let gl = GitLab::new(
            "gl",
            &config(serde_json::json!({"url": "https://git.corp/gitlab/", "groups": ["acme"]})),
        )
        .unwrap();
        assert_eq!(
            gl.project_of("https://git.corp/gitlab/Acme/platform/app/-/jobs/42")
                .as_deref(),
            Some("acme/platform/app")
        );
        assert_eq!(gl.project_of("https://git.corp/other/app/-/jobs/42"), None);
        assert_eq!(gl.project_of("https://git.corp/gitlab/-/jobs/42"), None);
        assert_eq!(
            gl.project_of("https://git.corp/gitlab/a/../b/-/jobs/1"),
            None
        );
        let root = GitLab::new(
            "gl",
            &config(serde_json::json!({"url": "https://gitlab.com", "groups": ["acme"]})),
        )
        .unwrap();
        assert_eq!(
            root.project_of("https://gitlab.com/acme/app/-/jobs/7")
                .as_deref(),
            Some("acme/app")
        );
    }
}
